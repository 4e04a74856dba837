"""Credentials recently authenticated by this API process, kept for a short TTL.

A request's credential is looked up by the hash of its secret; a hit skips the database
round trip. Only valid credentials are kept (an unknown or revoked one is looked up every
time). Revocation: a revoke through this process empties the cache at once, before and again
after its commit, and a lookup that began before an emptying does not store its answer; a key
revoked through another API process (or straight in the database) keeps working here for at
most `api.auth_cache_ttl_s` (docs/scale.md). `auth_cache_ttl_s = 0` turns the cache off.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from services.api.auth.principal import Principal

__all__ = ["CredentialCache"]

_MAX_ENTRIES = 10_000


@dataclass
class CredentialCache:
    """Key hash → (principal, expiry) of one process."""

    ttl_s: float
    _entries: dict[str, tuple[Principal, float]] = field(default_factory=dict)
    generation: int = 0
    """Bumped by every `clear`; a lookup stores only if it did not change meanwhile."""
    clock: Callable[[], float] = time.monotonic
    """The time the entries expire by (tests move it instead of waiting)."""

    def get(self, key_hash: str) -> Principal | None:
        """The cached principal, or None (absent or expired)."""
        found = self._entries.get(key_hash)
        if found is None:
            return None
        principal, expires = found
        if self.clock() >= expires:
            self._entries.pop(key_hash, None)
            return None
        return principal

    def put(self, key_hash: str, principal: Principal, generation: int) -> None:
        """Keep a principal looked up while the cache was at `generation`."""
        if self.ttl_s <= 0 or generation != self.generation:
            return
        if len(self._entries) >= _MAX_ENTRIES:
            self._entries.clear()
        self._entries[key_hash] = (principal, self.clock() + self.ttl_s)

    def clear(self) -> None:
        """Forget every credential (a revocation)."""
        self.generation += 1
        self._entries.clear()
