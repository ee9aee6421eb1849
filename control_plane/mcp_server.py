"""``outpost mcp``: the control plane's dispatch API as MCP tools, so an assistant can hand work
to the fleet (dispatch, status, cancel, list, logs, artifacts).

A thin layer over ``control_plane.client.Client`` with one tenant API key: every call is the
REST API's, and every failure the API (or the network) reports reaches the assistant as a tool
error carrying ``OutpostError``'s one line, never as a protocol error or a traceback.
"""

from __future__ import annotations

import gc
import sys
from collections.abc import Callable
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import PurePosixPath
from typing import Annotated, Any, TypeVar

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import BaseModel, ConfigDict, Field

from agents.registry import AGENTS
from control_plane.client import TERMINAL, Client, OutpostError

POLL_S = 0.5  # how often a waiting dispatch is read; Client.wait's interval
DEFAULT_HTTP_PORT = 8765
# Artifacts whose contents a tool returns as text; the rest (and bigger ones) only by URL.
TEXT_SUFFIXES = frozenset({".diff", ".patch", ".json", ".jsonl", ".txt", ".md", ".log"})
MAX_FETCH_BYTES = 4 * 1024 * 1024  # never pull more than this into the server for one artifact

INSTRUCTIONS = """\
Outpost runs AI coding agents as one-job sandboxes. `dispatch` starts a job (an agent, a task,
optionally a repository); with wait=true it returns once the job ended (progress shows each status
on the way), else at once, and `get_status` follows it. A finished job's result is in
`get_artifacts`: patch.diff (the change), summary.json, transcript.txt. Statuses: PENDING,
RUNNING, then COMPLETED, FAILED, TIMED_OUT or CANCELLED."""

T = TypeVar("T")


class Dispatch(BaseModel):
    """A dispatch as the API shows it; fields beyond these (repo, tokens, publish, ...) pass through."""

    model_config = ConfigDict(extra="allow")

    dispatch_id: str
    status: str = Field(description="PENDING, RUNNING, COMPLETED, FAILED, TIMED_OUT or CANCELLED")
    agent: str
    task: str
    error: str | None = Field(default=None, description="why it failed; null otherwise")
    exit_code: int | None = None
    artifacts: list[str] = Field(default_factory=list, description="names; contents via get_artifacts")
    timestamps: dict[str, str] = Field(
        default_factory=dict, description="when the dispatch entered each status it passed"
    )
    cost_usd: float | None = None


class DispatchList(BaseModel):
    items: list[Dispatch] = Field(description="newest first")
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null at the end")


class Logs(BaseModel):
    dispatch_id: str
    status: str
    lines: list[str]
    next_chunk: int = Field(description="pass as `after` to read only newer lines")
    finished: bool = Field(description="the dispatch ended: no more lines will come")
    truncated: bool = Field(description="earlier lines of this read were left out to respect max_chars")


class Artifact(BaseModel):
    name: str
    size: int = Field(description="bytes")
    url: str = Field(description="a short-lived download URL")
    content: str | None = Field(description="the text (text artifacts only, up to max_chars); else null")
    truncated: bool = Field(description="content stops at max_chars")


class Artifacts(BaseModel):
    dispatch_id: str
    status: str
    items: list[Artifact]


DispatchId = Annotated[str, Field(description="the dispatch_id that dispatch returned")]


