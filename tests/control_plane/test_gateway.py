"""The model gateway over real HTTP: the engine's app served by uvicorn, its data on the moto
server, the providers faked on loopback (tests/providers). A job is claimed as a runner claims
it, and its gateway token is used as the agent's CLI would use it."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from control_plane.api.routes.gateway import gateway_of
from control_plane.bootstrap import ensure_resources
from control_plane.engine import tasks as t
from control_plane.engine.app import create_engine_app
from control_plane.engine.config import EngineSettings
from control_plane.engine.service import Engine
from control_plane.gateway.service import RUN_STATE_FRESH_S, Gateway
from control_plane.lifecycle import Status
from control_plane.queueing import enqueue_dispatch
from control_plane.runtime.local import LocalRuntime
from control_plane.settings import Settings
from control_plane.store import Actor, DispatchRecord
from control_plane.store.dispatches import new_dispatch_id
from tests.control_plane.helpers import serving
from tests.providers import anthropic, gemini, openai_chat, openai_responses
from tests.providers.anthropic import FakeAnthropic
from tests.providers.gemini import FakeGemini
from tests.providers.openai_chat import FakeChat
from tests.providers.openai_responses import FakeResponses
from tests.providers.server import FakeProvider, Reply

ADMIN_KEY = "op_admin_" + "g" * 40
KEYS = {  # the operator's provider keys: only the control plane (the gateway) holds them
    "ANTHROPIC_API_KEY": "real-anthropic-key-0123456789abcdef",
    "OPENAI_API_KEY": "real-openai-key-0123456789abcdef",
    "GEMINI_API_KEY": "real-gemini-key-0123456789abcdef",
    "GROK_API_KEY": "real-xai-key-0123456789abcdef",
}
MAX_CALLS = 3  # per dispatch, to see the limit without many streams


@dataclass
class Fakes:
    anthropic: FakeAnthropic = field(default_factory=FakeAnthropic)
    chat: FakeChat = field(default_factory=FakeChat)  # aider's OpenAI Chat Completions
    responses: FakeResponses = field(default_factory=FakeResponses)  # codex's Responses
    gemini: FakeGemini = field(default_factory=FakeGemini)
    xai: FakeChat = field(default_factory=FakeChat)  # grok's, reached through gateway_upstreams

    def all(self) -> list[FakeProvider]:
        return [self.anthropic, self.chat, self.responses, self.gemini, self.xai]


@dataclass
class World:
    url: str
    engine: Engine
    settings: Settings
    tenant_id: str
    api_key: str
    restricted_tenant_id: str  # allows claude-sonnet-4-5 only

    engine_app: Any = None

    @property
    def gateway(self) -> Gateway:
        gateway = gateway_of(self.engine_app.state)
        assert gateway is not None
        return gateway

    def start(self, agent: str, *, tenant_id: str | None = None) -> tuple[DispatchRecord, dict[str, Any]]:
        """A dispatch claimed by a new task, as a runner claims it: the record and the claim answer."""
        stores = self.engine.stores
        record = stores.dispatches.create(
            record=DispatchRecord(
                dispatch_id=new_dispatch_id(),
                tenant_id=tenant_id or self.tenant_id,
                agent=agent,
                task="fix the bug",
                timeout_s=600,
            ),
            actor=Actor.system("test"),
        )
        enqueue_dispatch(
            record,
            sqs=self.engine.clients.sqs,
            queue_urls=self.settings.dispatch_queue_urls,
            store=stores.dispatches,
        )
        task_id = t.new_task_id()
        token, token_hash = t.make_token(task_id)
        assert self.engine.tasks.create(
            task_id=task_id, agent=agent, launched_for="warm", client_token=task_id, token_hash=token_hash
        )
        reply = httpx.post(
            f"{self.url}/internal/claim",
            json={"task_id": task_id},
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )
        assert reply.status_code == 200, reply.text
        job: dict[str, Any] = reply.json()
        assert job["dispatch_id"] == record.dispatch_id
        return record, job

    def shown(self, dispatch_id: str) -> dict[str, Any]:
        """GET /dispatch/{id} once the gateway has accounted for the calls that ended."""
        self.gateway.settle()
        reply = httpx.get(
            f"{self.url}/dispatch/{dispatch_id}", headers={"Authorization": f"Bearer {self.api_key}"}
        )
        assert reply.status_code == 200, reply.text
        shown: dict[str, Any] = reply.json()
        return shown

    def audit(self, dispatch_id: str, tenant_id: str | None = None) -> list[dict[str, Any]]:
        self.gateway.settle()
        entries = self.engine.stores.audit.list(tenant_id=tenant_id or self.tenant_id, limit=500)
        return [e for e in entries if e["action"] == "gateway.call" and e["target"] == dispatch_id]


@pytest.fixture(scope="module")
def fakes() -> Iterator[Fakes]:
    providers = Fakes()
    for provider in providers.all():
        provider.start()
    yield providers
    for provider in providers.all():
        provider.stop()


@pytest.fixture(scope="module")
def world(moto_endpoint: str, fakes: Fakes, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    resources = ensure_resources(endpoint_url=moto_endpoint, prefix=f"g{uuid.uuid4().hex[:10]}")
    agent_settings = {
        "claude": {
            "default_model": "claude-sonnet-4-5",
            "allowed_models": ["claude-sonnet-4-5", "claude-opus-4-1"],
            "base_url": fakes.anthropic.url,
        },
        "codex": {"default_model": "gpt-5", "base_url": fakes.responses.base_url},
        "aider": {"default_model": "openai/gpt-4o", "base_url": f"{fakes.chat.url}/v1"},
        "gemini": {"default_model": "gemini-2.5-pro", "base_url": fakes.gemini.base_url},
        "grok": {"default_model": "grok-code-fast-1"},  # no base_url: the gateway's upstream
    }
    settings = Settings(
        env="local",
        aws_endpoint_url=moto_endpoint,
        admin_key=ADMIN_KEY,
        dispatch_queue_urls=resources.dispatch_queue_urls,
        artifacts_bucket=resources.artifacts_bucket,
        internal_url="http://127.0.0.1:9",  # replaced below once the server's port is known
        agent_settings=agent_settings,
        gateway_upstreams={"xai": fakes.xai.url},
        gateway_max_calls_per_dispatch=MAX_CALLS,
        **resources.tables,
    )
    runtime = LocalRuntime(state_dir=tmp_path_factory.mktemp("gateway-runtime"), command=("sleep", "300"))
    options = EngineSettings(
        claim_long_poll_s=1.0, engine_enabled=False, warm_pool={a: 0 for a in resources.dispatch_queue_urls}
    )
    with pytest.MonkeyPatch.context() as patch:
        for name, value in KEYS.items():
            patch.setenv(name, value)
        app = create_engine_app(settings, engine_settings=options, runtime=runtime)
        engine: Engine = app.state.engine
        stores = engine.stores
        _, api_key = stores.tenants.create(
            name="gateway", max_running=100, max_queued=100, allowed_agents=None, actor=Actor.system("test")
        )
        tenant = stores.tenants.by_api_key(api_key=api_key)
        restricted, _ = stores.tenants.create(
            name="restricted",
            max_running=100,
            max_queued=100,
            allowed_agents=None,
            allowed_models=["claude-sonnet-4-5"],
            actor=Actor.system("test"),
        )
        assert tenant is not None
        with serving(app) as (host, port):
            url = f"http://{host}:{port}"
            engine.claims.gateway_url = f"{url}/gateway"
            yield World(url, engine, settings, tenant.tenant_id, api_key, restricted.tenant_id, app)
            world_gateway = gateway_of(app.state)
            if world_gateway is not None:
                world_gateway.settle()
    runtime.close(stop_tasks=True, timeout_s=5)


def _call(
    job: dict[str, Any], route: str, path: str, body: Any = None, *, headers: dict[str, str] | None = None
) -> httpx.Response:
    """A model call with the job's gateway token where the provider's SDK puts the key."""
    token = job["gateway_token"]
    key_header = {
        "anthropic": {"x-api-key": token},
        "gemini": {"x-goog-api-key": token},
    }.get(route, {"Authorization": f"Bearer {token}"})
    url = f"{job['gateway_url']}/{route}{path}"
    if body is None:
        return httpx.get(url, headers={**key_header, **(headers or {})}, timeout=30)
    return httpx.post(url, json=body, headers={**key_header, **(headers or {})}, timeout=30)


def _events(text: str) -> list[Any]:
    return [
        json.loads(line[6:])
        for line in text.splitlines()
        if line.startswith("data: ") and line[6:] != "[DONE]"
    ]


# -- the token ---------------------------------------------------------------------------------


def test_a_claim_gives_the_agent_a_gateway_token_and_the_job_token_stays_apart(world: World) -> None:
    _, job = world.start("claude")
    assert job["gateway_url"] == f"{world.url}/gateway"
    token = job["gateway_token"]
    assert token and token != job["job_token"]
    # the gateway token is no job token, and the job token opens no model call
    refused = httpx.post(
        f"{world.url}/internal/dispatches/{job['dispatch_id']}/logs",
        json={"lines": ["x"]},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert refused.status_code == 401
    as_gateway = _call(
        {**job, "gateway_token": job["job_token"]},
        "anthropic",
        "/v1/messages",
        {"model": "claude-sonnet-4-5"},
    )
    assert as_gateway.status_code == 401
    assert as_gateway.json()["error"]["type"] == "authentication_error"
    # an agent without a model provider gets none
    _, shell = world.start("shell")
    assert (shell["gateway_token"], shell["gateway_url"]) == (None, None)


def test_a_token_of_an_ended_or_replaced_attempt_or_another_provider_is_refused(
    world: World, fakes: Fakes
) -> None:
    record, job = world.start("claude")
    fakes.anthropic.script(fakes.anthropic.text("ok", anthropic.Usage(input_tokens=10, output_tokens=2)))
    body = {"model": "claude-sonnet-4-5", "stream": True, "messages": []}
    assert _call(job, "anthropic", "/v1/messages", body).status_code == 200
    # another provider's route: this dispatch's agent is claude
    other = _call(job, "openai", "/v1/chat/completions", {"model": "gpt-4o", "messages": []})
    assert other.status_code == 403 and other.json()["error"]["code"] == "permission_denied"
    # a forged token, and one of no task
    for forged in (f"{job['gateway_token']}x", "t-0000.secret", "not-a-token"):
        refused = _call({**job, "gateway_token": forged}, "anthropic", "/v1/messages", body)
        assert refused.status_code == 401, forged
    # the attempt is requeued: its token stops working
    world.engine.stores.dispatches.transition(
        dispatch_id=record.dispatch_id, to=Status.PENDING, actor=Actor.system("test")
    )
    fakes.anthropic.script(
        after=fakes.anthropic.text("late", anthropic.Usage(input_tokens=10, output_tokens=2))
    )
    expected = {
        "type": "error",
        "error": {
            "type": "authentication_error",
            "message": "Outpost gateway: the gateway token belongs to attempt 1, which is over",
        },
    }
    # A known token's run state that agreed less than RUN_STATE_FRESH_S ago is not read again;
    # after that, it is read beside the call: the provider may have seen this one, but its
    # answer never reaches the agent; the next call is checked before it is forwarded.
    time.sleep(RUN_STATE_FRESH_S)
    for _ in range(2):
        requeued = _call(job, "anthropic", "/v1/messages", body)
        assert (requeued.status_code, requeued.json()) == (401, expected)
    assert len(fakes.anthropic.model_calls) <= 1
    # a token whose attempt ended before its first call never reaches the provider
    ended, ended_job = world.start("claude")
    world.engine.stores.dispatches.transition(
        dispatch_id=ended.dispatch_id, to=Status.COMPLETED, actor=Actor.system("test")
    )
    fakes.anthropic.script()
    refused = _call(ended_job, "anthropic", "/v1/messages", body)
    assert refused.status_code == 401 and "COMPLETED" in refused.json()["error"]["message"]
    assert fakes.anthropic.model_calls == []
    world.gateway.settle()
    assert world.shown(record.dispatch_id)["tokens"] == {
        "input": 10,
        "cached": 0,
        "output": 2,
    }  # the first call only


def test_a_cancelled_attempts_token_stops_working_within_the_run_states_freshness(
    world: World, fakes: Fakes
) -> None:
    record, job = world.start("claude")
    body = {"model": "claude-sonnet-4-5", "stream": True, "messages": []}
    fakes.anthropic.script(after=fakes.anthropic.text("ok", anthropic.Usage(input_tokens=1, output_tokens=1)))
    for _ in range(3):  # the first call checks the token; the next ones use the fresh check
        assert _call(job, "anthropic", "/v1/messages", body).status_code == 200
    stores = world.engine.stores
    running = stores.dispatches.get(dispatch_id=record.dispatch_id, tenant_id=None)
    assert running is not None and running.task_id is not None
    assert stores.dispatches.request_cancel(
        dispatch_id=record.dispatch_id, task_id=running.task_id, by="test"
    )
    cancelled = time.monotonic()
    reached = len(fakes.anthropic.model_calls)
    answered = 0
    while True:
        started = time.monotonic()
        reply = _call(job, "anthropic", "/v1/messages", body)
        if reply.status_code != 200:
            break
        # the fresh check lets a call through only if it started within RUN_STATE_FRESH_S of
        # the cancel (its run state's last read began before it)
        assert started - cancelled < RUN_STATE_FRESH_S
        answered += 1
    assert reply.status_code == 401 and "being cancelled" in reply.json()["error"]["message"]
    for _ in range(3):  # checked before forwarding now
        assert _call(job, "anthropic", "/v1/messages", body).status_code == 401
    # the first refused call may have reached the provider (read beside it), never its answer
    # the agent; none after it
    assert len(fakes.anthropic.model_calls) - reached <= answered + 1


def test_a_known_tokens_calls_make_one_run_state_read_a_second(world: World, fakes: Fakes) -> None:
    """What a call costs in DynamoDB reads of its dispatch: a token's first call reads its run
    state before forwarding; its calls within RUN_STATE_FRESH_S of that read make none; the
    first call after makes one (beside the forwarded call)."""
    _, job = world.start("claude")
    body = {"model": "claude-sonnet-4-5", "stream": True, "messages": []}
    fakes.anthropic.script(after=fakes.anthropic.text("ok", anthropic.Usage(input_tokens=1, output_tokens=1)))
    reads: list[str] = []
    events = world.engine.clients.dynamodb.meta.events

    def count(model: Any, params: dict[str, Any], **_: Any) -> None:
        if model.name in ("GetItem", "BatchGetItem", "Query") and job["dispatch_id"] in str(params):
            reads.append(model.name)

    events.register("before-call.dynamodb", count)
    try:
        started = time.monotonic()
        assert _call(job, "anthropic", "/v1/messages", body).status_code == 200
        first = len(reads)
        assert first >= 1  # the run state, checked before forwarding
        while time.monotonic() - started < RUN_STATE_FRESH_S * 0.8:
            assert _call(job, "anthropic", "/v1/messages", body).status_code == 200
        assert len(reads) == first  # fresh: no read
        time.sleep(RUN_STATE_FRESH_S)
        assert _call(job, "anthropic", "/v1/messages", body).status_code == 200
        assert len(reads) == first + 1  # stale: one read, beside the call
    finally:
        events.unregister("before-call.dynamodb", count)


def test_a_repeated_claim_replaces_the_gateway_token(world: World, fakes: Fakes) -> None:
    stores = world.engine.stores
    record = stores.dispatches.create(
        record=DispatchRecord(
            dispatch_id=new_dispatch_id(), tenant_id=world.tenant_id, agent="codex", task="x", timeout_s=60
        ),
        actor=Actor.system("test"),
    )
    enqueue_dispatch(
        record,
        sqs=world.engine.clients.sqs,
        queue_urls=world.settings.dispatch_queue_urls,
        store=stores.dispatches,
    )
    task_id = t.new_task_id()
    token, token_hash = t.make_token(task_id)
    assert world.engine.tasks.create(
        task_id=task_id, agent="codex", launched_for="warm", client_token=task_id, token_hash=token_hash
    )

    def claim() -> dict[str, Any]:
        reply = httpx.post(
            f"{world.url}/internal/claim",
            json={"task_id": task_id},
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )
        assert reply.status_code == 200, reply.text
        answer: dict[str, Any] = reply.json()
        return answer

    first, second = claim(), claim()  # the first answer was lost: the runner asks again
    assert first["gateway_token"] != second["gateway_token"]
    fakes.responses.script(
        fakes.responses.message("done", openai_responses.Usage(input_tokens=5, output_tokens=1))
    )
    body = {"model": "gpt-5", "stream": True, "input": []}
    assert _call(first, "openai", "/v1/responses", body).status_code == 401
    assert _call(second, "openai", "/v1/responses", body).status_code == 200


# -- pass-through -------------------------------------------------------------------------------


def test_a_stream_passes_through_as_it_arrives(world: World, fakes: Fakes) -> None:
    _, job = world.start("claude")
    hold = threading.Event()
    streamed = fakes.anthropic.text("hello there", anthropic.Usage(input_tokens=12, output_tokens=3))
    fakes.anthropic.script(Reply(events=streamed.events, hold=hold))
    body = {"model": "claude-sonnet-4-5", "stream": True, "max_tokens": 64, "messages": []}
    token = job["gateway_token"]
    with httpx.stream(
        "POST",
        f"{job['gateway_url']}/anthropic/v1/messages",
        json=body,
        headers={"x-api-key": token},
        timeout=30,
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        chunks = response.iter_raw()
        started = time.monotonic()
        first = next(chunks)
        # the provider is still holding its stream: this came before the answer's end
        assert not hold.is_set() and time.monotonic() - started < 5
        assert b"message_start" in first
        hold.set()
        rest = b"".join(chunks)
    assert (first + rest).count(b"event: ") == len(streamed.events or ())
    assert b"message_stop" in rest


def test_the_real_key_is_added_and_the_agents_token_never_reaches_the_provider(
    world: World, fakes: Fakes
) -> None:
    cases = [
        (
            "claude",
            "anthropic",
            fakes.anthropic,
            "/v1/messages",
            {"model": "claude-sonnet-4-5", "messages": []},
        ),
        ("codex", "openai", fakes.responses, "/v1/responses", {"model": "gpt-5", "input": []}),
        ("aider", "openai", fakes.chat, "/v1/chat/completions", {"model": "gpt-4o", "messages": []}),
        ("grok", "xai", fakes.xai, "/v1/chat/completions", {"model": "grok-code-fast-1", "messages": []}),
        ("gemini", "gemini", fakes.gemini, "/v1beta/models/gemini-2.5-pro:generateContent", {"contents": []}),
    ]
    expected_key = {
        "anthropic": ("x-api-key", KEYS["ANTHROPIC_API_KEY"]),
        "openai": ("authorization", f"Bearer {KEYS['OPENAI_API_KEY']}"),
        "xai": ("authorization", f"Bearer {KEYS['GROK_API_KEY']}"),
        "gemini": ("x-goog-api-key", KEYS["GEMINI_API_KEY"]),
    }
    for agent, route, fake, path, body in cases:
        _, job = world.start(agent)
        fake.script(lambda request: Reply(body={"ok": True}))
        token = job["gateway_token"]
        # every place a client may put its key, the token included: none of it is forwarded
        headers = {"Authorization": f"Bearer {token}", "Cookie": "session=1", "X-Forwarded-For": "10.0.0.9"}
        if route == "gemini":
            reply = httpx.post(
                f"{job['gateway_url']}/gemini{path}?key={token}&alt=json",
                json=body,
                headers=headers,
                timeout=30,
            )
        else:
            reply = _call(job, route, path, body, headers=headers)
        assert reply.status_code == 200, (agent, reply.text)
        (seen,) = fake.requests
        name, value = expected_key[route]
        assert seen.header(name) == value, agent
        sent = json.dumps(seen.headers) + seen.path + seen.body.decode()
        assert token not in sent, agent
        assert seen.header("cookie") is None and seen.header("x-forwarded-for") is None
        assert seen.path.split("?")[0] == path
        if route == "gemini":
            assert seen.path == f"{path}?alt=json"  # the query passes on, without its key
        assert json.loads(seen.body) == body


def test_provider_errors_pass_through_unchanged(world: World, fakes: Fakes) -> None:
    _, job = world.start("claude")
    limited = fakes.anthropic.error(429, "Number of request tokens has exceeded your rate limit")
    limited = Reply(
        status=429,
        body=limited.body,
        headers={"retry-after": "17", "anthropic-ratelimit-requests-remaining": "0"},
    )
    broken = fakes.anthropic.error(500, "Internal server error")
    fakes.anthropic.script(limited, broken)
    body = {"model": "claude-sonnet-4-5", "messages": []}
    first, second = (_call(job, "anthropic", "/v1/messages", body) for _ in range(2))
    assert first.status_code == 429
    assert (first.headers["retry-after"], first.headers["anthropic-ratelimit-requests-remaining"]) == (
        "17",
        "0",
    )
    assert first.json() == limited.body
    assert second.status_code == 500 and second.json() == broken.body
    # and they are audited with their status, never charged
    statuses = sorted(e["details"]["status"] for e in world.audit(job["dispatch_id"]))
    assert statuses == [429, 500]
    assert world.shown(job["dispatch_id"])["tokens"] is None


def test_only_model_calls_are_passed_on(world: World, fakes: Fakes) -> None:
    _, job = world.start("codex")
    fakes.responses.script()
    for method, path in (("POST", "/v1/files"), ("POST", "/v1/fine_tuning/jobs"), ("GET", "/v1/batches"),
                         ("POST", "/v1/responses/../files"), ("POST", "/v1/%2e%2e/files")):  # fmt: skip
        url = f"{job['gateway_url']}/openai{path}"
        reply = httpx.request(
            method, url, json={"model": "gpt-5"}, headers={"Authorization": f"Bearer {job['gateway_token']}"}
        )
        assert reply.status_code in (404, 401), (path, reply.text)
    assert fakes.responses.requests == []


# -- metering -----------------------------------------------------------------------------------


def test_usage_is_metered_for_each_provider_streamed_and_not(world: World, fakes: Fakes) -> None:
    """Each provider's usage in both forms; the dispatch's tokens and cost are the gateway's."""
    # Anthropic: 40 fresh + 1200 cache write + 300 cache read in, 30 out; then 100 in, 5 out
    _, claude = world.start("claude")
    fakes.anthropic.script(
        fakes.anthropic.text(
            "hi",
            anthropic.Usage(
                input_tokens=40,
                cache_creation_input_tokens=1200,
                cache_read_input_tokens=300,
                output_tokens=30,
            ),
        ),
        Reply(body={"type": "message", "content": [], "usage": {"input_tokens": 100, "output_tokens": 5}}),
    )
    _call(claude, "anthropic", "/v1/messages", {"model": "claude-sonnet-4-5", "stream": True, "messages": []})
    _call(claude, "anthropic", "/v1/messages", {"model": "claude-sonnet-4-5-20250929", "messages": []})
    shown = world.shown(claude["dispatch_id"])
    assert shown["tokens"] == {"input": 1640, "cached": 300, "output": 35}
    # 140 fresh * 3 + 1200 cache writes * 3.75 + 300 cached * 0.30 + 35 * 15, per million
    assert (shown["cost_usd"], shown["cost_source"]) == (0.005535, "gateway")

    # OpenAI Responses (codex): 1200 in (1000 cached), 40 out, streamed; 300 in, 10 out as JSON
    _, codex = world.start("codex")
    usage = openai_responses.Usage(input_tokens=1200, cached_tokens=1000, output_tokens=40)
    fakes.responses.script(
        fakes.responses.message("done", usage),
        Reply(body={"id": "resp", "output": [], "usage": {"input_tokens": 300, "output_tokens": 10}}),
    )
    _call(codex, "openai", "/v1/responses", {"model": "gpt-5", "stream": True, "input": []})
    _call(codex, "openai", "/v1/responses", {"model": "gpt-5", "input": []})
    shown = world.shown(codex["dispatch_id"])
    assert shown["tokens"] == {"input": 1500, "cached": 1000, "output": 50}
    assert shown["cost_usd"] == pytest.approx((500 * 1.25 + 1000 * 0.125 + 50 * 10) / 1e6)

    # Gemini: streamed (alt=sse) 9000 in (6000 cached), 60 out + 20 thinking; JSON 10 in, 2 out
    _, gem = world.start("gemini")
    fakes.gemini.script(
        fakes.gemini.text("done", gemini.Usage(prompt=9000, cached=6000, candidates=60, thoughts=20))
    )
    _call(gem, "gemini", "/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse", {"contents": []})
    _call(
        gem, "gemini", "/v1beta/models/gemini-2.5-pro:generateContent", {"contents": []}
    )  # the fake's side call
    shown = world.shown(gem["dispatch_id"])
    assert shown["tokens"] == {"input": 9010, "cached": 6000, "output": 82}

    # xAI (OpenAI chat), streamed and as JSON
    _, grok = world.start("grok")
    chat_usage = openai_chat.Usage(prompt_tokens=900, cached_tokens=100, completion_tokens=50)
    fakes.xai.script(fakes.xai.turn("hi", chat_usage), fakes.xai.turn("hi", chat_usage))
    _call(grok, "xai", "/v1/chat/completions", {"model": "grok-code-fast-1", "stream": True, "messages": []})
    _call(grok, "xai", "/v1/chat/completions", {"model": "grok-code-fast-1", "messages": []})
    shown = world.shown(grok["dispatch_id"])
    assert shown["tokens"] == {"input": 1800, "cached": 200, "output": 100}
    assert shown["cost_source"] == "gateway"
    # each call has its audit entry, with tokens, cost, latency and status
    entries = world.audit(grok["dispatch_id"])
    assert len(entries) == 2
    for entry in entries:
        details = entry["details"]
        assert {details["provider"], details["model"], details["status"]} == {"xai", "grok-code-fast-1", 200}
        assert (details["input_tokens"], details["output_tokens"]) == (900, 50)
        assert details["cost_usd"] > 0 and details["latency_ms"] >= 0 and details["duration_ms"] >= 0


