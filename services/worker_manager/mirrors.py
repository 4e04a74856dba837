"""Local mirrors of the projects' repositories, so that a task's clone is a local copy.

`refreshed(url)` answers a bare mirror of `url` under `root` (created with `git clone
--mirror` the first time), fetched just before (one fetch at a time per repository); the
workspace is then cloned from it, which hardlinks its objects, and `origin` is pointed back
at the real remote (`workspace.clone_repository`). A mirror that cannot be made or fetched
answers None and the clone goes to the remote as before (with the remote's own error).
Credentials in the URL reach git through its environment only, never argv or the mirror's
config.
"""

from __future__ import annotations

import hashlib
import subprocess
import threading
from pathlib import Path

import structlog

from services.worker_manager.workspace import credentials_env, process_env

__all__ = ["RepositoryMirrors"]

log = structlog.get_logger("services.worker_manager")

_TIMEOUT_S = 120


class RepositoryMirrors:
    """Bare mirrors of remote repositories, one directory per URL."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def path_of(self, url: str) -> Path:
        """Where the mirror of `url` lives (named by a digest of the URL without secrets)."""
        clean_url, _ = credentials_env(url)
        return self.root / f"{hashlib.sha256(clean_url.encode()).hexdigest()[:24]}.git"

    def refreshed(self, url: str) -> Path | None:
        """The mirror of `url`, brought up to date now; None when that failed (logged)."""
        clean_url, secret_env = credentials_env(url)
        mirror = self.path_of(url)
        with self._guard:
            lock = self._locks.setdefault(str(mirror), threading.Lock())
        env = {**process_env(), **secret_env, "GIT_TERMINAL_PROMPT": "0"}
        with lock:
            try:
                if (mirror / "HEAD").exists():
                    argv = ["git", "-C", str(mirror), "fetch", "-q", "--prune", "origin"]
                else:
                    self.root.mkdir(parents=True, exist_ok=True)
                    argv = ["git", "clone", "-q", "--mirror", clean_url, str(mirror)]
                subprocess.run(argv, env=env, check=True, capture_output=True, timeout=_TIMEOUT_S)
            except (OSError, subprocess.SubprocessError) as exc:
                detail = getattr(exc, "stderr", b"") or b""
                log.warning(
                    "mirror_refresh_failed",
                    url=clean_url,
                    error=detail.decode(errors="replace").strip()[-300:] or str(exc),
                )
                return None
        return mirror
