"""Exponential backoff with full jitter, for reconnects and retries."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

__all__ = ["Backoff", "retry_delay_s"]


def retry_delay_s(attempt: int, *, base_s: float, max_s: float) -> float:
    """Delay before delivery attempt `attempt + 1`: base·2^(attempt-1), capped, ±50% jitter."""
    ceiling: float = min(max_s, base_s * 2.0 ** max(attempt - 1, 0))
    return ceiling * (0.5 + random.random() / 2)  # noqa: S311 - jitter, not cryptography


@dataclass
class Backoff:
    """Growing delays between attempts of one operation; `reset()` after a success."""

    base_s: float = 0.05
    max_s: float = 5.0
    failures: int = field(default=0, init=False)

    def next_delay_s(self) -> float:
        """The delay before the next attempt (full jitter in [ceiling/2, ceiling])."""
        self.failures += 1
        return retry_delay_s(self.failures, base_s=self.base_s, max_s=self.max_s)

    def reset(self) -> None:
        """Forget the failures (call after a success)."""
        self.failures = 0
