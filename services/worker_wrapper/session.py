"""Session continuity: which agent session the next prompt resumes.

The state is one JSON file in the worker's session directory (which outlives the worker
when the create command asked for a session volume). A session unused for longer than the
TTL, a session of another adapter, or a prompt that starts with `/new` starts fresh.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

__all__ = ["FRESH_PREFIX", "SessionStore", "split_fresh"]

FRESH_PREFIX = "/new"
"""A prompt starting with this word starts a fresh agent session (the word is removed)."""


def split_fresh(prompt: str) -> tuple[str, bool]:
    """The prompt without a leading `/new`, and whether it asked for a fresh session."""
    stripped = prompt.lstrip()
    if (
        stripped == FRESH_PREFIX
        or stripped.startswith(FRESH_PREFIX + " ")
        or stripped.startswith(FRESH_PREFIX + "\n")
    ):
        return stripped[len(FRESH_PREFIX) :].lstrip(), True
    return prompt, False


class SessionStore:
    """The agent session of a worker, in `<session_dir>/session.json`."""

    def __init__(self, session_dir: Path, *, adapter: str, ttl_s: float) -> None:
        self.path = session_dir / "session.json"
        self.adapter = adapter
        self.ttl_s = ttl_s

    def current(self) -> str | None:
        """The session to resume, or None when there is none or it expired."""
        try:
            state = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(state, dict) or state.get("adapter") != self.adapter:
            return None
        session_id = state.get("session_id")
        last_used = state.get("last_used_at")
        if not isinstance(session_id, str) or not isinstance(last_used, int | float):
            return None
        if time.time() - last_used > self.ttl_s:
            return None
        return session_id

    def save(self, session_id: str) -> None:
        """Remember the session the agent just used."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        state = {"adapter": self.adapter, "session_id": session_id, "last_used_at": time.time()}
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state), encoding="utf-8")
        tmp.replace(self.path)

    def clear(self) -> None:
        """Forget the session (the next prompt starts fresh)."""
        self.path.unlink(missing_ok=True)
