"""The ECS runtime's requests, checked by botocore's Stubber against the real ECS service model.

moto 5.2.5 crashes on RunTask with awsvpc networking ("'NetworkInterface' object has no
attribute 'private_dns_name'"), so these tests stub ECS with botocore's Stubber, which
validates every request (and every canned reply) against the service model botocore ships.
"""

from __future__ import annotations

import boto3
import pytest
from botocore.exceptions import ReadTimeoutError
from botocore.stub import Stubber
from hypothesis import given
from hypothesis import strategies as st

from control_plane.runtime.base import LaunchedTask, LaunchError, LaunchRequest, client_token
from control_plane.runtime.ecs import Backoff, EcsConfig, EcsRuntime, LaunchRateLimiter

CLUSTER = "arn:aws:ecs:us-east-1:123456789012:cluster/outpost"
CONFIG = EcsConfig(
    cluster=CLUSTER,
    task_definitions={"shell": "outpost-shell", "claude": "outpost-claude"},
    subnets=("subnet-0a", "subnet-0b"),
    security_groups={"shell": "sg-shell", "claude": "sg-claude"},
    container_name="agent",
)
CAPACITY = "Capacity is unavailable at this time. Please try again later or in a different availability zone"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def ecs():
    client = boto3.client("ecs", region_name="us-east-1")
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


def make_runtime(client, clock: FakeClock, *, max_attempts: int = 6) -> EcsRuntime:
    return EcsRuntime(
        client=client,
        config=CONFIG,
        backoff=Backoff(base=0.2, cap=2.0, max_attempts=max_attempts, rng=lambda: 1.0),
        limiter=LaunchRateLimiter(clock=clock, sleep=clock.sleep),
        sleep=clock.sleep,
    )


def request(task_id: str = "t-1", *, agent: str = "shell", spot: bool = True) -> LaunchRequest:
    return LaunchRequest(
        agent=agent,
        task_id=task_id,
        client_token=client_token("d-123", 1),
        env={"OUTPOST_TASK_ID": task_id, "OUTPOST_CLAIM_TOKEN": "secret", "OUTPOST_AGENT": agent},
        spot=spot,
    )


def run_task_params(token: str, provider: str, task_id: str = "t-1", agent: str = "shell") -> dict:
    return {
        "cluster": CLUSTER,
        "taskDefinition": f"outpost-{agent}",
        "count": 1,
        "clientToken": token,
        "capacityProviderStrategy": [{"capacityProvider": provider, "weight": 1}],
        "networkConfiguration": {
            "awsvpcConfiguration": {
                "subnets": ["subnet-0a", "subnet-0b"],
                "securityGroups": [f"sg-{agent}"],  # the agent's own group
                "assignPublicIp": "DISABLED",
            }
        },
        "overrides": {
            "containerOverrides": [
                {
                    "name": "agent",
                    "environment": [
                        {"name": "OUTPOST_AGENT", "value": agent},
                        {"name": "OUTPOST_CLAIM_TOKEN", "value": "secret"},
                        {"name": "OUTPOST_TASK_ID", "value": task_id},
                    ],
                }
            ]
        },
        "startedBy": "outpost",
        "group": f"outpost:{agent}",
        "enableExecuteCommand": False,
    }


def started(arn: str = "arn:aws:ecs:us-east-1:123456789012:task/outpost/abc") -> dict:
    return {"tasks": [{"taskArn": arn, "lastStatus": "PROVISIONING"}], "failures": []}


def test_launch_prefers_spot_with_a_deterministic_client_token(ecs):
    client, stubber = ecs
    token = client_token("d-123", 1)
    assert token == "d-123-a1"  # noqa: S105 - a client token, not a secret
    stubber.add_response("run_task", started(), run_task_params(token, "FARGATE_SPOT"))
    [result] = make_runtime(client, FakeClock()).launch([request()])
    assert result == LaunchedTask(
        "t-1", "arn:aws:ecs:us-east-1:123456789012:task/outpost/abc", "FARGATE_SPOT"
    )


def test_agent_without_spot_goes_straight_to_fargate(ecs):
    client, stubber = ecs
    stubber.add_response("run_task", started(), run_task_params("d-123-a1", "FARGATE"))
    [result] = make_runtime(client, FakeClock()).launch([request(spot=False)])
    assert isinstance(result, LaunchedTask) and result.capacity == "FARGATE"


