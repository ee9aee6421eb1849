"""The ``outpost`` command: ``outpost dev`` runs Outpost locally; the rest talk to a control plane.

Client commands read ``OUTPOST_URL`` and ``OUTPOST_API_KEY`` (what ``outpost dev`` prints) or
take ``--url`` / ``--api-key``.
"""

from __future__ import annotations

import json
import time
from importlib import metadata
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer

app = typer.Typer(help="Outpost: run AI coding agents as one-job sandboxes.", no_args_is_help=True)
artifacts_app = typer.Typer(help="A dispatch's result bundle.", no_args_is_help=True)
app.add_typer(artifacts_app, name="artifacts")


def _print_version(wanted: bool) -> None:
    if wanted:
        typer.echo(f"outpost {metadata.version('outpost')}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option("--version", is_eager=True, callback=_print_version, help="print the version and exit"),
    ] = False,
) -> None:
    """Outpost: run AI coding agents as one-job sandboxes."""


TERMINAL = {"COMPLETED", "FAILED", "TIMED_OUT", "CANCELLED"}
EXIT_BY_STATUS = {"COMPLETED": 0, "FAILED": 1, "TIMED_OUT": 2, "CANCELLED": 3}

UrlOpt = Annotated[str, typer.Option("--url", envvar="OUTPOST_URL", help="the control plane's URL")]
KeyOpt = Annotated[str, typer.Option("--api-key", envvar="OUTPOST_API_KEY", help="a tenant API key")]


def _client(url: str, api_key: str) -> httpx.Client:
    return httpx.Client(
        base_url=url.rstrip("/"), headers={"Authorization": f"Bearer {api_key}"}, timeout=30.0
    )


def _check(response: httpx.Response) -> Any:
    if response.status_code >= 400:
        try:
            body = response.json()
            detail = body.get("detail") or body.get("title") or response.text
        except ValueError:
            detail = response.text
        typer.echo(f"error {response.status_code}: {detail}", err=True)
        raise typer.Exit(1)
    return response.json() if response.content else None


def _print(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, sort_keys=True))


def _usage_text(item: dict[str, Any]) -> str:
    """A dispatch's tokens and cost on one line, e.g. "tokens 400000 in (100000 cached) / 20000 out,
    $0.5875 (price-table)"; what the run did not report is left out."""
    tokens = item.get("tokens") or {}
    parts = []
    if tokens.get("input") is not None or tokens.get("output") is not None:
        cached = f" ({tokens['cached']} cached)" if tokens.get("cached") else ""
        parts.append(f"tokens {tokens.get('input', '?')} in{cached} / {tokens.get('output', '?')} out")
    if item.get("cost_usd") is not None:
        parts.append(f"${item['cost_usd']:.4f} ({item.get('cost_source')})")
    return ", ".join(parts) or "no usage reported"


def _wait(client: httpx.Client, dispatch_id: str, timeout_s: float | None) -> dict[str, Any]:
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        record = _check(client.get(f"/dispatch/{dispatch_id}"))
        if record["status"] in TERMINAL:
            return record
        if deadline is not None and time.monotonic() > deadline:
            typer.echo(f"still {record['status']} after {timeout_s:g} s", err=True)
            raise typer.Exit(4)
        time.sleep(0.5)


@app.command()
def dev(
    port: Annotated[int | None, typer.Option(help="port on 127.0.0.1 (default: a free one)")] = None,
    state_dir: Annotated[
        Path | None, typer.Option(help="keep local state here (default: a temp dir)")
    ] = None,
    runtime: Annotated[
        str,
        typer.Option(
            help="local: the runner as a host process; container: in the agent image, with the "
            "Dev stage's task definition constraints (buildah)"
        ),
    ] = "local",
    cdk_out: Annotated[
        Path | None,
        typer.Option(help="container runtime: a `cdk synth` output to read (default: synthesize Dev)"),
    ] = None,
    allow_local_repos: Annotated[
        Path | None,
        typer.Option(
            help=(
                "dispatches may check out file:// repositories inside this directory "
                "(the container runtime mounts it read-only in every container)"
            ),
            exists=True,
            file_okay=False,
            resolve_path=True,
        ),
    ] = None,
) -> None:
    """Run Outpost locally: AWS emulator, control plane and a runtime, on loopback."""
    from control_plane.dev import RUNTIMES, run_dev

    if runtime not in RUNTIMES:
        typer.echo(f"error: --runtime must be one of {', '.join(RUNTIMES)}", err=True)
        raise typer.Exit(2)
    raise typer.Exit(
        run_dev(
            port=port,
            state_dir=state_dir,
            runtime=runtime,
            cdk_out=cdk_out,
            allow_local_repos=allow_local_repos,
        )
    )


