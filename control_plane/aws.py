"""boto3 clients for the control plane, built once per app from the settings.

Low-level clients (not resources) because clients are thread-safe and the API serves requests
from a thread pool. Short timeouts keep a sick dependency from pinning request threads; only
SQS waits longer, because a claim long-polls it (agents/runner/timing.py).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import boto3
import botocore.loaders
import botocore.session
from botocore.config import Config

from agents.runner.timing import SQS_READ_TIMEOUT_S
from control_plane.settings import Settings


@dataclass(frozen=True)
class AwsClients:
    dynamodb: Any
    s3: Any
    sqs: Any
    ecs: Any


@functools.cache
def _data_loader() -> botocore.loaders.Loader:
    return botocore.loaders.create_loader()


def new_session(region: str) -> boto3.session.Session:
    """A session of its own (credentials, region), sharing one loader of botocore's service
    models and endpoint data: each session would otherwise parse those JSON files again
    (about half a second of CPU), which local mode and the tests pay per app they start."""
    core = botocore.session.get_session()
    core.register_component("data_loader", _data_loader())
    return boto3.session.Session(botocore_session=core, region_name=region)


def make_clients(settings: Settings) -> AwsClients:
    session = new_session(settings.region)
    config = Config(
        connect_timeout=2,
        read_timeout=10,
        retries={"max_attempts": 3, "mode": "standard"},
        max_pool_connections=50,
        signature_version="s3v4",
        # an emulator on loopback has no per-bucket DNS names
        s3={"addressing_style": "path"} if settings.aws_endpoint_url else {},
    )

    def client(service: str, config: Config = config) -> Any:
        return session.client(service, endpoint_url=settings.aws_endpoint_url, config=config)

    sqs = client("sqs", config.merge(Config(read_timeout=SQS_READ_TIMEOUT_S)))
    return AwsClients(dynamodb=client("dynamodb"), s3=client("s3"), sqs=sqs, ecs=client("ecs"))
