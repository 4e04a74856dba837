"""Local mirrors of the projects' repositories, so that a task's clone is a local copy.

`refreshed(url)` answers a bare mirror of `url` under `root` (created with `git clone
--mirror` the first time), fetched just before (one fetch at a time per repository; a call
that finds a fetch begun after it was made uses that one's result); the workspace is then
cloned from it (a copy: `--no-hardlinks`), and `origin` is pointed back
at the real remote (`workspace.clone_repository`). A mirror that cannot be made or fetched
answers None and the clone goes to the remote as before (with the remote's own error).
Credentials in the URL reach git through its environment only, never argv or the mirror's
config.

Prepared clones take the clone off a create's path: after a repository's workspace is made,
`prepare_soon(url)` makes, in a background thread, the next one: a full copy of the mirror
(`--no-hardlinks`, `origin` set to the remote), kept in `root` as `<name>.prepared`. The next
create of that repository renames it into its workspace (`claim_prepared`, atomic: one create
gets it) and only fetches what was pushed since (`workspace.update_prepared_clone`). When a
task of the repository ends (its worker deleted, usually after its work was integrated),
`freshen_soon(url)` fetches that into the prepared clone in the background, so the next
create's fetch and checkout have little left to do. A
prepared clone is the manager's own until it is claimed, shares no file with the mirror or
another clone, and is handed to the agent's account like a fresh clone: an agent cannot
change what later workspaces are made from.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import threading
import time
import uuid
from pathlib import Path

import structlog

from services.worker_manager.workspace import credentials_env, process_env

__all__ = ["RepositoryMirrors"]

log = structlog.get_logger("services.worker_manager")

_TIMEOUT_S = 120
_NICE = shutil.which("nice")
_BACKGROUND = [_NICE, "-n", "10"] if _NICE else []
"""A clone prepared in the background yields the CPU to the creates on their way."""
_PARTIAL_MAX_AGE_S = 2 * _TIMEOUT_S
"""A clone being prepared that is older than this was cut off (its manager killed)."""


class RepositoryMirrors:
    """Bare mirrors of remote repositories, one directory per URL."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self._fetch_started: dict[str, float] = {}
        """Mirror → when its last successful fetch (or clone) began (monotonic)."""
        self._preparing: set[str] = set()
        """URLs (without secrets) whose next clone is being prepared right now."""
        self._prepared_locks: dict[str, threading.Lock] = {}
        """Prepared clone → held while it is freshened or claimed."""

    def path_of(self, url: str) -> Path:
        """Where the mirror of `url` lives (named by a digest of the URL without secrets)."""
        clean_url, _ = credentials_env(url)
        return self.root / f"{hashlib.sha256(clean_url.encode()).hexdigest()[:24]}.git"

    def refreshed(self, url: str) -> Path | None:
        """The mirror of `url`, brought up to date now; None when that failed (logged)."""
        asked = time.monotonic()
        clean_url, secret_env = credentials_env(url)
        mirror = self.path_of(url)
        with self._guard:
            lock = self._locks.setdefault(str(mirror), threading.Lock())
        env = {**process_env(), **secret_env, "GIT_TERMINAL_PROMPT": "0"}
        with lock:
            if self._fetch_started.get(str(mirror), -1.0) >= asked:
                # a fetch that began after this call did is as fresh as one of its own: the
                # creates of a burst share a few fetches instead of queueing for one each
                return mirror
            started = time.monotonic()
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
            self._fetch_started[str(mirror)] = started
        return mirror

    def prepared_path(self, url: str) -> Path:
        """Where the prepared clone of `url` waits for its task."""
        return self.path_of(url).with_suffix(".prepared")

    def claim_prepared(self, url: str, workspace: Path) -> bool:
        """Move the prepared clone of `url` to `workspace` (absent or an empty directory);
        False when there is none (or it cannot be moved there). Waits for a freshening of
        it in progress."""
        with self._prepared_lock(url):
            try:
                os.rename(self.prepared_path(url), workspace)
            except OSError:
                return False
        return True

    def freshen_soon(self, url: str) -> None:
        """Bring the prepared clone of `url` (when there is one) up to the remote in a
        background thread: a task of the repository ended, and what it pushed should not be
        fetched and checked out on the next create's path."""
        threading.Thread(
            target=self.freshen, args=(url,), name="freshen-clone", daemon=True
        ).start()

    def freshen(self, url: str) -> bool:
        """Fetch into the prepared clone of `url` and reset its default branch to the
        remote's; False when there is none or that failed (logged; it is then removed, and
        the next create clones as without one)."""
        clean_url, secret_env = credentials_env(url)
        target = self.prepared_path(url)
        env = {**process_env(), **secret_env, "GIT_TERMINAL_PROMPT": "0"}
        here = ["git", "-C", str(target)]
        with self._prepared_lock(url):
            if not target.is_dir():
                return False
            try:
                for argv in (
                    [*here, "fetch", "-q", "--prune", "--no-auto-maintenance", "origin"],
                    [*here, "reset", "-q", "--hard", "refs/remotes/origin/HEAD"],
                ):
                    subprocess.run(
                        [*_BACKGROUND, *argv],
                        env=env,
                        check=True,
                        capture_output=True,
                        timeout=_TIMEOUT_S,
                    )
            except (OSError, subprocess.SubprocessError) as exc:
                detail = getattr(exc, "stderr", b"") or b""
                log.warning(
                    "prepared_clone_freshen_failed",
                    url=clean_url,
                    error=detail.decode(errors="replace").strip()[-300:] or str(exc),
                )
                shutil.rmtree(target, ignore_errors=True)
                return False
        return True

    def _prepared_lock(self, url: str) -> threading.Lock:
        key = str(self.prepared_path(url))
        with self._guard:
            return self._prepared_locks.setdefault(key, threading.Lock())

    def prepare_soon(self, url: str) -> None:
        """Prepare the next clone of `url` in a background thread, unless one is ready or
        being prepared."""
        clean_url, _ = credentials_env(url)
        with self._guard:
            if clean_url in self._preparing or self.prepared_path(url).exists():
                return
            self._preparing.add(clean_url)
        thread = threading.Thread(
            target=self._prepare, args=(url, clean_url), name="prepare-clone", daemon=True
        )
        thread.start()

    def _prepare(self, url: str, clean_url: str) -> None:
        try:
            self.prepare(url)
        finally:
            with self._guard:
                self._preparing.discard(clean_url)

    def prepare(self, url: str) -> Path | None:
        """Make the prepared clone of `url` now (from its mirror, refreshed first); None when
        that failed (logged) or one is there already."""
        target = self.prepared_path(url)
        self._remove_partial(target)
        mirror = self.refreshed(url)
        if mirror is None or target.exists():
            return None
        clean_url, _ = credentials_env(url)
        partial = target.with_name(f"{target.name}-{uuid.uuid4().hex[:8]}.partial")
        env = {**process_env(), "GIT_TERMINAL_PROMPT": "0"}
        try:
            for argv in (
                ["git", "clone", "-q", "--no-hardlinks", str(mirror), str(partial)],
                ["git", "-C", str(partial), "remote", "set-url", "origin", clean_url],
            ):
                subprocess.run(
                    [*_BACKGROUND, *argv],
                    env=env,
                    check=True,
                    capture_output=True,
                    timeout=_TIMEOUT_S,
                )
            os.rename(partial, target)  # whole, or not at all
        except (OSError, subprocess.SubprocessError) as exc:
            detail = getattr(exc, "stderr", b"") or b""
            log.warning(
                "prepared_clone_failed",
                url=clean_url,
                error=detail.decode(errors="replace").strip()[-300:] or str(exc),
            )
            shutil.rmtree(partial, ignore_errors=True)
            return None
        return target

    def _remove_partial(self, target: Path) -> None:
        """Remove what a preparation cut off long ago left behind."""
        with contextlib.suppress(OSError):
            for leftover in target.parent.glob(f"{target.name}-*.partial"):
                if time.time() - leftover.stat().st_mtime > _PARTIAL_MAX_AGE_S:
                    shutil.rmtree(leftover, ignore_errors=True)