@app.command()
def dispatch(
    task: Annotated[str, typer.Argument(help="the prompt (for the shell agent: the command)")],
    url: UrlOpt,
    api_key: KeyOpt,
    agent: Annotated[str, typer.Option(help="which agent runs it")] = "shell",
    model: Annotated[str | None, typer.Option(help="a model the agent allows (default: its default)")] = None,
    repo: Annotated[str | None, typer.Option(help="repository URL to check out")] = None,
    ref: Annotated[str | None, typer.Option(help="branch, tag or commit")] = None,
    timeout: Annotated[int | None, typer.Option("--timeout", help="job timeout in seconds")] = None,
    publish: Annotated[
        bool, typer.Option("--publish", help="push the change to a branch (docs/publishing.md)")
    ] = False,
    branch: Annotated[str | None, typer.Option(help="with --publish: default outpost/<dispatch id>")] = None,
    pr_title: Annotated[str | None, typer.Option(help="with --publish: open a pull request")] = None,
    pr_body: Annotated[str, typer.Option(help="the pull request's description")] = "",
    draft: Annotated[bool, typer.Option("--draft", help="open the pull request as a draft")] = False,
    wait: Annotated[bool, typer.Option("--wait", help="wait for the final status")] = False,
    wait_timeout: Annotated[float | None, typer.Option(help="give up waiting after this long")] = None,
) -> None:
    """Dispatch a job; prints the dispatch (with --wait: its final state; exit code by status)."""
    body: dict[str, Any] = {"agent": agent, "task": task}
    if model:
        body["model"] = model
    if repo:
        body["repo"] = {"url": repo, "ref": ref}
    if timeout:
        body["timeout_s"] = timeout
    if publish or branch or pr_title:
        pull_request = {"title": pr_title, "body": pr_body, "draft": draft} if pr_title else None
        body["publish"] = {"branch": branch, "pull_request": pull_request}
    with _client(url, api_key) as client:
        record = _check(client.post("/dispatch", json=body))
        if not wait:
            _print(record)
            return
        final = _wait(client, record["dispatch_id"], wait_timeout)
        _print(final)
        raise typer.Exit(EXIT_BY_STATUS.get(final["status"], 1))


@app.command()
def status(dispatch_id: str, url: UrlOpt, api_key: KeyOpt) -> None:
    """Show a dispatch (JSON on stdout; its tokens and cost on one line on stderr, so that the
    output stays JSON for jq and scripts)."""
    with _client(url, api_key) as client:
        record = _check(client.get(f"/dispatch/{dispatch_id}"))
    _print(record)
    typer.echo(_usage_text(record), err=True)


@app.command()
def cancel(dispatch_id: str, url: UrlOpt, api_key: KeyOpt) -> None:
    """Cancel a dispatch (a running one is stopped first)."""
    with _client(url, api_key) as client:
        _print(_check(client.delete(f"/dispatch/{dispatch_id}")))


@app.command("list")
def list_dispatches(
    url: UrlOpt,
    api_key: KeyOpt,
    status_filter: Annotated[str | None, typer.Option("--status")] = None,
    agent: Annotated[str | None, typer.Option()] = None,
    limit: Annotated[int, typer.Option(min=1, max=100)] = 20,
) -> None:
    """List your dispatches, newest first."""
    params: dict[str, Any] = {"limit": limit}
    if status_filter:
        params["status"] = status_filter
    if agent:
        params["agent"] = agent
    with _client(url, api_key) as client:
        page = _check(client.get("/dispatches", params=params))
    for item in page["items"]:
        typer.echo(
            f"{item['dispatch_id']}  {item['status']:<10} {item['agent']:<7} {item['created_at']}  "
            + _usage_text(item)
        )


