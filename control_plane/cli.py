"""The ``outpost`` command: ``outpost dev`` runs Outpost locally; the rest talk to a control plane.

Client commands find the control plane and the key in this order: ``--url`` / ``--api-key``
(``--admin-key`` for ``tenants``), then ``OUTPOST_URL`` / ``OUTPOST_API_KEY`` /
``OUTPOST_ADMIN_KEY``, then the config file (control_plane/cli_config.py). Output is for people
(tables, one-line summaries); ``--json`` prints the API's JSON instead, for scripts. Every failure
is one line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from control_plane.cli_config import resolve
from control_plane.client import Client, OutpostError, WaitTimeout

app = typer.Typer(
    help="Outpost: run AI coding agents as one-job sandboxes.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
artifacts_app = typer.Typer(help="A dispatch's result bundle.", no_args_is_help=True)
tenants_app = typer.Typer(
    help="Tenants and their API keys, quotas and allowed agents (the admin key).", no_args_is_help=True
)
app.add_typer(artifacts_app, name="artifacts")
app.add_typer(tenants_app, name="tenants")

# A pipe gets whole lines: rich would otherwise cut tables at 80 columns.
out = Console(highlight=False, markup=False, width=None if sys.stdout.isatty() else 1000)
err = Console(stderr=True, highlight=False, markup=False, width=None if sys.stderr.isatty() else 1000)

EXIT_BY_STATUS = {"COMPLETED": 0, "FAILED": 1, "TIMED_OUT": 2, "CANCELLED": 3}
PHASES = ("PENDING", "PROVISIONING", "RUNNING")


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


UrlOpt = Annotated[
    str | None, typer.Option("--url", envvar="OUTPOST_URL", show_envvar=True, help="the control plane's URL")
]
KeyOpt = Annotated[
    str | None, typer.Option("--api-key", envvar="OUTPOST_API_KEY", show_envvar=True, help="a tenant API key")
]
AdminOpt = Annotated[
    str | None,
    typer.Option("--admin-key", envvar="OUTPOST_ADMIN_KEY", show_envvar=True, help="the admin key"),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="print the API's JSON (for scripts)")]


def _client(url: str | None, key: str | None, *, admin: bool = False) -> Client:
    settings = resolve(url=url, api_key=None if admin else key, admin_key=key if admin else None)
    return Client(settings.url, settings.admin_key if admin else settings.api_key)


def _table(headers: list[str], rows: list[list[str]]) -> None:
    """Aligned columns, no borders and no trailing blanks: easy to read, grep and cut."""
    widths = [max(len(str(row[i])) for row in [headers, *rows]) for i in range(len(headers))]
    for row in [headers, *rows]:
        typer.echo("  ".join(f"{cell:<{width}}" for cell, width in zip(row, widths, strict=True)).rstrip())


def _json(data: Any) -> None:
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
    if item.get("infra_cost_usd") is not None:
        parts.append(f"infrastructure ${item['infra_cost_usd']:.4f}")
    return ", ".join(parts) or "no usage reported"


def _phase_text(record: dict[str, Any]) -> str:
    """How long the dispatch spent in each status it left, e.g. "PENDING 0.2 s, RUNNING 3.1 s"."""
    stamps = sorted(
        (datetime.fromisoformat(t), status) for status, t in (record.get("timestamps") or {}).items()
    )
    spans = [
        f"{status} {(later - at).total_seconds():.1f} s"
        for (at, status), (later, _) in zip(stamps, stamps[1:], strict=False)
    ]
    return ", ".join(spans)


def _show_dispatch(record: dict[str, Any]) -> None:
    rows = [
        ("dispatch", record["dispatch_id"]),
        (
            "status",
            record["status"]
            + (f" (exit {record['exit_code']})" if record.get("exit_code") is not None else ""),
        ),
        ("agent", record["agent"] + (f", model {record['model']}" if record.get("model") else "")),
        ("task", record["task"]),
    ]
    if record.get("repo"):
        rows.append(("repo", f"{record['repo']['url']} @ {record['repo'].get('ref') or 'default branch'}"))
    if record.get("error"):
        rows.append(("error", record["error"]))
    if _phase_text(record):
        rows.append(("phases", _phase_text(record)))
    rows.append(("usage", _usage_text(record)))
    if record.get("artifacts"):
        rows.append(("artifacts", ", ".join(record["artifacts"])))
    publish = record.get("publish") or {}
    if publish.get("result"):
        rows.append(("published", json.dumps(publish["result"], sort_keys=True)))
    for key, value in rows:
        out.print(f"{key + ':':<11}{value}", soft_wrap=True)


@app.command()
def dev(
    port: Annotated[int | None, typer.Option(help="port on 127.0.0.1 (default: a free one)")] = None,
    state_dir: Annotated[
        Path | None,
        typer.Option(help="keep local state here across restarts: keys, dispatches, logs, artifacts"),
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
        raise OutpostError(f"--runtime must be one of {', '.join(RUNTIMES)}")
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
    url: UrlOpt = None,
    api_key: KeyOpt = None,
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
    wait: Annotated[
        bool, typer.Option("--wait", help="show its status live until it ends; exit 0 only if COMPLETED")
    ] = False,
    wait_timeout: Annotated[
        float | None, typer.Option(help="give up waiting after this long (exit 4)")
    ] = None,
    quiet: Annotated[
        bool,
        typer.Option(
            "--quiet", "-q", help="print only the dispatch id (for `id=$(outpost dispatch -q ...)`)"
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Dispatch a job. Exit codes with --wait: 0 COMPLETED, 1 FAILED, 2 TIMED_OUT, 3 CANCELLED,
    4 still running after --wait-timeout."""
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
        record = client.dispatch(body)
        if wait:
            record = _wait_live(client, record["dispatch_id"], wait_timeout, quiet=quiet)
    if quiet:
        typer.echo(record["dispatch_id"])
    else:
        _json(record) if as_json else _show_dispatch(record)
    if wait:
        raise typer.Exit(EXIT_BY_STATUS.get(record["status"], 1))


