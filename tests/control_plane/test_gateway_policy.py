"""Which models the gateway lets a call name (control_plane/gateway/policy.py)."""

from __future__ import annotations

from agents.agent_settings import AgentSettings
from control_plane.gateway.policy import model_refusal, same_model
from control_plane.store import TenantRecord

LISTED = AgentSettings(default_model="claude-sonnet-4-5", allowed_models=("claude-opus-4-1",))
UNPINNED = AgentSettings(allowed_models=("claude-opus-4-1",))  # no default: the CLI's own
TENANT = TenantRecord(
    tenant_id="t-1", name="narrow", api_key_hash="", api_key_prefix="", max_running=1, max_queued=1,
    allowed_models=["claude-sonnet-4-5"],
)  # fmt: skip


def refusal(
    model: str, settings: AgentSettings, *, tenant: TenantRecord | None = None, pinned: str | None = None
):
    return model_refusal(model, agent="claude", settings=settings, tenant=tenant, dispatch_model=pinned)


def test_a_pinned_run_calls_only_the_agents_models() -> None:
    assert refusal("claude-sonnet-4-5", LISTED) is None
    assert refusal("claude-opus-4-1", LISTED) is None
    assert refusal("claude-haiku-4-5", LISTED) == (
        "model claude-haiku-4-5 is not allowed for agent claude; it allows claude-sonnet-4-5, claude-opus-4-1"
    )
    # a dispatch that named its model pins the run too
    assert refusal("claude-haiku-4-5", UNPINNED, pinned="claude-opus-4-1") is not None


def test_the_clis_own_default_is_not_held_to_the_agents_list_but_to_the_tenants() -> None:
    assert refusal("claude-opus-5-5", UNPINNED) is None
    assert (
        refusal("claude-opus-5-5", UNPINNED, tenant=TENANT)
        == "model claude-opus-5-5 is not allowed for this tenant"
    )
    assert (
        refusal("claude-opus-4-1", LISTED, tenant=TENANT)
        == "model claude-opus-4-1 is not allowed for this tenant"
    )


def test_names_match_without_case_provider_prefix_or_dated_snapshot() -> None:
    assert same_model("gpt-4o", "openai/gpt-4o")
    assert same_model("claude-sonnet-4-5-20250929", "claude-sonnet-4-5")
    assert same_model("models/gemini-2.5-pro", "gemini-2.5-pro")
    assert same_model("GPT-5", "gpt-5")
    assert not same_model("gpt-4o-mini", "gpt-4o")
    assert not same_model("claude-sonnet-4-5", "claude-sonnet-4")
