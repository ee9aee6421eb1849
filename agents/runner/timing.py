"""The claim protocol's timeouts, in one place for both sides (docs/design.md).

The runner (agents/runner/protocol.py), the engine's settings (control_plane/engine/config.py)
and the control plane's AWS clients (control_plane/aws.py) take their values from here, so
that each timeout in the chain stays longer than the wait it covers:

- the SQS client's read timeout outlasts the longest ``WaitTimeSeconds`` (an empty long poll
  is an answer, not a timeout that botocore retries);
- the control plane commits a claim only before ``CLAIM_COMMIT_DEADLINE_S`` after the request
  arrived: a poll whose runner has given up never starts a job;
- the runner waits ``CLAIM_TIMEOUT_S``, longer than that deadline plus a network margin.

Standard library only: the runner imports it inside slim agent images.
"""

from __future__ import annotations

SQS_MAX_WAIT_S = 20  # SQS refuses a longer WaitTimeSeconds
CLAIM_LONG_POLL_S = 20.0  # the control plane's default long poll for one claim request
CLAIM_COMMIT_BUDGET_S = 5.0  # after the poll: reserve the task, start the dispatch, answer
CLAIM_COMMIT_DEADLINE_S = CLAIM_LONG_POLL_S + CLAIM_COMMIT_BUDGET_S
NETWORK_MARGIN_S = 10.0  # connect, queueing in the load balancer and the server, clock skew
CLAIM_TIMEOUT_S = CLAIM_COMMIT_DEADLINE_S + NETWORK_MARGIN_S  # the runner's read timeout
SQS_READ_TIMEOUT_S = SQS_MAX_WAIT_S + NETWORK_MARGIN_S  # the SQS client's read timeout

# Upload URLs are signed when the runner asks for them, right before each try of each file's
# upload. A presigned URL dies with the session that signed it; botocore renews temporary
# credentials that have less than 10 minutes left (its mandatory refresh), so a URL of at most
# that lifetime never outlives its session, and it outlives the one PUT it is signed for.
UPLOAD_URL_TTL_S = 600
UPLOAD_TIMEOUT_S = 120.0  # one PUT
