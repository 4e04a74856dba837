"""A worker's files: workspace, profile instructions, session directory, environment."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from services.worker_manager.errors import InvalidWorkerConfigError, WorkerStartError

__all__ = [
    "INSTRUCTION_FILES",
    "allowlisted_env",
    "clone_repository",
    "credentials_env",
    "remove_tree",
    "write_instructions",
]

INSTRUCTION_FILES = {"claude-code": "CLAUDE.md"}
"""Where each adapter's agent reads its instructions; every other adapter reads AGENTS.md."""
_DEFAULT_INSTRUCTIONS = {
    "developer": (
        "You are a developer agent working in this repository. Make the change you are asked "
        "for, run the tests, commit with a clear message and push the branch."
    ),
    "po": (
        "You are the Product Owner agent. Talk with the user, turn their wishes into projects "
        "and tasks through the orchestrator's API, and report progress."
    ),
}
_CLONE_TIMEOUT_S = 120


def allowlisted_env(
    source: Mapping[str, str], allowlist: list[str], extra: Mapping[str, str]
) -> dict[str, str]:
    """The variables of `source` named in `allowlist`, then `extra` (the config's env_vars)."""
    env = {name: source[name] for name in allowlist if name in source}
    for name, value in extra.items():
        if not name or "=" in name or "\0" in name or "\0" in value:
            raise InvalidWorkerConfigError(f"invalid environment variable name {name!r}")
        env[name] = value
    return env


def write_instructions(
    workspace: Path, adapter: str, profile: str, instructions: str | None, capabilities: list[str]
) -> Path:
    """Write the profile's instructions where the agent reads them; keep them out of git."""
    text = instructions or _DEFAULT_INSTRUCTIONS.get(profile, _DEFAULT_INSTRUCTIONS["developer"])
    if capabilities:
        text += "\n\nCapabilities of this worker: " + ", ".join(capabilities) + "."
    target = workspace / INSTRUCTION_FILES.get(adapter, "AGENTS.md")
    target.write_text(text.rstrip() + "\n", encoding="utf-8")
    exclude = workspace / ".git" / "info" / "exclude"
    if exclude.parent.is_dir():
        with exclude.open("a", encoding="utf-8") as handle:
            handle.write(f"\n/{target.name}\n")
    return target


def credentials_env(url: str) -> tuple[str, dict[str, str]]:
    """Move user:password out of an http(s) URL into git's environment (never argv)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or "@" not in parts.netloc:
        return url, {}
    userinfo, _, host = parts.netloc.rpartition("@")
    token = base64.b64encode(userinfo.encode()).decode()
    env = {
        "GIT_CONFIG_COUNT": "1",
        "GIT_CONFIG_KEY_0": "http.extraHeader",
        "GIT_CONFIG_VALUE_0": f"Authorization: Basic {token}",
    }
    return urlunsplit(parts._replace(netloc=host)), env


_credentials_env = credentials_env


def clone_repository(
    url: str,
    workspace: Path,
    branch: str | None,
    env: Mapping[str, str],
    *,
    base: str | None = None,
    mirror: Path | None = None,
) -> None:
    """Clone `url` into the (empty) workspace and check out `branch`: from the remote's branch
    when it exists (a worker replacing one that died goes on from what that one pushed), else
    created at the remote's `base` branch as it is now (with every earlier task's work in it),
    else at the default branch. With `mirror` (a bare mirror of `url`, just fetched) the clone
    copies it locally (no hardlinks) and `origin` is set back to `url`; its remote-tracking
    branches are the mirror's, i.e. the remote's as of that fetch."""
    clean_url, secret_env = credentials_env(url)
    git_env = {**env, **secret_env, "GIT_TERMINAL_PROMPT": "0"}

    def git(*argv: str, check: bool = True) -> int:
        try:
            done = subprocess.run(
                argv, env=git_env, check=check, capture_output=True, timeout=_CLONE_TIMEOUT_S
            )
        except subprocess.CalledProcessError as exc:
            detail = exc.stderr.decode(errors="replace").strip()[-500:]
            raise WorkerStartError(f"cannot clone {clean_url}: {detail}") from None
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise WorkerStartError(f"cannot clone {clean_url}: {exc}") from None
        return done.returncode

    here = ("git", "-C", str(workspace))
    if mirror is not None:
        # copied, not hardlinked: an agent (its own user, owning its workspace) must not
        # be able to change the objects every later task's clone is made from
        git("git", "clone", "-q", "--no-hardlinks", str(mirror), str(workspace))
        git(*here, "remote", "set-url", "origin", clean_url)
    else:
        git("git", "clone", "-q", clean_url, str(workspace))
    if not branch:
        return
    start: list[str] = []
    for candidate in (branch, base):
        if not candidate:
            continue
        ref = f"refs/remotes/origin/{candidate}"
        if git(*here, "rev-parse", "-q", "--verify", ref, check=False) == 0:
            start = [f"origin/{candidate}"]
            break
    git(*here, "checkout", "-q", "-B", branch, *start)


def remove_tree(path: Path) -> None:
    """Delete a directory tree, ignoring what is already gone."""
    if path.exists():
        shutil.rmtree(path, ignore_errors=True)


def process_env() -> dict[str, str]:
    """The manager's own environment (a copy)."""
    return dict(os.environ)
