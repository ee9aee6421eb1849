"""The agent registry refuses bad entries with one line naming the agent and the field."""

import subprocess
import sys
from pathlib import Path

import pytest

from agents.registry import AGENTS, Agent, RegistryError, build_registry

ROOT = Path(__file__).resolve().parents[2]


def test_registry_has_the_six_agents():
    assert sorted(AGENTS) == ["aider", "claude", "codex", "gemini", "grok", "shell"]
    assert AGENTS["shell"].secret is None and AGENTS["claude"].secret == "anthropic"


@pytest.mark.parametrize(
    ("changes", "field", "problem"),
    [
        ({"secret": "mistral"}, "secret", "unknown secret 'mistral'"),
        ({"cpu": 300}, "cpu", "300 is not a Fargate CPU size"),
        ({"cpu": 256, "memory": 4096}, "memory", "4096 MiB is not offered by Fargate with cpu 256"),
        ({"architecture": "ARM64", "spot": True}, "spot", "Fargate Spot is not offered for ARM64"),
        ({"architecture": "RISCV"}, "architecture", "'RISCV' is not one of"),
        ({"warm_pool": {"qa": 1}}, "warm_pool", "unknown environment 'qa'"),
        ({"default_timeout_s": 9000}, "default_timeout_s", "at most max_timeout_s"),
        ({"egress": ("https://pypi.org",)}, "egress", "'https://pypi.org': not a host name"),
    ],
)
def test_build_registry_rejects_bad_entry(changes, field, problem):
    entry = Agent(
        **{"name": "newbie", "image": "base", "command": ("newbie",), "secret": "openai", **changes}
    )
    with pytest.raises(RegistryError) as error:
        build_registry([entry])
    message = str(error.value)
    assert message.startswith(f"agent registry: agent 'newbie', field '{field}': ")
    assert problem in message and "\n" not in message


def test_build_registry_rejects_duplicate_name():
    entry = Agent(name="twin", image="base", command=("sh",), secret=None)
    with pytest.raises(RegistryError, match="agent 'twin', field 'name': duplicate agent name"):
        build_registry([entry, entry])


def test_synth_stops_with_one_line_on_bad_registry_entry():
    # app.py reports every setting error raised during synth as one line, wherever it comes from.
    script = (
        "import app; from agents.registry import Agent, build_registry; "
        "build_registry([Agent(name='big', image='base', command=('sh',), secret=None, cpu=1024, memory=512)])"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.strip() and "!!" not in line]
    assert lines == [
        "error: agent registry: agent 'big', field 'memory': 512 MiB is not offered by Fargate with cpu 1024"
    ]


def test_build_registry_rejects_task_storage_fargate_does_not_offer():
    entry = Agent(name="hoarder", image="base", command=("sh",), secret=None, storage_gib=500)
    with pytest.raises(RegistryError, match="agent 'hoarder', field 'storage_gib': 500 is outside"):
        build_registry([entry])
