"""What an agent's tokens cost (a price table kept as data, `prices.json`) and the cap a
worker's spending must stay under.

The cost of a usage record is computed from its token counts (input, output, cache reads and
writes, as Anthropic's and OpenAI's usage objects name them) at the price of the model's
longest matching name prefix; an unknown model gets the table's default, priced high so a cap
still holds.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["PRICES_FILE", "Budget", "Price", "PriceTable"]

PRICES_FILE = Path(__file__).with_name("prices.json")
_MTOK = 1_000_000


@dataclass(frozen=True)
class Price:
    """USD per million tokens."""

    input: float
    output: float
    cache_read: float = 0.0
    cache_write: float = 0.0


def _count(usage: Mapping[str, Any], *names: str) -> float:
    return float(sum(usage.get(name) or 0 for name in names if isinstance(usage.get(name), int)))


class PriceTable:
    """Prices by model-name prefix."""

    def __init__(self, models: Mapping[str, Price], default: Price) -> None:
        self.models = dict(models)
        self.default = default

    @classmethod
    def load(cls, path: Path = PRICES_FILE) -> PriceTable:
        """The table of a JSON file (`default`, `models`: prefix → price)."""
        data = json.loads(path.read_text(encoding="utf-8"))
        models = {prefix: Price(**fields) for prefix, fields in data["models"].items()}
        return cls(models, Price(**data["default"]))

    def price(self, model: str | None) -> Price:
        """The price of `model` (its longest matching prefix, else the default)."""
        matches = [prefix for prefix in self.models if model and model.startswith(prefix)]
        return self.models[max(matches, key=len)] if matches else self.default

    def cost(self, model: str | None, usage: Mapping[str, Any]) -> float:
        """USD of one usage record. OpenAI's `input_tokens` include the cached ones;
        Anthropic's do not (cache reads and writes are counted apart)."""
        price = self.price(model)
        cached = _count(usage, "cached_input_tokens")
        fresh = _count(usage, "input_tokens") - cached
        reads = _count(usage, "cache_read_input_tokens") + cached
        writes = _count(usage, "cache_creation_input_tokens")
        output = _count(usage, "output_tokens")
        total = (
            fresh * price.input
            + output * price.output
            + reads * price.cache_read
            + writes * price.cache_write
        )
        return total / _MTOK


@dataclass
class Budget:
    """A cap in USD on what an agent spends, and what it spent before this run."""

    cap_usd: float
    spent_usd: float = 0.0
    what: str = "task"

    def exceeded(self, run_usd: float) -> str | None:
        """`<what> <spent>/<cap>` once this run's spending reaches the cap, else None."""
        total = self.spent_usd + run_usd
        if total < self.cap_usd:
            return None
        return f"{self.what} {total:.4f}/{self.cap_usd:.4f} USD"