def test_a_chat_stream_is_metered_without_showing_the_client_a_usage_chunk_it_did_not_ask_for(
    world: World, fakes: Fakes
) -> None:
    _, job = world.start("aider")
    usage = openai_chat.Usage(prompt_tokens=1200, completion_tokens=60)
    fakes.chat.script(fakes.chat.turn("hello", usage), fakes.chat.turn("hello", usage))
    plain = _call(job, "openai", "/v1/chat/completions", {"model": "gpt-4o", "stream": True, "messages": []})
    asked = _call(
        job,
        "openai",
        "/v1/chat/completions",
        {"model": "gpt-4o", "stream": True, "stream_options": {"include_usage": True}, "messages": []},
    )
    first, second = fakes.chat.model_calls
    assert json.loads(first.body)["stream_options"] == {"include_usage": True}  # the gateway's addition
    assert not any(isinstance(e, dict) and e.get("usage") for e in _events(plain.text))
    assert plain.text.rstrip().endswith("data: [DONE]")
    assert any(isinstance(e, dict) and e.get("usage") for e in _events(asked.text))
    shown = world.shown(job["dispatch_id"])
    assert shown["tokens"] == {"input": 2400, "cached": 0, "output": 120}


def test_the_gateways_figures_win_over_the_runners_report(world: World, fakes: Fakes) -> None:
    _, job = world.start("claude")
    fakes.anthropic.script(fakes.anthropic.text("ok", anthropic.Usage(input_tokens=1000, output_tokens=100)))
    _call(job, "anthropic", "/v1/messages", {"model": "claude-sonnet-4-5", "stream": True, "messages": []})
    world.gateway.settle()
    summary = {"tokens": {"input": 1, "output": 1, "cached_input": 0}, "cost_usd": 9.99}
    reply = httpx.post(
        f"{world.url}/internal/dispatches/{job['dispatch_id']}/result",
        json={"outcome": "COMPLETED", "exit_code": 0, "summary": summary},
        headers={"Authorization": f"Bearer {job['job_token']}"},
    )
    assert reply.status_code == 200, reply.text
    shown = world.shown(job["dispatch_id"])
    assert (shown["tokens"], shown["cost_usd"], shown["cost_source"]) == (
        {"input": 1000, "cached": 0, "output": 100},
        0.0045,
        "gateway",
    )
    usage = httpx.get(f"{world.url}/usage", headers={"Authorization": f"Bearer {world.api_key}"}).json()
    assert usage["total"]["cost_usd"] >= 0.0045


