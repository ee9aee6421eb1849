"""The model gateway: the providers' HTTP APIs, passed through for agent tasks (docs/model-gateway.md).

An agent reaches its model at ``/gateway/<provider>/...`` of the control plane with the gateway
token of its dispatch's attempt instead of a provider key. The gateway checks the token and
the model, adds the real key, streams the answer back as it arrives, reads the usage from it,
and records tokens, cost and an audit entry per call.

- ``providers``: what differs per provider API (paths, key header, model, error shape, usage);
- ``metering``: usage read from JSON answers and server-sent event streams;
- ``keys``: the provider keys (the environment in local mode, Secrets Manager on ECS);
- ``service``: the gateway itself; ``control_plane/api/routes/gateway.py`` is its route.
"""