def _status_line(record: dict[str, Any]) -> str:
    """ "  RUNNING  (PENDING 0.2 s, PROVISIONING 4.1 s)": the status and the phases behind it."""
    phases = _phase_text(record)
    return f"  {record['status']}" + (f"  ({phases})" if phases else "")


def _wait_live(
    client: Client, dispatch_id: str, timeout_s: float | None, *, quiet: bool = False
) -> dict[str, Any]:
    """Waits with the status on stderr: a spinner with the time in the current phase on a
    terminal, one line per change otherwise (logs of CI jobs); nothing with ``quiet``."""
    if not quiet:
        err.print(f"dispatch {dispatch_id}", soft_wrap=True)
    try:
        if quiet:
            return client.wait(dispatch_id, timeout_s=timeout_s)
        if not err.is_terminal:
            return client.wait(
                dispatch_id,
                timeout_s=timeout_s,
                on_change=lambda record: err.print(_status_line(record), soft_wrap=True),
            )
        with err.status("PENDING") as spinner:

            def polled(record: dict[str, Any]) -> None:
                # the time in the current status, counted on: the status line updates each poll
                entered = (record.get("timestamps") or {}).get(record["status"])
                now = datetime.now(UTC)
                current = (
                    f" {(now - datetime.fromisoformat(entered)).total_seconds():.0f} s" if entered else ""
                )
                spinner.update(
                    record["status"] + current + _status_line(record).removeprefix(f"  {record['status']}")
                )

            return client.wait(dispatch_id, timeout_s=timeout_s, on_poll=polled)
    except WaitTimeout as timeout:
        err.print(f"{timeout}; it goes on: outpost status {dispatch_id}", soft_wrap=True)
        raise typer.Exit(4) from None
    except KeyboardInterrupt:
        err.print(f"stopped waiting; the dispatch goes on: outpost status {dispatch_id}", soft_wrap=True)
        raise typer.Exit(130) from None


@app.command()
def status(dispatch_id: str, url: UrlOpt = None, api_key: KeyOpt = None, as_json: JsonOpt = False) -> None:
    """Show a dispatch: status, phases, tokens and cost, artifacts."""
    with _client(url, api_key) as client:
        record = client.get(dispatch_id)
    _json(record) if as_json else _show_dispatch(record)


@app.command()
def cancel(dispatch_id: str, url: UrlOpt = None, api_key: KeyOpt = None, as_json: JsonOpt = False) -> None:
    """Cancel a dispatch (a running one is stopped first)."""
    with _client(url, api_key) as client:
        record = client.cancel(dispatch_id)
    _json(record) if as_json else _show_dispatch(record)