@app.command()
def usage(
    url: UrlOpt,
    api_key: KeyOpt,
    since: Annotated[
        str | None, typer.Option(help="YYYY-MM-DD (UTC); default: 30 days before --until")
    ] = None,
    until: Annotated[str | None, typer.Option(help="YYYY-MM-DD (UTC), included; default: today")] = None,
) -> None:
    """Your tokens and cost by day and agent (at most 92 days at a time)."""
    params = {k: v for k, v in (("since", since), ("until", until)) if v}
    with _client(url, api_key) as client:
        report = _check(client.get("/usage", params=params))
    typer.echo(f"usage {report['since']} .. {report['until']}")
    typer.echo(
        f"{'day':<10}  {'agent':<7} {'runs':>5} {'input':>12} {'cached':>12} {'output':>12} {'cost $':>12}"
    )
    total = {**report["total"], "day": "total", "agent": ""}
    for row in [*report["days"], total]:
        tokens = row["tokens"]
        unpriced = f"  ({row['unpriced']} without a price)" if row["unpriced"] else ""
        typer.echo(
            f"{row['day']:<10}  {row['agent']:<7} {row['dispatches']:>5} {tokens['input']:>12} "
            f"{tokens['cached']:>12} {tokens['output']:>12} {row['cost_usd']:>12.4f}{unpriced}"
        )


@app.command()
def logs(
    dispatch_id: str,
    url: UrlOpt,
    api_key: KeyOpt,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="stream until the dispatch ends")] = False,
) -> None:
    """Print a dispatch's log lines."""
    with _client(url, api_key) as client:
        if not follow:
            page = _check(client.get(f"/dispatch/{dispatch_id}/logs"))
            for line in page["lines"]:
                typer.echo(line)
            return
        with client.stream(
            "GET", f"/dispatch/{dispatch_id}/logs", params={"follow": "true"}, timeout=None
        ) as response:
            if response.status_code >= 400:
                response.read()
                _check(response)
            for raw in response.iter_lines():
                if raw.strip():
                    for line in json.loads(raw)["lines"]:
                        typer.echo(line)


@artifacts_app.command("list")
def artifacts_list(dispatch_id: str, url: UrlOpt, api_key: KeyOpt) -> None:
    """List a dispatch's artifacts."""
    with _client(url, api_key) as client:
        for item in _check(client.get(f"/dispatch/{dispatch_id}/artifacts"))["items"]:
            typer.echo(f"{item['name']}  {item['size']}")


@artifacts_app.command("download")
def artifacts_download(
    dispatch_id: str,
    url: UrlOpt,
    api_key: KeyOpt,
    directory: Annotated[
        Path | None, typer.Argument(help="directory to write into (default: the current one)")
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="the same, as an option")] = None,
    name: Annotated[str | None, typer.Option(help="only this file")] = None,
) -> None:
    """Download a dispatch's artifacts (the result bundle) into a directory."""
    if directory is not None and out is not None and directory != out:
        typer.echo("error: give the directory once, as an argument or with --out", err=True)
        raise typer.Exit(2)
    out = directory or out or Path(".")
    out.mkdir(parents=True, exist_ok=True)
    with _client(url, api_key) as client:
        items = _check(client.get(f"/dispatch/{dispatch_id}/artifacts"))["items"]
        wanted = [i for i in items if name is None or i["name"] == name]
        if not wanted:
            typer.echo("no such artifact" if name else "no artifacts", err=True)
            raise typer.Exit(1)
        for item in wanted:
            target = out / Path(item["name"]).name
            with httpx.stream("GET", item["url"], timeout=60.0) as response:
                response.raise_for_status()
                with target.open("wb") as handle:
                    for chunk in response.iter_bytes():
                        handle.write(chunk)
            typer.echo(str(target))


@app.command()
def mcp(
    url: Annotated[str, typer.Option("--url", envvar="OUTPOST_URL", help="the control plane's URL")] = "",
    api_key: Annotated[
        str, typer.Option("--api-key", envvar="OUTPOST_API_KEY", help="a tenant API key")
    ] = "",
    http: Annotated[
        bool, typer.Option("--http", help="serve streamable HTTP (at /mcp) instead of stdio")
    ] = False,
    host: Annotated[str, typer.Option(help="with --http: the address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="with --http: the port")] = 8765,
) -> None:
    """Serve the dispatch tools to an assistant over MCP (README: "Using Outpost from an assistant")."""
    from control_plane.mcp_server import run  # the MCP SDK is imported for this command only

    raise typer.Exit(run(url=url, api_key=api_key, http=http, host=host, port=port))


def main() -> None:
    app(prog_name="outpost")


if __name__ == "__main__":
    main()
