"""The dated price table (agents/prices.toml) and the cost it gives a run's token counts.

Used by the control plane when an agent's CLI reports tokens but no cost. Importable without
aws-cdk-lib, like the registry.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from functools import cache
from pathlib import Path
from types import MappingProxyType

TABLE = Path(__file__).with_name("prices.toml")
PER = 1_000_000  # the table's prices are per million tokens
# "openai/gpt-4o" (aider's provider prefix) and "claude-sonnet-4-5-20250929" (a dated
# snapshot) are priced as the model they name.
_PROVIDER_PREFIX = re.compile(r"^[a-z0-9_-]+/")
_DATED_SUFFIX = re.compile(r"-\d{8}$")


@dataclass(frozen=True)
class Price:
    input: float
    cached_input: float
    output: float
    source: str
    as_of: date
    cache_write_input: float | None = None  # a prompt-cache write, where it costs more than input

    def cost_usd(
        self,
        *,
        input_tokens: int,
        cached_input_tokens: int,
        output_tokens: int,
        cache_write_input_tokens: int = 0,
    ) -> float:
        """``input_tokens`` counts every prompt token, cached ones and cache writes included
        (AgentOutput's rule). Only the model gateway knows the cache writes of a run."""
        cached = min(cached_input_tokens, input_tokens)
        written = min(cache_write_input_tokens, input_tokens - cached)
        write_price = self.input if self.cache_write_input is None else self.cache_write_input
        dollars = (
            (input_tokens - cached - written) * self.input
            + cached * self.cached_input
            + written * write_price
            + output_tokens * self.output
        ) / PER
        return round(dollars, 6)


@dataclass(frozen=True)
class PriceTable:
    as_of: date
    models: Mapping[str, Price]

    def price(self, model: str | None) -> Price | None:
        if not model:
            return None
        name = model.strip().lower()
        for candidate in (name, _PROVIDER_PREFIX.sub("", name)):
            for form in (candidate, _DATED_SUFFIX.sub("", candidate)):
                if form in self.models:
                    return self.models[form]
        return None


def parse(text: str) -> PriceTable:
    """The table in ``text``; ValueError naming the entry that is wrong."""
    data = tomllib.loads(text)
    models: dict[str, Price] = {}
    for name, entry in data.get("models", {}).items():
        try:
            price = Price(
                input=float(entry["input"]),
                cached_input=float(entry["cached_input"]),
                output=float(entry["output"]),
                source=str(entry["source"]),
                as_of=date.fromisoformat(str(entry["as_of"])),
                cache_write_input=float(entry["cache_write_input"]) if "cache_write_input" in entry else None,
            )
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"price table: model {name!r}: {error}") from None
        if min(price.input, price.cached_input, price.output, price.cache_write_input or 0) < 0 or not (
            price.source.startswith("https://")
        ):
            raise ValueError(f"price table: model {name!r}: negative price or no https source")
        if name != name.lower():
            raise ValueError(f"price table: model {name!r}: names are lower case")
        models[name] = price
    as_of = date.fromisoformat(str(data["as_of"]))
    if models and as_of != max(p.as_of for p in models.values()):
        raise ValueError("price table: `as_of` must be the newest entry's date")
    return PriceTable(as_of=as_of, models=MappingProxyType(models))


@cache
def table() -> PriceTable:
    return parse(TABLE.read_text())