# -- what the gateway refuses ------------------------------------------------------------------


def test_models_outside_the_agents_and_the_tenants_lists_are_refused(world: World, fakes: Fakes) -> None:
    fakes.anthropic.script(after=fakes.anthropic.text("ok", anthropic.Usage(input_tokens=1, output_tokens=1)))
    _, job = world.start("claude")
    refused = _call(job, "anthropic", "/v1/messages", {"model": "claude-haiku-4-5", "messages": []})
    assert refused.status_code == 403
    assert refused.json()["error"] == {
        "type": "permission_error",
        "message": "Outpost gateway: model claude-haiku-4-5 is not allowed for agent claude;"
        " it allows claude-sonnet-4-5, claude-opus-4-1",
    }
    assert (
        _call(job, "anthropic", "/v1/messages", {"model": "claude-opus-4-1", "messages": []}).status_code
        == 200
    )
    _, narrow = world.start("claude", tenant_id=world.restricted_tenant_id)
    tenant_refused = _call(narrow, "anthropic", "/v1/messages", {"model": "claude-opus-4-1", "messages": []})
    assert tenant_refused.status_code == 403
    assert "not allowed for this tenant" in tenant_refused.json()["error"]["message"]
    allowed = _call(narrow, "anthropic", "/v1/messages", {"model": "claude-sonnet-4-5", "messages": []})
    assert allowed.status_code == 200
    # Gemini names the model in the path; aider's litellm name matches the API's
    _, gem = world.start("gemini")
    assert _call(gem, "gemini", "/v1beta/models/gemini-2.0-flash:generateContent", {}).status_code == 403
    assert (
        _call(gem, "gemini", "/v1beta/models/gemini-2.0-flash:generateContent", {}).json()["error"]["status"]
        == "PERMISSION_DENIED"
    )
    no_model = _call(job, "anthropic", "/v1/messages", {"messages": []})
    assert no_model.status_code == 400 and no_model.json()["error"]["type"] == "invalid_request_error"
    refusals = [e["details"].get("refused") for e in world.audit(job["dispatch_id"])]
    assert sorted(r for r in refusals if r) == ["bad-request", "model-not-allowed"]


