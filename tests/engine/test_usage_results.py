"""The runner's result report puts the run's tokens and cost on the dispatch, with their source.

One world for the three cases: building it is most of the test's time.
"""

from __future__ import annotations

from tests.engine.conftest import World
from tests.engine.test_claims import _api, _job, _post


def _report(world: World, summary: dict) -> dict:
    job, _ = _job(world)
    reply = _post(world, job, "result", {"outcome": "COMPLETED", "exit_code": 0, "summary": summary})
    assert reply.status_code == 200, reply.text
    shown: dict = _api(world, f"/dispatch/{job['dispatch_id']}").json()
    return shown


def test_the_result_records_tokens_and_the_cost_with_its_source(world: World) -> None:
    tokens = {"input": 400_000, "cached_input": 100_000, "output": 20_000}
    # no cost reported: priced by the model the run used, 300k fresh * 1.25 + 100k cached *
    # 0.125 + 20k output * 10, per million (agents/prices.toml, gpt-5)
    priced = _report(world, {"model": "gpt-5", "tokens": tokens, "cost_usd": None})
    assert (priced["cost_usd"], priced["cost_source"]) == (0.5875, "price-table")
    assert priced["tokens"] == {"input": 400_000, "cached": 100_000, "output": 20_000}
    # a cost the agent reported stays the agent's
    reported = _report(world, {"model": "gpt-5", "tokens": tokens, "cost_usd": 0.0421})
    assert (reported["cost_usd"], reported["cost_source"]) == (0.0421, "agent")
    # a model Outpost does not know (the CLI's own default): tokens, no cost
    unknown = _report(world, {"tokens": tokens, "cost_usd": None})
    assert unknown["tokens"] == priced["tokens"]
    assert (unknown["cost_usd"], unknown["cost_source"]) == (None, None)