def test_a_200_with_failures_is_a_failure_and_not_retried(ecs):
    client, stubber = ecs
    reply = {"tasks": [], "failures": [{"arn": CLUSTER, "reason": "MISSING", "detail": "task definition"}]}
    stubber.add_response("run_task", reply, run_task_params("d-123-a1", "FARGATE_SPOT"))
    clock = FakeClock()
    [result] = make_runtime(client, clock).launch([request()])
    assert isinstance(result, LaunchError)
    assert "MISSING" in str(result)
    assert clock.sleeps == []


def test_spot_capacity_failure_falls_back_to_fargate(ecs):
    client, stubber = ecs
    stubber.add_response(
        "run_task",
        {"tasks": [], "failures": [{"reason": CAPACITY}]},
        run_task_params("d-123-a1", "FARGATE_SPOT"),
    )
    stubber.add_response("run_task", started(), run_task_params("d-123-a1-od", "FARGATE"))
    [result] = make_runtime(client, FakeClock()).launch([request()])
    assert isinstance(result, LaunchedTask) and result.capacity == "FARGATE"


def test_spot_capacity_error_raised_as_exception_also_falls_back(ecs):
    client, stubber = ecs
    stubber.add_client_error(
        "run_task",
        service_error_code="ClientException",
        service_message="No Container Instances were found in your capacity provider",
        http_status_code=400,
        expected_params=run_task_params("d-123-a1", "FARGATE_SPOT"),
    )
    stubber.add_response("run_task", started(), run_task_params("d-123-a1-od", "FARGATE"))
    [result] = make_runtime(client, FakeClock()).launch([request()])
    assert isinstance(result, LaunchedTask) and result.capacity == "FARGATE"


def test_fargate_capacity_is_retried_with_backoff_and_a_fresh_token(ecs):
    client, stubber = ecs
    no_capacity = {"tasks": [], "failures": [{"reason": CAPACITY}]}
    stubber.add_response("run_task", no_capacity, run_task_params("d-123-a1", "FARGATE"))
    stubber.add_response("run_task", no_capacity, run_task_params("d-123-a1-r1", "FARGATE"))
    stubber.add_response("run_task", started(), run_task_params("d-123-a1-r2", "FARGATE"))
    clock = FakeClock()
    [result] = make_runtime(client, clock).launch([request(spot=False)])
    assert isinstance(result, LaunchedTask)
    assert clock.sleeps == [0.2, 0.4]


def test_capacity_exhausted_everywhere_is_a_failure(ecs):
    client, stubber = ecs
    no_capacity = {"tasks": [], "failures": [{"reason": CAPACITY}]}
    stubber.add_response("run_task", no_capacity, run_task_params("d-123-a1", "FARGATE_SPOT"))
    stubber.add_response("run_task", no_capacity, run_task_params("d-123-a1-od", "FARGATE"))
    stubber.add_response("run_task", no_capacity, run_task_params("d-123-a1-odr1", "FARGATE"))
    stubber.add_response("run_task", no_capacity, run_task_params("d-123-a1-odr2", "FARGATE"))
    [result] = make_runtime(client, FakeClock(), max_attempts=3).launch([request()])
    assert isinstance(result, LaunchError)
    assert "capacity" in str(result).lower()


def test_throttling_is_retried_with_capped_exponential_backoff_and_the_same_token(ecs):
    client, stubber = ecs
    for _ in range(5):
        stubber.add_client_error(
            "run_task",
            service_error_code="ThrottlingException",
            service_message="Rate exceeded",
            http_status_code=400,
            expected_params=run_task_params("d-123-a1", "FARGATE_SPOT"),
        )
    stubber.add_response("run_task", started(), run_task_params("d-123-a1", "FARGATE_SPOT"))
    clock = FakeClock()
    [result] = make_runtime(client, clock).launch([request()])
    assert isinstance(result, LaunchedTask)
    # rng() == 1.0 shows the ceiling of each jittered delay: doubling from 0.2, capped at 2.0
    assert clock.sleeps == [0.2, 0.4, 0.8, 1.6, 2.0]


def test_backoff_is_jittered_below_its_cap():
    draws = iter([0.0, 0.5, 0.25, 0.999])
    backoff = Backoff(base=1.0, cap=3.0, rng=lambda: next(draws))
    assert [backoff.delay(n) for n in range(4)] == [0.0, 1.0, 0.75, pytest.approx(2.997)]


