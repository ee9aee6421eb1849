"""`outpost mcp` as an assistant meets it: the MCP SDK's own client talks to a real `outpost mcp`
process, over stdio and over streamable HTTP, which talks to a real `outpost dev`."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import anyio
import pytest
from mcp import Client, StdioServerParameters
from mcp.types import CallToolResult

from tests.e2e.helpers import OUTPOST, Dev, wait_for

TOOLS = {"dispatch", "get_status", "cancel", "list_dispatches", "read_logs", "get_artifacts"}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="module")
def http_server(dev: Dev, tmp_path_factory) -> Iterator[str]:
    """A real `outpost mcp --http` on a free loopback port: its URL."""
    port = _free_port()
    stderr_path = tmp_path_factory.mktemp("mcp") / "stderr"
    with stderr_path.open("wb") as stderr:
        process = subprocess.Popen(
            [str(OUTPOST), "mcp", "--http", "--port", str(port)],
            env=_env(dev.url, dev.api_key),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    try:
        wait_for(
            lambda: _listening(port) or process.poll() is not None, 30, what="outpost mcp --http listening"
        )
        assert process.poll() is None, stderr_path.read_text()
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _env(url: str, api_key: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OUTPOST_")}
    return env | {"OUTPOST_URL": url, "OUTPOST_API_KEY": api_key}


def _stdio(url: str, api_key: str) -> StdioServerParameters:
    # Only the two variables, as an assistant's configuration passes them (the SDK adds PATH, HOME).
    return StdioServerParameters(
        command=str(OUTPOST), args=["mcp"], env={"OUTPOST_URL": url, "OUTPOST_API_KEY": api_key}
    )


def _run(target: str | StdioServerParameters, scenario: Callable[[Client], Awaitable[None]]) -> None:
    async def main() -> None:
        with anyio.fail_after(90):
            async with Client(target, read_timeout_seconds=60) as client:
                await scenario(client)

    anyio.run(main)


@pytest.fixture(params=["stdio", "http"])
def target(request, dev: Dev) -> str | StdioServerParameters:
    if request.param == "stdio":
        return _stdio(dev.url, dev.api_key)
    return request.getfixturevalue("http_server")


async def _ok(client: Client, tool: str, arguments: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    result = await client.call_tool(tool, arguments, **kwargs)
    assert not result.is_error, _text(result)
    assert result.structured_content is not None
    return result.structured_content


def _text(result: CallToolResult) -> str:
    return "\n".join(getattr(block, "text", "") for block in result.content)


async def _error(client: Client, tool: str, arguments: dict[str, Any], *, one_line: bool = True) -> str:
    """The text of a tool error: one line for what the API or the network refused (arguments
    that fail the input schema get pydantic's report from the SDK, one line per field)."""
    result = await client.call_tool(tool, arguments)
    assert result.is_error, result
    text = _text(result)
    assert "Traceback" not in text, text
    assert "\n" not in text or not one_line, text
    return text


async def _until(client: Client, dispatch_id: str, statuses: set[str], timeout: float = 30) -> dict[str, Any]:
    with anyio.fail_after(timeout):
        while True:
            record = await _ok(client, "get_status", {"dispatch_id": dispatch_id})
            if record["status"] in statuses:
                return record
            await anyio.sleep(0.2)


def test_tools_are_listed_with_input_and_output_schemas(dev: Dev, target):
    async def scenario(client: Client) -> None:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        assert set(tools) == TOOLS
        for tool in tools.values():
            assert tool.description, tool.name
            assert tool.input_schema["type"] == "object"
            assert {"dispatch_id", "status"} <= set(_output_fields(tool.output_schema)), tool.name
        dispatch = tools["dispatch"].input_schema
        assert set(dispatch["required"]) == {"task", "agent"}
        assert {"repo_url", "repo_ref", "model", "timeout_s", "wait", "wait_timeout_s"} <= set(
            dispatch["properties"]
        )
        assert "shell" in dispatch["properties"]["agent"]["description"]
        assert set(tools["list_dispatches"].input_schema["properties"]) == {
            "status",
            "agent",
            "limit",
            "cursor",
        }
        assert "after" in tools["read_logs"].input_schema["properties"]
        assert tools["get_status"].annotations.read_only_hint is True

    _run(target, scenario)


def _output_fields(schema: dict[str, Any] | None) -> set[str]:
    """The fields of a result, or of the items of a list result."""
    assert schema is not None
    fields = set(schema["properties"])
    if "items" in fields and "dispatch_id" not in fields:
        item = schema["properties"]["items"]["items"]["$ref"].rsplit("/", 1)[-1]
        fields |= set(schema["$defs"][item]["properties"])
    return fields


def test_dispatch_with_wait_reports_each_status_and_the_results_are_readable(dev: Dev, target):
    async def scenario(client: Client) -> None:
        progress: list[tuple[float, str | None]] = []

        async def on_progress(value: float, total: float | None, message: str | None) -> None:
            progress.append((value, message))

        task = "echo hi > out.txt && echo wrote out.txt"
        final = await _ok(
            client,
            "dispatch",
            {"agent": "shell", "task": task, "wait": True, "wait_timeout_s": 60},
            progress_callback=on_progress,
        )
        assert final["status"] == "COMPLETED", final
        assert final["exit_code"] == 0 and final["task"] == task
        dispatch_id = final["dispatch_id"]
        assert [message for _, message in progress] == ["PENDING", "RUNNING", "COMPLETED"]
        assert [value for value, _ in progress] == [1, 2, 3]

        status = await _ok(client, "get_status", {"dispatch_id": dispatch_id})
        assert (status["dispatch_id"], status["status"]) == (dispatch_id, "COMPLETED")

        listed = await _ok(client, "list_dispatches", {"status": "COMPLETED", "agent": "shell", "limit": 100})
        assert dispatch_id in {item["dispatch_id"] for item in listed["items"]}
        assert all(item["status"] == "COMPLETED" for item in listed["items"])
        first = await _ok(client, "list_dispatches", {"limit": 1})
        assert len(first["items"]) == 1 and first["next_cursor"]
        second = await _ok(client, "list_dispatches", {"limit": 1, "cursor": first["next_cursor"]})
        assert first["items"][0]["dispatch_id"] not in {i["dispatch_id"] for i in second["items"]}

        logs = await _ok(client, "read_logs", {"dispatch_id": dispatch_id})
        assert (logs["dispatch_id"], logs["status"], logs["finished"]) == (dispatch_id, "COMPLETED", True)
        assert any("wrote out.txt" in line for line in logs["lines"]), logs
        newer = await _ok(client, "read_logs", {"dispatch_id": dispatch_id, "after": logs["next_chunk"]})
        assert newer["lines"] == [] and newer["next_chunk"] == logs["next_chunk"]

        bundle = await _ok(client, "get_artifacts", {"dispatch_id": dispatch_id})
        assert (bundle["dispatch_id"], bundle["status"]) == (dispatch_id, "COMPLETED")
        files = {item["name"]: item for item in bundle["items"]}
        assert {"patch.diff", "summary.json", "transcript.txt", "manifest.json"} <= set(files)
        assert "+hi" in files["patch.diff"]["content"] and "out.txt" in files["patch.diff"]["content"]
        assert files["patch.diff"]["url"].startswith("http") and files["patch.diff"]["size"] > 0
        capped = await _ok(
            client, "get_artifacts", {"dispatch_id": dispatch_id, "names": ["patch.diff"], "max_chars": 10}
        )
        assert [item["name"] for item in capped["items"]] == ["patch.diff"]
        assert len(capped["items"][0]["content"]) == 10 and capped["items"][0]["truncated"] is True

    _run(target, scenario)


def test_cancel_stops_a_running_dispatch(dev: Dev, target):
    async def scenario(client: Client) -> None:
        # A wait that ends before the job does answers with the status so far, not an error.
        started = await _ok(
            client,
            "dispatch",
            {"agent": "shell", "task": "sleep 300", "wait": True, "wait_timeout_s": 0.5},
        )
        assert started["status"] in {"PENDING", "RUNNING"}
        dispatch_id = started["dispatch_id"]
        await _until(client, dispatch_id, {"RUNNING"})
        cancelled = await _ok(client, "cancel", {"dispatch_id": dispatch_id})
        assert (cancelled["dispatch_id"], cancelled["status"]) == (dispatch_id, "CANCELLED")
        assert (await _ok(client, "get_status", {"dispatch_id": dispatch_id}))["status"] == "CANCELLED"

    _run(target, scenario)


def test_api_refusals_are_tool_errors_with_the_apis_message(dev: Dev, target):
    async def scenario(client: Client) -> None:
        missing = await _error(client, "get_status", {"dispatch_id": "d-does-not-exist"})
        assert "404" in missing and "d-does-not-exist" in missing
        for tool in ("cancel", "read_logs", "get_artifacts"):
            assert "404" in await _error(client, tool, {"dispatch_id": "d-does-not-exist"})
        bad_agent = await _error(client, "dispatch", {"agent": "nope", "task": "echo hi"})
        assert "422" in bad_agent and "unknown agent" in bad_agent
        invalid = await _error(client, "list_dispatches", {"limit": 0}, one_line=False)
        assert "limit" in invalid and "greater than or equal to 1" in invalid

    _run(target, scenario)


def test_cancelling_a_finished_dispatch_and_asking_for_a_missing_artifact_are_tool_errors(http_server: str):
    async def scenario(client: Client) -> None:
        done = await _ok(client, "dispatch", {"agent": "shell", "task": "true", "wait": True})
        assert done["status"] == "COMPLETED", done
        refused = await _error(client, "cancel", {"dispatch_id": done["dispatch_id"]})
        assert "409" in refused and "COMPLETED" in refused
        absent = await _error(
            client, "get_artifacts", {"dispatch_id": done["dispatch_id"], "names": ["nope.txt"]}
        )
        assert "nope.txt" in absent and "patch.diff" in absent

    _run(http_server, scenario)


def test_a_wrong_api_key_is_a_tool_error(dev: Dev):
    async def scenario(client: Client) -> None:
        assert len((await client.list_tools()).tools) == len(TOOLS)  # the server itself is fine
        refused = await _error(client, "list_dispatches", {})
        assert "401" in refused

    _run(_stdio(dev.url, "op_wrong"), scenario)


def test_an_unreachable_control_plane_is_a_tool_error(dev: Dev):
    async def scenario(client: Client) -> None:
        unreachable = await _error(client, "get_status", {"dispatch_id": "d-1"})
        assert "cannot reach the control plane" in unreachable

    _run(_stdio(f"http://127.0.0.1:{_free_port()}", dev.api_key), scenario)


def test_a_missing_url_stops_the_server_with_one_line():
    env = {k: v for k, v in os.environ.items() if not k.startswith("OUTPOST_")}
    done = subprocess.run(
        [str(OUTPOST), "mcp"], env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 2
    assert done.stderr.strip() == "error: no control plane URL: set OUTPOST_URL or pass --url"
