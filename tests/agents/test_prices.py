"""agents/prices.toml and agents/prices.py: the dated table and the cost it computes."""

from __future__ import annotations

from datetime import date

import pytest

from agents.prices import TABLE, parse, table


def test_the_table_is_dated_and_every_price_names_its_source() -> None:
    prices = table()
    assert prices.models, "the table prices no model"
    assert prices.as_of == max(p.as_of for p in prices.models.values())
    assert prices.as_of <= date.today()
    for name, price in prices.models.items():
        assert price.source.startswith("https://"), name
        assert 0 <= price.cached_input <= price.input, name  # a cache hit never costs more


def test_cost_counts_cached_prompt_tokens_at_the_cache_price() -> None:
    gpt5 = table().price("gpt-5")
    assert gpt5 is not None and (gpt5.input, gpt5.cached_input, gpt5.output) == (1.25, 0.125, 10.0)
    # 1M prompt tokens of which 200k cached, 100k output: 0.8 * 1.25 + 0.2 * 0.125 + 0.1 * 10
    assert gpt5.cost_usd(input_tokens=1_000_000, cached_input_tokens=200_000, output_tokens=100_000) == 2.025


def test_prompt_cache_writes_cost_their_own_price_where_the_table_has_one() -> None:
    sonnet, gpt5 = table().price("claude-sonnet-4-5"), table().price("gpt-5")
    assert sonnet is not None and gpt5 is not None and gpt5.cache_write_input is None
    # 180 fresh + 1200 written + 2500 read in, 100 out: what Claude Code computes for such a run
    assert sonnet.cost_usd(
        input_tokens=3880, cached_input_tokens=2500, output_tokens=100, cache_write_input_tokens=1200
    ) == round((180 * 3 + 1200 * 3.75 + 2500 * 0.30 + 100 * 15) / 1e6, 6)
    # without a write price, writes cost what input costs
    assert gpt5.cost_usd(
        input_tokens=1000, cached_input_tokens=0, output_tokens=0, cache_write_input_tokens=400
    ) == gpt5.cost_usd(input_tokens=1000, cached_input_tokens=0, output_tokens=0)


def test_a_provider_prefix_or_a_dated_snapshot_is_priced_as_its_model() -> None:
    prices = table()
    assert prices.price("openai/gpt-4o") is prices.price("gpt-4o") is not None
    assert prices.price("claude-sonnet-4-5-20250929") is prices.price("claude-sonnet-4-5") is not None
    assert prices.price("GPT-5") is prices.price("gpt-5")
    assert prices.price("no-such-model") is None and prices.price(None) is None


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ('input = -1\ncached_input = 0\noutput = 1\nsource = "https://x"\nas_of = "2026-01-01"', "negative"),
        ('input = 1\ncached_input = 0\noutput = 1\nsource = "http://x"\nas_of = "2026-01-01"', "https"),
        ('input = 1\ncached_input = 0\noutput = 1\nsource = "https://x"', "as_of"),
        (
            'input = "a"\ncached_input = 0\noutput = 1\nsource = "https://x"\nas_of = "2026-01-01"',
            "could not",
        ),
    ],
)
def test_a_bad_entry_is_refused_with_its_name(entry: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem) as refused:
        parse(f'as_of = "2026-01-01"\n[models."m-1"]\n{entry}\n')
    assert "m-1" in str(refused.value)


def test_the_table_date_is_its_newest_entry() -> None:
    text = TABLE.read_text().replace('as_of = "2026-11-05"\n', 'as_of = "2020-01-01"\n', 1)
    with pytest.raises(ValueError, match="newest"):
        parse(text)