def test_throttling_that_never_ends_gives_a_failure(ecs):
    client, stubber = ecs
    for _ in range(3):
        stubber.add_client_error(
            "run_task", service_error_code="ThrottlingException", http_status_code=400, expected_params=None
        )
    clock = FakeClock()
    [result] = make_runtime(client, clock, max_attempts=3).launch([request()])
    assert isinstance(result, LaunchError) and "ThrottlingException" in str(result)
    assert len(clock.sleeps) == 2  # between the three attempts


def test_server_errors_are_retried(ecs):
    client, stubber = ecs
    stubber.add_client_error("run_task", service_error_code="ServerException", http_status_code=500)
    stubber.add_response("run_task", started(), run_task_params("d-123-a1", "FARGATE_SPOT"))
    [result] = make_runtime(client, FakeClock()).launch([request()])
    assert isinstance(result, LaunchedTask)


def test_a_refused_request_fails_without_retry(ecs):
    client, stubber = ecs
    stubber.add_client_error(
        "run_task",
        service_error_code="InvalidParameterException",
        service_message="Task definition does not exist",
        http_status_code=400,
    )
    clock = FakeClock()
    [result] = make_runtime(client, clock).launch([request()])
    assert isinstance(result, LaunchError) and "Task definition does not exist" in str(result)
    assert clock.sleeps == []


def test_unknown_agent_is_refused_before_any_call(ecs):
    client, _ = ecs
    [result] = make_runtime(client, FakeClock()).launch([request(agent="gemini")])
    assert isinstance(result, LaunchError) and "gemini" in str(result)


def test_one_failed_launch_does_not_stop_the_others(ecs):
    client, stubber = ecs
    stubber.add_client_error("run_task", service_error_code="AccessDeniedException", http_status_code=400)
    stubber.add_response("run_task", started("arn:aws:ecs:us-east-1:1:task/outpost/b"), None)
    results = make_runtime(client, FakeClock()).launch([request("t-1"), request("t-2")])
    assert isinstance(results[0], LaunchError)
    assert isinstance(results[1], LaunchedTask) and results[1].task_id == "t-2"


def test_launches_stay_within_ten_per_call_and_twenty_per_second(ecs):
    client, stubber = ecs
    clock = FakeClock()
    call_times: list[float] = []
    counts: list[int] = []

    def record(params, **_):
        call_times.append(clock.now)
        counts.append(params["count"])

    client.meta.events.register_first("before-parameter-build.ecs.RunTask", record)
    for n in range(45):
        stubber.add_response("run_task", started(f"arn:aws:ecs:us-east-1:1:task/outpost/{n}"), None)
    requests = [request(f"t-{n}") for n in range(45)]
    results = make_runtime(client, clock).launch(requests)
    assert all(isinstance(r, LaunchedTask) for r in results)
    assert len(call_times) == 45 and max(counts) <= 10
    for start in call_times:  # every one-second window holds at most 20 launches
        assert sum(1 for t in call_times if start <= t < start + 1.0) <= 20
    assert call_times[-1] - call_times[0] >= 2.0  # 45 launches need at least three windows


def test_rate_limiter_refuses_more_than_its_limit_at_once():
    with pytest.raises(ValueError):
        LaunchRateLimiter(limit=20).acquire(21)


def test_stop_task_sends_the_reason(ecs):
    client, stubber = ecs
    arn = "arn:aws:ecs:us-east-1:1:task/outpost/abc"
    stubber.add_response(
        "stop_task",
        {"task": {"taskArn": arn}},
        {"cluster": CLUSTER, "task": arn, "reason": "Outpost: cancelled"},
    )
    make_runtime(client, FakeClock()).stop(arn, "Outpost: cancelled")


def test_stop_task_is_retried_when_throttled_and_ignores_a_vanished_task(ecs):
    client, stubber = ecs
    arn = "arn:aws:ecs:us-east-1:1:task/outpost/abc"
    stubber.add_client_error("stop_task", service_error_code="ThrottlingException", http_status_code=400)
    stubber.add_client_error(
        "stop_task",
        service_error_code="InvalidParameterException",
        service_message="The referenced task was not found.",
        http_status_code=400,
    )
    clock = FakeClock()
    make_runtime(client, clock).stop(arn, "Outpost: timed out")
    assert len(clock.sleeps) == 1


