"""Stateful resources: logical ids pinned (a refactor must never replace them) and kept in prod."""

import pytest

from agents.registry import AGENTS
from stacks.stateful import STATEFUL

# stacks/stateful.py: changing one of these ids replaces the resource (a new, empty table...).
PINNED = STATEFUL
ENVS = ["dev", "staging", "prod"]


def test_pinned_ids_cover_every_agent_queue():
    for agent in AGENTS:
        assert any(i.startswith(f"DispatchQueue{agent.capitalize()}Queue") for i in PINNED["Data"]), agent


@pytest.mark.parametrize("env", ENVS)
@pytest.mark.parametrize("stack", sorted(PINNED))
def test_stateful_logical_ids_are_pinned(synth, env, stack):
    resources = synth.raw[env][stack]["Resources"]
    for logical_id, type_ in PINNED[stack].items():
        assert resources.get(logical_id, {}).get("Type") == type_, (
            f"{env}/{stack}: {logical_id} missing or changed"
        )


@pytest.mark.parametrize(("env", "policy"), [("dev", "Delete"), ("staging", "Delete"), ("prod", "Retain")])
@pytest.mark.parametrize("stack", sorted(PINNED))
def test_stateful_removal_policy_per_environment(synth, env, policy, stack):
    resources = synth.raw[env][stack]["Resources"]
    for logical_id in PINNED[stack]:
        assert resources[logical_id].get("DeletionPolicy") == policy, f"{env}/{stack}/{logical_id}"
        assert resources[logical_id].get("UpdateReplacePolicy") == policy


@pytest.mark.parametrize(("env", "protected"), [("dev", False), ("staging", False), ("prod", True)])
def test_termination_protection_only_in_prod(synth, env, protected):
    stage = synth.stages[env]
    for stack in (stage.network, stage.data, stage.registry, stage.audit):
        assert stack.termination_protection is protected
