"""What a worker's agent finds in its environment besides the allowlist: its credentials, a
git identity of its own, and `orchestrator` on its PATH.

With `agent_user` the agent runs as that unprivileged user: the manager hands it the
worker's workspace and session directory, whose `home` becomes the agent's HOME.

Credentials come from the manager's environment by name (`agent_credentials`:
`ANTHROPIC_API_KEY`, `OPENAI_API_KEY`, ...) or by reference (`agent_env`: `env:NAME`,
`file:/path`). Values only ever go into the worker's environment; an error names the
variable and its reference, never a value.
"""

from __future__ import annotations

import os
import pwd
import re
import stat
import sys
from collections.abc import Mapping
from pathlib import Path

from services.worker_manager.errors import InvalidWorkerConfigError
from services.worker_manager.settings import WorkerManagerSettings

__all__ = [
    "agent_account",
    "agent_env",
    "git_identity_env",
    "hand_over",
    "resolve_reference",
    "with_orchestrator_on_path",
]

_IDENTITY = re.compile(r"^\s*(?P<name>[^<>]+?)\s*<(?P<email>[^<>\s]+)>\s*$")


def resolve_reference(name: str, ref: str, source: Mapping[str, str]) -> str:
    """The value behind `env:OTHER` (of `source`) or `file:/absolute/path`."""
    scheme, _, rest = ref.partition(":")
    if scheme == "env" and rest:
        value = source.get(rest)
        if value is None:
            raise InvalidWorkerConfigError(
                f"agent variable {name}: reference {ref!r} names an unset environment variable"
            )
        return value
    if scheme == "file" and rest:
        path = Path(rest)
        if not path.is_absolute():
            raise InvalidWorkerConfigError(
                f"agent variable {name}: reference {ref!r} must be an absolute path"
            )
        try:
            return path.read_text(encoding="utf-8").removesuffix("\n")
        except OSError as exc:
            raise InvalidWorkerConfigError(
                f"agent variable {name}: reference {ref!r} cannot be read ({exc.strerror})"
            ) from None
    raise InvalidWorkerConfigError(  # not shown: it may be a key pasted in by mistake
        f"agent variable {name}: its reference must be env:NAME or file:/absolute/path"
    )


def git_identity_env(settings: WorkerManagerSettings, adapter: str) -> dict[str, str]:
    """GIT_AUTHOR_* / GIT_COMMITTER_* of the adapter's identity ({} when it has none)."""
    identity = settings.git_identities.get(adapter)
    if not identity:
        return {}
    match = _IDENTITY.match(identity)
    if match is None:
        raise InvalidWorkerConfigError(
            f"git identity of {adapter!r} must read 'Name <email>', not {identity!r}"
        )
    name, email = match["name"], match["email"]
    return {
        "GIT_AUTHOR_NAME": name,
        "GIT_AUTHOR_EMAIL": email,
        "GIT_COMMITTER_NAME": name,
        "GIT_COMMITTER_EMAIL": email,
    }


def agent_env(
    settings: WorkerManagerSettings, adapter: str, source: Mapping[str, str]
) -> dict[str, str]:
    """The agent's credentials (named and referenced) and git identity. Droid's BYOK
    model's key variable (`droid_byok.api_key_env`) is passed by name like the others."""
    names = list(settings.agent_credentials)
    if adapter == "factory-droid" and settings.droid_byok is not None:
        names.append(settings.droid_byok.key_variable)
    env = {name: source[name] for name in names if source.get(name)}
    for name, ref in settings.agent_env.items():
        env[name] = resolve_reference(name, ref, source)
    env.update(git_identity_env(settings, adapter))
    return env


def with_orchestrator_on_path(path: str | None) -> str:
    """`path` with the directory of this Python's scripts (where `orchestrator` is) first,
    so an agent finds the command however the system was started."""
    scripts = str(Path(sys.executable).parent)
    parts = [part for part in (path or os.defpath).split(os.pathsep) if part]
    if (Path(scripts) / "orchestrator").exists() and scripts not in parts:
        parts.insert(0, scripts)
    return os.pathsep.join(parts)


def agent_account(settings: WorkerManagerSettings) -> tuple[int, int] | None:
    """(uid, gid) of `agent_user`, or None; a clear error when it cannot be used."""
    name = settings.agent_user
    if not name:
        return None
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise InvalidWorkerConfigError(
            f"agent user {name!r} does not exist; create it (useradd --system {name}) "
            "or unset ORCHESTRATOR_WORKERS__AGENT_USER"
        ) from None
    if os.geteuid() != 0:
        raise InvalidWorkerConfigError(
            f"running agents as {name!r} needs the worker-manager to run as root"
        )
    if entry.pw_uid == 0:
        raise InvalidWorkerConfigError(f"agent user {name!r} is root; name an unprivileged user")
    return entry.pw_uid, entry.pw_gid


def _traversable(directory: Path, uid: int, gid: int) -> bool:
    mode = directory.stat()
    if mode.st_uid == uid:
        return bool(mode.st_mode & stat.S_IXUSR)
    if mode.st_gid == gid:
        return bool(mode.st_mode & stat.S_IXGRP)
    return bool(mode.st_mode & stat.S_IXOTH)


def hand_over(workspace: Path, session_dir: Path, account: tuple[int, int]) -> Path:
    """Give the workspace and session directory to the agent's user; answer its HOME
    (`<session_dir>/home`, whose git config trusts repositories of other owners: the
    system's clone and remotes). Refuses when a parent directory keeps that user out."""
    uid, gid = account
    for path in (workspace, session_dir):
        for parent in path.resolve().parents:
            if not _traversable(parent, uid, gid):
                raise InvalidWorkerConfigError(
                    f"the agent user (uid {uid}) cannot reach {path}: {parent} is closed to "
                    "it; open it (chmod o+x) or set ORCHESTRATOR_WORKERS__DATA_DIR elsewhere"
                )
    home = session_dir / "home"
    home.mkdir(parents=True, exist_ok=True)
    gitconfig = home / ".gitconfig"
    if not gitconfig.exists():  # its repositories and remotes belong to the system's user
        gitconfig.write_text("[safe]\n\tdirectory = *\n", encoding="utf-8")
    for root in (workspace, session_dir):
        os.chown(root, uid, gid)
        for folder, dirs, names in os.walk(root):
            for name in dirs + names:
                os.chown(os.path.join(folder, name), uid, gid, follow_symlinks=False)
    return home
