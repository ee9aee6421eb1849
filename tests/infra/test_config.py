"""Configuration: every environment is typed and checked; bad values stop synth in one line."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from stacks.config import CONTEXT_KEY, ConfigError, load_environments

ROOT = Path(__file__).resolve().parents[2]


def cdk_context() -> dict:
    return json.loads((ROOT / "cdk.json").read_text())["context"]


def raw_environments() -> dict:
    return json.loads(json.dumps(cdk_context()[CONTEXT_KEY]))


def test_load_environments_all_by_default():
    configs = load_environments(raw_environments())
    assert [c.name for c in configs] == ["dev", "staging", "prod"]
    prod = configs[2]
    assert prod.retain_data and prod.immutable_tags and prod.customer_managed_table_key
    assert prod.nat_gateways == 2 and configs[0].nat_gateways == 1
    with pytest.raises(AttributeError):
        prod.nat_gateways = 1  # frozen


def test_load_environments_narrows_to_one():
    assert [c.name for c in load_environments(raw_environments(), selected="prod")] == ["prod"]


def test_load_environments_dev_falls_back_to_cli_account_only():
    configs = load_environments(
        raw_environments(), default_account="123456789012", default_region="eu-west-1"
    )
    dev, staging, prod = configs
    assert dev.account == "123456789012"
    assert staging.account == "222222222222" and prod.account == "333333333333"


@pytest.mark.parametrize(
    ("env", "field", "value", "message"),
    [
        ("prod", "nat_gateways", -1, "field 'nat_gateways' = -1"),
        ("dev", "log_retention_days", 45, "field 'log_retention_days' = 45"),
        ("staging", "account", "12345", "field 'account' = '12345'"),
        ("prod", "agents", ["claude", "nope"], "unknown agents ['nope']"),
        ("prod", "retain_data", "yes", "field 'retain_data' = 'yes'"),
        ("dev", "ingress_cidrs", ["10.0.0.0/33"], "field 'ingress_cidrs'"),
        ("dev", "control_plane_memory", 999, "field 'control_plane_memory' = 999"),
        ("dev", "colour", "blue", "field 'colour' = 'blue': unknown setting"),
        ("dev", "egress_allowlist", ["https://github.com"], "'https://github.com': not a host name"),
        ("staging", "egress_allowlist", ["*.com"], "'*.com': too broad"),
        ("prod", "egress_allowlist", ["10.0.0.1"], "an address, not a host name"),
        ("dev", "egress_allowlist", "github.com", "field 'egress_allowlist' = 'github.com': must be a list"),
        ("dev", "egress_allowlist", ["pypi.org", "pypi.org"], "lists a host twice"),
        (
            "staging",
            "interface_endpoints",
            False,
            "field 'egress_proxy' = True: needs interface_endpoints: true",
        ),
        ("prod", "region", "ap-south-2", "set s3_prefix_list to ap-south-2's S3 prefix list id"),
        ("prod", "s3_prefix_list", "sg-0123abcd", "a prefix list id (pl-...)"),
    ],
)
def test_load_environments_rejects_bad_value(env, field, value, message):
    raw = raw_environments()
    raw[env][field] = value
    with pytest.raises(ConfigError, match=f"environment '{env}'") as error:
        load_environments(raw)
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_load_environments_rejects_unknown_environment():
    with pytest.raises(ConfigError, match="unknown environment"):
        load_environments(raw_environments(), selected="qa")


def run_app(context: dict) -> subprocess.CompletedProcess:
    """Runs app.py the way the CDK CLI does (context in CDK_CONTEXT_JSON)."""
    env = dict(
        os.environ, CDK_CONTEXT_JSON=json.dumps(context), CDK_OUTDIR=str(ROOT / "cdk.out" / "bad-input")
    )
    return subprocess.run(
        [sys.executable, "app.py"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def test_synth_stops_with_one_line_on_negative_nat_count():
    context = cdk_context()
    context[CONTEXT_KEY]["prod"]["nat_gateways"] = -1
    result = run_app(context)
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.strip() and "!!" not in line]
    assert lines == [
        "error: config: environment 'prod', field 'nat_gateways' = -1: must be between 1 and 2 (one per availability zone)"
    ]


def test_synth_stops_with_one_line_on_unknown_environment_through_the_cli():
    cdk = ROOT / "node_modules" / ".bin" / "cdk"
    result = subprocess.run(
        [str(cdk), "synth", "--quiet", "-c", "env=qa", "-o", str(ROOT / "cdk.out" / "bad-input")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode != 0
    assert "error: config: environment 'qa', field 'env' = 'qa': unknown environment" in result.stderr
    assert "Traceback" not in result.stderr and "jsii" not in result.stderr.lower()


def test_load_environments_takes_image_tag_from_context():
    configs = load_environments(raw_environments(), image_tag="0123456789ab")
    assert {c.image_tag for c in configs} == {"0123456789ab"}
    with pytest.raises(ConfigError, match="field 'image_tag'"):
        load_environments(raw_environments(), image_tag="bad tag!")


def test_a_region_outside_the_table_takes_the_operators_s3_prefix_list():
    raw = raw_environments()
    raw["prod"].update(region="ap-south-2", s3_prefix_list="pl-0a1b2c3d4e5f60718")
    (prod,) = load_environments(raw, selected="prod")
    assert prod.s3_prefix_list == "pl-0a1b2c3d4e5f60718"
