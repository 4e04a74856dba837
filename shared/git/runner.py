"""Run `git` as an asyncio subprocess: never blocks the event loop, never puts a secret in argv.

Configuration that may hold a secret (an `http.<url>.extraHeader` with a token) reaches git
through the environment (`GIT_CONFIG_COUNT`, `GIT_CONFIG_KEY_<n>`, `GIT_CONFIG_VALUE_<n>`),
which git reads like `-c` options but which no other user can see in the process list. The
user's global and system configuration are ignored, so behaviour does not depend on the
machine (no hooks, no `init.defaultBranch`, no credential helpers prompting).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from shared.git.errors import GitCommandError, GitTimeoutError, PushRejectedError

__all__ = ["DEFAULT_TIMEOUT_S", "GitAuth", "GitIdentity", "redact", "run_git"]

DEFAULT_TIMEOUT_S = 60.0
_REDACTED = "[REDACTED]"
_REJECTION_MARKERS = ("[rejected]", "non-fast-forward", "fetch first", "[remote rejected]")
# variables of the parent environment that would change what git does or where it looks
_DROPPED_PREFIXES = ("GIT_",)


@dataclass(frozen=True)
class GitIdentity:
    """Author and committer of the commits we make."""

    name: str = "codegen-orchestrator"
    email: str = "orchestrator@localhost"


@dataclass(frozen=True)
class GitAuth:
    """Git configuration entries that authenticate against a remote; every value is secret."""

    config: Mapping[str, str] = field(default_factory=dict)

    def __repr__(self) -> str:
        """Show which keys are set, never their values."""
        return f"GitAuth(keys={sorted(self.config)!r})"

    @property
    def secrets(self) -> tuple[str, ...]:
        """The values to redact from any output: each whole value, and its last word (a token)."""
        found: list[str] = []
        for value in self.config.values():
            if value:
                found.append(value)
                found.extend(value.split()[-1:])
        return tuple(found)


def redact(text: str, secrets: Iterable[str]) -> str:
    """`text` with every occurrence of every secret replaced by a marker."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, _REDACTED)
    return text


def _environment(
    auth: GitAuth | None, identity: GitIdentity | None, extra_env: Mapping[str, str] | None
) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(_DROPPED_PREFIXES)}
    env.update(
        GIT_CONFIG_NOSYSTEM="1",
        GIT_CONFIG_GLOBAL=os.devnull,
        GIT_TERMINAL_PROMPT="0",
        GIT_ASKPASS="true",  # never prompt: an absent credential is an error, not a hang
        LC_ALL="C",
    )
    config = dict(auth.config) if auth else {}
    config.setdefault("safe.directory", "*")
    for index, (key, value) in enumerate(config.items()):
        env[f"GIT_CONFIG_KEY_{index}"] = key
        env[f"GIT_CONFIG_VALUE_{index}"] = value
    env["GIT_CONFIG_COUNT"] = str(len(config))
    if identity is not None:
        env.update(
            GIT_AUTHOR_NAME=identity.name,
            GIT_AUTHOR_EMAIL=identity.email,
            GIT_COMMITTER_NAME=identity.name,
            GIT_COMMITTER_EMAIL=identity.email,
        )
    if extra_env:
        env.update(extra_env)
    return env


async def _kill_group(process: asyncio.subprocess.Process) -> None:
    """Kill git and every helper it started (they share the process group git leads)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    await process.wait()


async def run_git(
    *args: str,
    cwd: Path | None = None,
    auth: GitAuth | None = None,
    identity: GitIdentity | None = None,
    extra_env: Mapping[str, str] | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    check: bool = True,
) -> tuple[int, str, str]:
    """Run `git *args`; return (exit status, stdout, stderr) with secrets redacted.

    Raises `GitCommandError` (or `PushRejectedError`) on a non-zero exit when `check`, and
    `GitTimeoutError` after killing a git that ran past `timeout_s`.
    """
    secrets = auth.secrets if auth else ()
    process = await asyncio.create_subprocess_exec(
        "git",
        *args,
        cwd=cwd,
        env=_environment(auth, identity, extra_env),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,  # its own process group: a kill reaches git-remote-http too
    )
    try:
        out_bytes, err_bytes = await asyncio.wait_for(process.communicate(), timeout_s)
    except TimeoutError:
        await _kill_group(process)
        command = args[0] if args else ""
        raise GitTimeoutError(f"git {command} timed out after {timeout_s}s") from None
    except asyncio.CancelledError:
        await _kill_group(process)
        raise
    stdout = redact(out_bytes.decode(errors="replace"), secrets)
    stderr = redact(err_bytes.decode(errors="replace"), secrets)
    returncode = process.returncode if process.returncode is not None else -1
    if check and returncode != 0:
        command = args[0] if args else ""
        if command == "push" and any(marker in stderr for marker in _REJECTION_MARKERS):
            raise PushRejectedError(command, returncode, stderr)
        raise GitCommandError(command, returncode, stderr)
    return returncode, stdout, stderr