def test_list_tasks_reads_agent_and_task_id(ecs):
    client, stubber = ecs
    arns = [f"arn:aws:ecs:us-east-1:1:task/outpost/{n}" for n in range(2)]
    stubber.add_response(
        "list_tasks",
        {"taskArns": arns},
        {"cluster": CLUSTER, "startedBy": "outpost", "maxResults": 100},
    )
    stopping = "arn:aws:ecs:us-east-1:1:task/outpost/stopping"
    gone = "arn:aws:ecs:us-east-1:1:task/outpost/gone"
    foreign = "arn:aws:ecs:us-east-1:1:task/outpost/control-plane"
    stubber.add_response(
        "list_tasks",
        {"taskArns": [stopping, gone, foreign]},
        {"cluster": CLUSTER, "desiredStatus": "STOPPED", "maxResults": 100},
    )
    stubber.add_response(
        "describe_tasks",
        {
            "tasks": [
                {
                    "taskArn": arns[0],
                    "startedBy": "outpost",
                    "group": "outpost:shell",
                    "lastStatus": "RUNNING",
                    "overrides": {
                        "containerOverrides": [
                            {"name": "agent", "environment": [{"name": "OUTPOST_TASK_ID", "value": "t-9"}]}
                        ]
                    },
                },
                {
                    "taskArn": arns[1],
                    "startedBy": "outpost",
                    "group": "family:other",
                    "lastStatus": "PENDING",
                },
                # a Spot task being interrupted: desired STOPPED, still running its stop timeout
                {
                    "taskArn": stopping,
                    "startedBy": "outpost",
                    "group": "outpost:claude",
                    "lastStatus": "DEACTIVATING",
                },
                {"taskArn": gone, "startedBy": "outpost", "group": "outpost:shell", "lastStatus": "STOPPED"},
                # listed by desired status alone: a task Outpost did not start (a service's)
                {
                    "taskArn": foreign,
                    "startedBy": "ecs-svc/123",
                    "group": "service:cp",
                    "lastStatus": "RUNNING",
                },
            ]
        },
        {"cluster": CLUSTER, "tasks": [*arns, stopping, gone, foreign]},
    )
    tasks = make_runtime(client, FakeClock()).list_tasks()
    assert [(t.agent, t.task_id, t.live) for t in tasks] == [
        ("shell", "t-9", True),
        (None, None, True),
        ("claude", None, True),
    ]


@given(st.text(min_size=1, max_size=200), st.integers(min_value=1, max_value=3))
def test_client_tokens_are_deterministic_short_and_distinct_per_attempt(base, attempt):
    token = client_token(base, attempt)
    assert token == client_token(base, attempt)
    assert 0 < len(token) <= 64 and token.isascii()
    assert token != client_token(base, attempt + 1)
    assert len(client_token(base, attempt, "od")) <= 64


def test_a_call_without_an_answer_is_repeated_with_the_same_client_token(ecs):
    client, stubber = ecs
    sent: list[str] = []
    timeouts = iter([True])

    def network(params, **_):
        sent.append(params["clientToken"])
        if next(timeouts, False):
            raise ReadTimeoutError(endpoint_url="https://ecs.us-east-1.amazonaws.com")

    client.meta.events.register_first("before-parameter-build.ecs.RunTask", network)
    stubber.add_response("run_task", started(), run_task_params("d-123-a1", "FARGATE_SPOT"))
    clock = FakeClock()
    [result] = make_runtime(client, clock).launch([request()])
    assert isinstance(result, LaunchedTask)
    assert sent == ["d-123-a1", "d-123-a1"] and len(clock.sleeps) == 1


def test_a_configuration_without_an_agents_security_group_is_refused():
    """RunTask without a group would start the task in the VPC's default group."""
    with pytest.raises(ValueError, match="no security group for agent"):
        EcsConfig(
            cluster=CLUSTER,
            task_definitions={"shell": "outpost-shell", "claude": "outpost-claude"},
            subnets=("subnet-0a",),
            security_groups={"shell": "sg-shell"},
        )


def test_each_agents_task_starts_in_its_own_security_group(ecs):
    client, stubber = ecs
    stubber.add_response("run_task", started(), run_task_params("d-123-a1", "FARGATE", "t-1", agent="claude"))
    [result] = make_runtime(client, FakeClock()).launch([request(agent="claude", spot=False)])
    assert isinstance(result, LaunchedTask)
    stubber.assert_no_pending_responses()