@app.command("list")
def list_dispatches(
    url: UrlOpt = None,
    api_key: KeyOpt = None,
    status_filter: Annotated[str | None, typer.Option("--status", help="only this status")] = None,
    agent: Annotated[str | None, typer.Option(help="only this agent")] = None,
    limit: Annotated[int, typer.Option(min=1, max=100)] = 20,
    cursor: Annotated[str | None, typer.Option(help="the next page, as the previous one printed it")] = None,
    as_json: JsonOpt = False,
) -> None:
    """List your dispatches, newest first, a page at a time."""
    with _client(url, api_key) as client:
        page = client.list_dispatches(status=status_filter, agent=agent, limit=limit, cursor=cursor)
    if as_json:
        _json(page)
        return
    rows = [
        [
            item["dispatch_id"],
            item["status"],
            item["agent"],
            datetime.fromisoformat(item["created_at"]).strftime("%Y-%m-%d %H:%M:%S"),
            _usage_text(item),
        ]
        for item in page["items"]
    ]
    if rows:
        _table(["DISPATCH", "STATUS", "AGENT", "CREATED", "USAGE"], rows)
    else:
        err.print("no dispatches" + (" match" if status_filter or agent else ""))
    if page.get("next_cursor"):
        err.print(f"more: outpost list --cursor {page['next_cursor']}", soft_wrap=True)