async def _call(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Runs a blocking client call off the event loop; an API or network failure becomes a
    tool error (isError) with the client's one-line message."""
    try:
        return await anyio.to_thread.run_sync(lambda: function(*args, **kwargs))
    except OutpostError as error:
        raise ToolError(str(error)) from None


def build_server(client: Client) -> MCPServer:
    """The MCP server's tools, all calling the control plane through ``client``."""

    @asynccontextmanager
    async def lifespan(_: MCPServer) -> Any:
        try:
            yield None
        finally:
            client.close()

    server: MCPServer = MCPServer(
        "outpost", instructions=INSTRUCTIONS, log_level="WARNING", lifespan=lifespan
    )
    reading = ToolAnnotations(read_only_hint=True, open_world_hint=False)

    @server.tool(annotations=ToolAnnotations(destructive_hint=False, open_world_hint=True))
    async def dispatch(
        ctx: Context,
        task: Annotated[str, Field(description="the prompt for the agent (for `shell`: the command to run)")],
        agent: Annotated[str, Field(description=f"which agent runs it: one of {', '.join(AGENTS)}")],
        repo_url: Annotated[
            str | None, Field(description="https:// URL of a repository to check out")
        ] = None,
        repo_ref: Annotated[str | None, Field(description="branch, tag or commit of repo_url")] = None,
        model: Annotated[str | None, Field(description="a model the agent allows; default: its own")] = None,
        timeout_s: Annotated[int | None, Field(ge=1, description="job timeout; default: the agent's")] = None,
        wait: Annotated[
            bool, Field(description="return only once the job ended (or wait_timeout_s passed)")
        ] = False,
        wait_timeout_s: Annotated[
            float, Field(gt=0, le=3600, description="with wait: give up waiting (not the job) after this")
        ] = 300,
        idempotency_key: Annotated[
            str | None, Field(max_length=128, description="the same key again returns the same dispatch")
        ] = None,
    ) -> Dispatch:
        """Start a job: an agent runs the task in a fresh sandbox, on the repository if given."""
        body: dict[str, Any] = {"agent": agent, "task": task}
        if repo_url:
            body["repo"] = {"url": repo_url, "ref": repo_ref}
        body |= {k: v for k, v in {"model": model, "timeout_s": timeout_s}.items() if v is not None}
        record = await _call(client.dispatch, body, idempotency_key=idempotency_key)
        if wait:
            record = await _wait(ctx, client, record, wait_timeout_s)
        return Dispatch.model_validate(record)

    @server.tool(annotations=reading)
    async def get_status(dispatch_id: DispatchId) -> Dispatch:
        """A dispatch's status, timestamps per status, error, exit code, artifact names and cost."""
        return Dispatch.model_validate(await _call(client.get, dispatch_id))

    @server.tool(
        annotations=ToolAnnotations(destructive_hint=True, idempotent_hint=True, open_world_hint=False)
    )
    async def cancel(dispatch_id: DispatchId) -> Dispatch:
        """Cancel a dispatch: a waiting one at once, a running one after its sandbox was stopped."""
        return Dispatch.model_validate(await _call(client.cancel, dispatch_id))

    @server.tool(annotations=reading)
    async def list_dispatches(
        status: Annotated[str | None, Field(description="only this status, e.g. RUNNING")] = None,
        agent: Annotated[str | None, Field(description="only this agent")] = None,
        limit: Annotated[int, Field(ge=1, le=100, description="at most this many")] = 20,
        cursor: Annotated[str | None, Field(description="next_cursor of the previous page")] = None,
    ) -> DispatchList:
        """The tenant's dispatches, newest first."""
        page = await _call(client.list_dispatches, status=status, agent=agent, limit=limit, cursor=cursor)
        return DispatchList.model_validate(page)

    @server.tool(annotations=reading)
    async def read_logs(
        dispatch_id: DispatchId,
        after: Annotated[int, Field(ge=0, description="next_chunk of an earlier read: only newer lines")] = 0,
        max_chars: Annotated[
            int, Field(ge=100, le=200_000, description="keep the newest lines within this many characters")
        ] = 20_000,
    ) -> Logs:
        """The agent's log lines so far; read again with after=next_chunk for what came since."""
        record = await _call(client.get, dispatch_id)
        page = await _call(client.logs, dispatch_id, after=after)
        lines, kept = page["lines"], 0
        # The newest lines are what a follower wants; next_chunk stays past all of them, and the
        # whole log is also in the transcript.txt artifact.
        start = len(lines)
        while start > 0 and kept + len(lines[start - 1]) + 1 <= max_chars:
            start -= 1
            kept += len(lines[start]) + 1
        return Logs(
            dispatch_id=dispatch_id,
            status=record["status"],
            lines=lines[start:],
            next_chunk=page["next_chunk"],
            finished=page["finished"],
            truncated=start > 0,
        )

    @server.tool(annotations=reading)
    async def get_artifacts(
        dispatch_id: DispatchId,
        names: Annotated[
            list[str] | None, Field(description="only these, e.g. ['patch.diff']; default: all")
        ] = None,
        max_chars: Annotated[
            int, Field(ge=0, le=200_000, description="per text artifact; 0: list them without contents")
        ] = 20_000,
    ) -> Artifacts:
        """A dispatch's result bundle: each file's name, size and download URL, and the text of
        text files (patch.diff, summary.json, transcript.txt, manifest.json)."""
        record = await _call(client.get, dispatch_id)
        items = {i["name"]: i for i in await _call(client.artifacts, dispatch_id)}
        missing = sorted(set(names or ()) - set(items))
        if missing:
            raise ToolError(f"no artifact named {', '.join(missing)} (it has: {', '.join(items) or 'none'})")
        chosen = [name for name in items if not names or name in names]
        readable = [name for name in chosen if max_chars and _is_text(name, items[name]["size"])]
        # checked against the bundle's manifest, as `outpost artifacts download` checks them
        texts = await _call(client.read, dispatch_id, readable) if readable else {}
        result = []
        for name in chosen:
            item = items[name]
            content, truncated = None, False
            if name in texts:
                text = texts[name].decode("utf-8", errors="replace")
                content, truncated = text[:max_chars], len(text) > max_chars
            result.append(
                Artifact(name=name, size=item["size"], url=item["url"], content=content, truncated=truncated)
            )
        return Artifacts(dispatch_id=dispatch_id, status=record["status"], items=result)

    return server


def _is_text(name: str, size: int) -> bool:
    return PurePosixPath(name).suffix in TEXT_SUFFIXES and size <= MAX_FETCH_BYTES


async def _wait(ctx: Context, client: Client, record: dict[str, Any], timeout_s: float) -> dict[str, Any]:
    """Polls until the dispatch ends, reporting each status it enters as progress (when the
    caller asked for progress). Not ``Client.wait`` in a thread: this loop stops at once when
    the assistant cancels the call, where a blocked thread would poll on until its timeout."""
    reported: list[str] = []

    async def report(record: dict[str, Any]) -> None:
        # From the record's timestamps too, so that a status shorter than a poll is not missed.
        stamps = sorted((datetime.fromisoformat(t), s) for s, t in (record.get("timestamps") or {}).items())
        entered = [s for _, s in stamps if s not in reported]
        if record["status"] not in entered and record["status"] != (reported[-1] if reported else None):
            entered.append(record["status"])  # entered again (a requeued job), or no timestamps
        for status in entered:
            reported.append(status)
            await ctx.report_progress(len(reported), message=status)

    deadline = anyio.current_time() + timeout_s
    await report(record)
    while record["status"] not in TERMINAL and anyio.current_time() < deadline:
        await anyio.sleep(POLL_S)
        record = await _call(client.get, record["dispatch_id"])
        await report(record)
    return record


def run(
    *, url: str, api_key: str, http: bool = False, host: str = "127.0.0.1", port: int = DEFAULT_HTTP_PORT
) -> int:
    """Serves until stdin closes (stdio) or the process is stopped (HTTP); returns the exit code."""
    try:
        client = Client(url, api_key)
    except OutpostError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    server = build_server(client)
    # The ~100,000 long-lived objects the SDK's import creates (pydantic models and schemas) made
    # the interpreter's last collection take 0.4-1.5 s at exit, which a host closing stdin waited
    # for. Frozen, they are left out of every collection, that one included.
    gc.freeze()
    if not http:
        server.run("stdio")
        return 0
    # Anyone who reaches this port acts with the tenant's key: loopback unless told otherwise.
    print(f"outpost mcp: serving http://{host}:{port}/mcp for {client.url}", file=sys.stderr, flush=True)
    server.run("streamable-http", host=host, port=port)
    return 0
