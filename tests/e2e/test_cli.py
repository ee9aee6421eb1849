"""The `outpost` CLI as people and scripts use it, against a real `outpost dev`: one-line errors,
the live wait, pages, `--json`, the config file, verified downloads and the tenant commands."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import boto3
import pytest

from tests.e2e.helpers import Dev

OUTPOST = str(Path(sys.executable).with_name("outpost"))
EMULATOR_CREDENTIALS = {"aws_access_key_id": "x", "aws_secret_access_key": "x", "region_name": "us-east-1"}


def outpost(
    *args: str, env: dict[str, str] | None = None, **variables: str
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("OUTPOST_")}
    return subprocess.run(
        [OUTPOST, *args], env={**base, **(env or {}), **variables}, capture_output=True, text=True, timeout=90
    )


@pytest.fixture
def as_tenant(dev: Dev, tmp_path: Path) -> dict[str, str]:
    # no config file of the machine's user may leak in
    return {
        "OUTPOST_URL": dev.url,
        "OUTPOST_API_KEY": dev.api_key,
        "XDG_CONFIG_HOME": str(tmp_path),
    }


def assert_one_line_error(done: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert done.returncode != 0
    assert done.stdout == ""
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    for fragment in fragments:
        assert fragment in done.stderr


def test_dispatch_wait_shows_each_status_and_exits_by_the_final_one(dev: Dev, as_tenant) -> None:
    done = outpost("dispatch", "--wait", "echo hi > hi.txt", env=as_tenant)
    assert done.returncode == 0, done.stderr
    # not a terminal: one line per status on stderr, the summary on stdout
    last = done.stderr.splitlines()[-1].strip()
    assert last.startswith("COMPLETED  (") and "RUNNING" in last  # with the time of each phase
    summary = dict(line.split(":", 1) for line in done.stdout.splitlines())
    assert summary["status"].strip() == "COMPLETED (exit 0)"
    assert "RUNNING" in summary["phases"] and summary["artifacts"].strip() == (
        "manifest.json, patch.diff, summary.json, transcript.txt"
    )
    failed = outpost("dispatch", "--wait", "--json", "exit 3", env=as_tenant)
    assert failed.returncode == 1
    assert json.loads(failed.stdout)["status"] == "FAILED"
    slow = outpost("dispatch", "--wait", "--wait-timeout", "0.5", "sleep 30", env=as_tenant)
    assert slow.returncode == 4 and "it goes on: outpost status d-" in slow.stderr
    dispatch_id = slow.stderr.split("outpost status ")[-1].strip()
    assert outpost("cancel", dispatch_id, env=as_tenant).returncode == 0


def test_bad_input_and_unreachable_servers_are_one_line_errors(dev: Dev, as_tenant) -> None:
    before = json.loads(outpost("list", "--json", "--limit", "100", env=as_tenant).stdout)["items"]
    assert_one_line_error(outpost("dispatch", "  \n ", env=as_tenant), "error 422", "the task is blank")
    assert_one_line_error(
        outpost("dispatch", "--agent", "nope", "x", env=as_tenant), "error 422", "unknown agent"
    )
    assert json.loads(outpost("list", "--json", "--limit", "100", env=as_tenant).stdout)["items"] == before
    assert_one_line_error(
        outpost("list", "--agent", "nope", env=as_tenant), "error 400", "unknown agent 'nope'; known: claude"
    )
    assert_one_line_error(outpost("status", "d-doesnotexist", env=as_tenant), "error 404")
    no_scheme = {**as_tenant, "OUTPOST_URL": "127.0.0.1:9"}
    assert_one_line_error(outpost("list", env=no_scheme), "must start with http:// or https://")
    closed = {**as_tenant, "OUTPOST_URL": "http://127.0.0.1:9"}
    assert_one_line_error(outpost("list", env=closed), "cannot reach the control plane at http://127.0.0.1:9")
    wrong_key = {**as_tenant, "OUTPOST_API_KEY": "op_wrong"}
    assert_one_line_error(outpost("list", env=wrong_key), "error 401")


def test_list_has_a_header_and_says_how_to_get_the_next_page(dev: Dev, as_tenant) -> None:
    for task in ("echo one", "echo two"):
        assert outpost("dispatch", task, env=as_tenant).returncode == 0
    first = outpost("list", "--limit", "1", env=as_tenant)
    assert first.returncode == 0, first.stderr
    header, row = first.stdout.splitlines()
    assert header.split() == ["DISPATCH", "STATUS", "AGENT", "CREATED", "USAGE"]
    assert first.stderr.startswith("more: outpost list --cursor ")
    cursor = first.stderr.split("--cursor ")[1].strip()
    second = outpost("list", "--limit", "1", "--cursor", cursor, env=as_tenant)
    assert second.returncode == 0, second.stderr
    assert second.stdout.splitlines()[1].split()[0] != row.split()[0]  # the next dispatch, not the same


def test_a_config_file_is_read_and_a_readable_one_with_a_key_is_refused(dev: Dev, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f'url = "{dev.url}"\napi_key = "{dev.api_key}"\n')
    config.chmod(0o600)
    done = outpost("list", "--json", OUTPOST_CONFIG=str(config))
    assert done.returncode == 0, done.stderr
    assert "items" in json.loads(done.stdout)
    # the environment wins over the file
    assert_one_line_error(
        outpost("list", OUTPOST_CONFIG=str(config), OUTPOST_API_KEY="op_wrong"), "error 401"
    )
    config.chmod(0o644)
    assert_one_line_error(outpost("list", OUTPOST_CONFIG=str(config)), f"chmod 600 {config}")


def _emulator(dev: Dev) -> str:
    """The control plane's emulator endpoint, from its own environment."""
    environ = Path(f"/proc/{dev.control_plane_pid()}/environ").read_bytes().split(b"\0")
    return next(v.split(b"=", 1)[1].decode() for v in environ if v.startswith(b"OUTPOST_AWS_ENDPOINT_URL="))