@dataclass
class StandInBudgets:
    """The budgets' interface (control_plane/budgets.py) with a fixed answer and a record."""

    message: str | None = None
    charged: list[tuple[str, str, float, float]] = field(default_factory=list)

    def refusal(self, tenant_id: str, dispatch_id: str) -> str | None:
        return self.message

    def charge(self, tenant_id: str, dispatch_id: str, cost_usd: float, dispatch_spent: float) -> str | None:
        self.charged.append((tenant_id, dispatch_id, cost_usd, dispatch_spent))
        return None

    def applies(self, tenant_id: str) -> bool:
        return True

    def applies_known(self, tenant_id: str) -> bool | None:
        return True


def test_a_spent_budget_is_refused_in_each_providers_quota_shape_and_calls_are_charged(
    world: World, fakes: Fakes
) -> None:
    _, job = world.start("claude")
    world.gateway.settle()
    saved = world.gateway.budgets
    budgets = StandInBudgets()
    world.gateway.budgets = budgets
    try:
        fakes.anthropic.script(
            fakes.anthropic.text("ok", anthropic.Usage(input_tokens=1000, output_tokens=100))
        )
        _call(
            job, "anthropic", "/v1/messages", {"model": "claude-sonnet-4-5", "stream": True, "messages": []}
        )
        world.gateway.settle()
        # the dispatch's own total comes from its record, which the call has just added to
        assert budgets.charged == [(world.tenant_id, job["dispatch_id"], 0.0045, 0.0045)]
        budgets.message = "the tenant's daily budget of $5.00 is spent ($5.0010); no more model calls"
        refused = _call(job, "anthropic", "/v1/messages", {"model": "claude-sonnet-4-5", "messages": []})
        assert refused.status_code == 429 and "retry-after" not in refused.headers
        assert refused.json()["error"] == {
            "type": "rate_limit_error",
            "message": f"Outpost gateway: {budgets.message}",
        }
        _, codex = world.start("codex")
        quota = _call(codex, "openai", "/v1/responses", {"model": "gpt-5", "input": []})
        assert quota.status_code == 429
        assert (quota.json()["error"]["type"], quota.json()["error"]["code"]) == (
            "insufficient_quota",
            "insufficient_quota",
        )
        _, gem = world.start("gemini")
        exhausted = _call(gem, "gemini", "/v1beta/models/gemini-2.5-pro:generateContent", {})
        assert (exhausted.status_code, exhausted.json()["error"]["status"]) == (429, "RESOURCE_EXHAUSTED")
    finally:
        world.gateway.budgets = saved