@app.command()
def usage(
    url: UrlOpt = None,
    api_key: KeyOpt = None,
    since: Annotated[
        str | None, typer.Option(help="YYYY-MM-DD (UTC); default: 30 days before --until")
    ] = None,
    until: Annotated[str | None, typer.Option(help="YYYY-MM-DD (UTC), included; default: today")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Your tokens and cost by day and agent (at most 92 days at a time)."""
    params = {k: v for k, v in (("since", since), ("until", until)) if v}
    with _client(url, api_key) as client:
        report = client.request("GET", "/usage", params=params)
    if as_json:
        _json(report)
        return
    out.print(f"usage {report['since']} .. {report['until']}")
    out.print(
        f"{'day':<10}  {'agent':<7} {'runs':>5} {'input':>12} {'cached':>12} {'output':>12} {'cost $':>12}"
    )
    total = {**report["total"], "day": "total", "agent": ""}
    for row in [*report["days"], total]:
        tokens = row["tokens"]
        unpriced = f"  ({row['unpriced']} without a price)" if row["unpriced"] else ""
        out.print(
            f"{row['day']:<10}  {row['agent']:<7} {row['dispatches']:>5} {tokens['input']:>12} "
            f"{tokens['cached']:>12} {tokens['output']:>12} {row['cost_usd']:>12.4f}{unpriced}"
        )


@app.command()
def logs(
    dispatch_id: str,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="stream until the dispatch ends")] = False,
) -> None:
    """Print a dispatch's log lines."""
    with _client(url, api_key) as client:
        lines = client.follow_logs(dispatch_id) if follow else client.logs(dispatch_id)["lines"]
        try:
            for line in lines:
                typer.echo(line)
        except KeyboardInterrupt:
            raise typer.Exit(130) from None


@artifacts_app.command("list")
def artifacts_list(
    dispatch_id: str, url: UrlOpt = None, api_key: KeyOpt = None, as_json: JsonOpt = False
) -> None:
    """List a dispatch's artifacts."""
    with _client(url, api_key) as client:
        items = client.artifacts(dispatch_id)
    if as_json:
        _json(items)
        return
    for item in items:
        out.print(f"{item['name']}  {item['size']}", soft_wrap=True)


@artifacts_app.command("download")
def artifacts_download(
    dispatch_id: str,
    directory: Annotated[
        Path | None, typer.Argument(help="directory to write into (default: the current one)")
    ] = None,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
    out_dir: Annotated[Path | None, typer.Option("--out", "-o", help="the same, as an option")] = None,
    name: Annotated[str | None, typer.Option(help="only this file")] = None,
) -> None:
    """Download a dispatch's artifacts (the result bundle) into a directory; each file is checked
    against the bundle's manifest (sha256 and size) before it is written."""
    if directory is not None and out_dir is not None and directory != out_dir:
        raise OutpostError("give the directory once, as an argument or with --out")
    with _client(url, api_key) as client:
        for path in client.download(dispatch_id, directory or out_dir or Path("."), name=name):
            typer.echo(str(path))


# -- tenants (admin) -------------------------------------------------------------------------


def _names(value: str | None) -> list[str] | None:
    return None if value is None else [n.strip() for n in value.split(",") if n.strip()]


def _budgets_text(tenant: dict[str, Any]) -> str:
    limits = [
        f"${tenant[field]:g} {what}"
        for field, what in (
            ("budget_daily_usd", "a day"),
            ("budget_monthly_usd", "a month"),
            ("budget_dispatch_usd", "a dispatch"),
        )
        if tenant.get(field) is not None
    ]
    return ", ".join(limits) or "none"


def _budget_fields(
    daily: float | None, monthly: float | None, per_dispatch: float | None
) -> dict[str, float]:
    given = {"budget_daily_usd": daily, "budget_monthly_usd": monthly, "budget_dispatch_usd": per_dispatch}
    return {k: v for k, v in given.items() if v is not None}


def _show_tenant(tenant: dict[str, Any]) -> None:
    agents = ", ".join(tenant["allowed_agents"]) if tenant["allowed_agents"] is not None else "all"
    models = (
        ", ".join(tenant["allowed_models"])
        if tenant["allowed_models"] is not None
        else "as each agent allows"
    )
    for key, value in (
        ("tenant", tenant["tenant_id"]),
        ("name", tenant["name"]),
        ("agents", agents),
        ("models", models),
        ("quota", f"{tenant['max_running']} running, {tenant['max_queued']} queued"),
        ("budgets", _budgets_text(tenant)),
        ("key", f"{tenant['api_key_prefix']}…"),
    ):
        out.print(f"{key + ':':<8}{value}", soft_wrap=True)
    if tenant.get("api_key"):
        err.print("the API key, shown once (only its hash is kept):")
        out.print(f"export OUTPOST_API_KEY={tenant['api_key']}", soft_wrap=True)


AgentsOpt = Annotated[
    str | None, typer.Option("--agents", help="comma-separated agents it may run (default: all)")
]
ModelsOpt = Annotated[
    str | None, typer.Option("--models", help="comma-separated models it may ask for (default: any allowed)")
]
DailyOpt = Annotated[float | None, typer.Option("--daily-budget", help="model spend per UTC day, in USD")]
MonthlyOpt = Annotated[
    float | None, typer.Option("--monthly-budget", help="model spend per UTC month, in USD")
]
DispatchBudgetOpt = Annotated[
    float | None, typer.Option("--dispatch-budget", help="model spend of one dispatch, in USD")
]
RunningOpt = Annotated[int | None, typer.Option("--max-running", help="dispatches running at once")]
QueuedOpt = Annotated[int | None, typer.Option("--max-queued", help="dispatches waiting at once")]


@tenants_app.command("create")
def tenants_create(
    name: str,
    url: UrlOpt = None,
    admin_key: AdminOpt = None,
    agents: AgentsOpt = None,
    models: ModelsOpt = None,
    max_running: RunningOpt = None,
    max_queued: QueuedOpt = None,
    daily_budget: DailyOpt = None,
    monthly_budget: MonthlyOpt = None,
    dispatch_budget: DispatchBudgetOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a tenant; prints its API key once."""
    body: dict[str, Any] = {"name": name, "allowed_agents": _names(agents), "allowed_models": _names(models)}
    body |= {k: v for k, v in (("max_running", max_running), ("max_queued", max_queued)) if v is not None}
    body |= _budget_fields(daily_budget, monthly_budget, dispatch_budget)
    with _client(url, admin_key, admin=True) as client:
        tenant = client.create_tenant(body)
    _json(tenant) if as_json else _show_tenant(tenant)


@tenants_app.command("list")
def tenants_list(
    url: UrlOpt = None,
    admin_key: AdminOpt = None,
    limit: Annotated[int, typer.Option(min=1, max=100)] = 50,
    cursor: Annotated[str | None, typer.Option(help="the next page, as the previous one printed it")] = None,
    as_json: JsonOpt = False,
) -> None:
    """List tenants."""
    with _client(url, admin_key, admin=True) as client:
        page = client.list_tenants(limit=limit, cursor=cursor)
    if as_json:
        _json(page)
        return
    rows = [
        [
            t["tenant_id"],
            t["name"],
            ",".join(t["allowed_agents"]) if t["allowed_agents"] is not None else "all",
            str(t["max_running"]),
            str(t["max_queued"]),
        ]
        for t in page["items"]
    ]
    _table(["TENANT", "NAME", "AGENTS", "RUNNING", "QUEUED"], rows)
    if page.get("next_cursor"):
        err.print(f"more: outpost tenants list --cursor {page['next_cursor']}", soft_wrap=True)


@tenants_app.command("show")
def tenants_show(
    tenant_id: str, url: UrlOpt = None, admin_key: AdminOpt = None, as_json: JsonOpt = False
) -> None:
    """Show a tenant."""
    with _client(url, admin_key, admin=True) as client:
        tenant = client.get_tenant(tenant_id)
    _json(tenant) if as_json else _show_tenant(tenant)


@tenants_app.command("update")
def tenants_update(
    tenant_id: str,
    url: UrlOpt = None,
    admin_key: AdminOpt = None,
    name: Annotated[str | None, typer.Option(help="a new name")] = None,
    agents: AgentsOpt = None,
    all_agents: Annotated[bool, typer.Option("--all-agents", help="allow every agent")] = False,
    models: ModelsOpt = None,
    all_models: Annotated[bool, typer.Option("--all-models", help="allow what each agent allows")] = False,
    max_running: RunningOpt = None,
    max_queued: QueuedOpt = None,
    daily_budget: DailyOpt = None,
    monthly_budget: MonthlyOpt = None,
    dispatch_budget: DispatchBudgetOpt = None,
    no_budgets: Annotated[bool, typer.Option("--no-budgets", help="remove every budget")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Change a tenant's name, allowed agents and models, quotas or budgets (only what is given)."""
    if (agents and all_agents) or (models and all_models):
        raise OutpostError("give --agents or --all-agents (--models or --all-models), not both")
    body: dict[str, Any] = {}
    for key, value in (("name", name), ("max_running", max_running), ("max_queued", max_queued)):
        if value is not None:
            body[key] = value
    if agents is not None or all_agents:
        body["allowed_agents"] = _names(agents)
    if models is not None or all_models:
        body["allowed_models"] = _names(models)
    budgets = _budget_fields(daily_budget, monthly_budget, dispatch_budget)
    if no_budgets and budgets:
        raise OutpostError("give budgets or --no-budgets, not both")
    body |= (
        dict.fromkeys(("budget_daily_usd", "budget_monthly_usd", "budget_dispatch_usd"))
        if no_budgets
        else budgets
    )
    if not body:
        raise OutpostError(
            "nothing to change: give --name, --agents, --models, --max-running, --max-queued or a budget"
        )
    with _client(url, admin_key, admin=True) as client:
        tenant = client.update_tenant(tenant_id, body)
    _json(tenant) if as_json else _show_tenant(tenant)


@tenants_app.command("rotate-key")
def tenants_rotate_key(
    tenant_id: str, url: UrlOpt = None, admin_key: AdminOpt = None, as_json: JsonOpt = False
) -> None:
    """Give a tenant a new API key (the old one stops working at once); prints it once."""
    with _client(url, admin_key, admin=True) as client:
        tenant = client.rotate_key(tenant_id)
    _json(tenant) if as_json else _show_tenant(tenant)


@app.command()
def mcp(
    url: UrlOpt = None,
    api_key: KeyOpt = None,
    http: Annotated[
        bool, typer.Option("--http", help="serve streamable HTTP (at /mcp) instead of stdio")
    ] = False,
    host: Annotated[str, typer.Option(help="with --http: the address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="with --http: the port")] = 8765,
) -> None:
    """Serve the dispatch tools to an assistant over MCP (README: "Using Outpost from an assistant")."""
    try:
        from control_plane.mcp_server import run  # the MCP SDK is imported for this command only
    except ModuleNotFoundError as missing:
        raise OutpostError(
            f"outpost mcp needs the {missing.name} package: pip install 'outpost[mcp]'"
        ) from None

    found = resolve(url=url, api_key=api_key, admin_key=None)
    raise typer.Exit(run(url=found.url, api_key=found.api_key, http=http, host=host, port=port))


def main() -> None:
    try:
        app(prog_name="outpost")
    except OutpostError as error:
        prefix = f"error {error}" if error.status else f"error: {error}"
        print(prefix, file=sys.stderr)
        raise SystemExit(1) from None
    except KeyboardInterrupt:
        raise SystemExit(130) from None


if __name__ == "__main__":
    main()