def test_a_download_is_checked_against_the_manifest(dev: Dev, as_tenant, tmp_path: Path) -> None:
    record = json.loads(outpost("dispatch", "--wait", "--json", "echo data > f.txt", env=as_tenant).stdout)
    dispatch_id = record["dispatch_id"]
    good = outpost("artifacts", "download", dispatch_id, str(tmp_path / "good"), env=as_tenant)
    assert good.returncode == 0, good.stderr
    assert "+data" in (tmp_path / "good" / "patch.diff").read_text()
    # the stored patch changes after the manifest was written (corruption, tampering)
    s3 = boto3.client("s3", endpoint_url=_emulator(dev), **EMULATOR_CREDENTIALS)
    bucket = next(b["Name"] for b in s3.list_buckets()["Buckets"] if b["Name"].endswith("artifacts"))
    key = next(
        o["Key"]
        for o in s3.list_objects_v2(Bucket=bucket)["Contents"]
        if dispatch_id in o["Key"] and o["Key"].endswith("patch.diff")
    )
    s3.put_object(Bucket=bucket, Key=key, Body=b"+evil\n")
    bad = outpost("artifacts", "download", dispatch_id, str(tmp_path / "bad"), env=as_tenant)
    assert_one_line_error(bad, "patch.diff does not match the manifest")
    assert not (tmp_path / "bad").exists()  # nothing written, not even the files that matched


def test_a_cancelled_dispatch_shows_the_same_artifacts_everywhere(dev: Dev, as_tenant) -> None:
    created = json.loads(outpost("dispatch", "--json", "echo started; sleep 60", env=as_tenant).stdout)
    dispatch_id = created["dispatch_id"]
    dev.wait_status(dispatch_id, {"RUNNING"})
    assert outpost("cancel", dispatch_id, env=as_tenant).returncode == 0
    record = dev.wait_status(dispatch_id, {"CANCELLED"})
    listed = json.loads(outpost("artifacts", "list", dispatch_id, "--json", env=as_tenant).stdout)
    assert sorted(item["name"] for item in listed) == sorted(record["artifacts"])
    logs = outpost("logs", dispatch_id, env=as_tenant).stdout
    assert "FAILED" not in logs and "COMPLETED" not in logs


def test_an_admin_manages_tenants_and_their_keys(dev: Dev, tmp_path: Path) -> None:
    admin = {
        "OUTPOST_URL": dev.url,
        "OUTPOST_ADMIN_KEY": dev.admin_key,
        "XDG_CONFIG_HOME": str(tmp_path),
    }
    created = outpost(
        "tenants",
        "create",
        "team-cli",
        "--agents",
        "shell",
        "--max-running",
        "2",
        "--max-queued",
        "5",
        "--daily-budget",
        "5",
        "--dispatch-budget",
        "0.5",
        env=admin,
    )
    assert created.returncode == 0, created.stderr
    export = next(line for line in created.stdout.splitlines() if line.startswith("export OUTPOST_API_KEY="))
    key = export.split("=", 1)[1]
    fields = dict(
        line.split(":", 1) for line in created.stdout.splitlines() if ":" in line and "export" not in line
    )
    tenant_id = fields["tenant"].strip()
    assert fields["agents"].strip() == "shell" and fields["quota"].strip() == "2 running, 5 queued"
    assert fields["budgets"].strip() == "$5 a day, $0.5 a dispatch"
    as_new = {"OUTPOST_URL": dev.url, "OUTPOST_API_KEY": key, "XDG_CONFIG_HOME": str(tmp_path)}
    assert outpost("dispatch", "--wait", "true", env=as_new).returncode == 0
    assert_one_line_error(
        outpost("dispatch", "--agent", "claude", "x", env=as_new), "error 422", "not allowed"
    )
    # a tenant key is not the admin key
    assert_one_line_error(outpost("tenants", "list", env={**admin, "OUTPOST_ADMIN_KEY": key}), "error 40")
    updated = outpost(
        "tenants",
        "update",
        tenant_id,
        "--all-agents",
        "--max-running",
        "3",
        "--no-budgets",
        "--json",
        env=admin,
    )
    assert updated.returncode == 0, updated.stderr
    changed = json.loads(updated.stdout)
    assert (changed["allowed_agents"], changed["max_running"], changed["budget_daily_usd"]) == (None, 3, None)
    listing = outpost("tenants", "list", env=admin).stdout.splitlines()
    assert listing[0].split() == ["TENANT", "NAME", "AGENTS", "RUNNING", "QUEUED"]
    assert any(line.split()[:2] == [tenant_id, "team-cli"] for line in listing[1:])
    rotated = outpost("tenants", "rotate-key", tenant_id, "--json", env=admin)
    new_key = json.loads(rotated.stdout)["api_key"]
    assert_one_line_error(outpost("list", env=as_new), "error 401")
    assert outpost("list", env={**as_new, "OUTPOST_API_KEY": new_key}).returncode == 0
    assert_one_line_error(outpost("tenants", "update", tenant_id, env=admin), "nothing to change")