def test_a_dispatch_has_a_limited_number_of_calls_open_at_once(world: World, fakes: Fakes) -> None:
    _, job = world.start("claude")
    hold = threading.Event()
    streamed = fakes.anthropic.text("slow", anthropic.Usage(input_tokens=1, output_tokens=1))
    fakes.anthropic.script(*[Reply(events=streamed.events, hold=hold)] * MAX_CALLS, after=streamed)
    body = {"model": "claude-sonnet-4-5", "stream": True, "messages": []}
    url = f"{job['gateway_url']}/anthropic/v1/messages"
    with httpx.Client(timeout=30) as client:
        open_streams = [
            client.stream("POST", url, json=body, headers={"x-api-key": job["gateway_token"]})
            for _ in range(MAX_CALLS)
        ]
        try:
            for stream in open_streams:
                assert stream.__enter__().status_code == 200
            refused = _call(job, "anthropic", "/v1/messages", body)
            assert refused.status_code == 429 and refused.headers["retry-after"] == "1"
            assert refused.json()["error"]["type"] == "rate_limit_error"
        finally:
            hold.set()
            for stream in open_streams:
                stream.__exit__(None, None, None)
    deadline = time.monotonic() + 10  # the slots are given back as the streams close
    while (status := _call(job, "anthropic", "/v1/messages", body).status_code) == 429:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert status == 200


def test_the_audit_holds_no_prompt_answer_key_or_token(world: World, fakes: Fakes) -> None:
    _, job = world.start("claude")
    secret_prompt = "PROMPT-MARKER-" + uuid.uuid4().hex
    fakes.anthropic.script(
        fakes.anthropic.text("ANSWER-MARKER", anthropic.Usage(input_tokens=5, output_tokens=2))
    )
    body = {
        "model": "claude-sonnet-4-5",
        "stream": True,
        "messages": [{"role": "user", "content": secret_prompt}],
    }
    assert secret_prompt.encode() in _call(job, "anthropic", "/v1/messages", body).request.content
    (entry,) = world.audit(job["dispatch_id"])
    text = json.dumps(entry)
    for forbidden in (secret_prompt, "ANSWER-MARKER", job["gateway_token"], KEYS["ANTHROPIC_API_KEY"]):
        assert forbidden not in text
    assert entry["tenant_id"] == world.tenant_id and entry["actor"] == "system:gateway"
    assert {"provider", "model", "status", "input_tokens", "output_tokens", "cost_usd", "latency_ms"} <= set(
        entry["details"]
    )


def test_a_call_that_spends_the_dispatchs_budget_ends_it_and_later_calls_hear_why(
    world: World, fakes: Fakes
) -> None:
    stores = world.engine.stores
    frugal, _ = stores.tenants.create(
        name="frugal",
        max_running=10,
        max_queued=10,
        allowed_agents=None,
        budgets={"budget_dispatch_usd": 0.001},
        actor=Actor.system("test"),
    )
    record, job = world.start("claude", tenant_id=frugal.tenant_id)
    # $0.0045 (1000 in * $3/M + 100 out * $15/M): this call takes the dispatch over its $0.001
    fakes.anthropic.script(fakes.anthropic.text("ok", anthropic.Usage(input_tokens=1000, output_tokens=100)))
    body = {"model": "claude-sonnet-4-5", "stream": True, "messages": []}
    assert _call(job, "anthropic", "/v1/messages", body).status_code == 200  # a call under way is never cut
    world.gateway.settle()
    ended = stores.dispatches.get(dispatch_id=record.dispatch_id, tenant_id=None)
    assert ended is not None and ended.status is Status.FAILED
    assert "the dispatch's budget of $0.001 is spent" in (ended.error or "")
    fakes.anthropic.script()
    refused = _call(job, "anthropic", "/v1/messages", body)
    assert refused.status_code == 429 and "retry-after" not in refused.headers
    assert refused.json()["error"]["type"] == "rate_limit_error"
    assert "the dispatch's budget" in refused.json()["error"]["message"]
    assert fakes.anthropic.model_calls == []  # nothing more reached the provider
