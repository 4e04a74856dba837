"""A worker's files: workspace, profile instructions, session directory, environment."""

from __future__ import annotations

import base64
import os
import re
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
    "update_prepared_clone",
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


class _Git:
    """Runs git for one repository URL: its credentials in the environment only, a failure
    raised as `WorkerStartError` naming the URL without them."""

    def __init__(self, url: str, env: Mapping[str, str]) -> None:
        self.clean_url, secret_env = credentials_env(url)
        self.env = {**env, **secret_env, "GIT_TERMINAL_PROMPT": "0"}

    def __call__(self, *argv: str) -> None:
        self.output(*argv)

    def output(self, *argv: str) -> str:
        """Run git; answer its standard output."""
        try:
            done = subprocess.run(
                argv, env=self.env, check=True, capture_output=True, timeout=_CLONE_TIMEOUT_S
            )
        except subprocess.CalledProcessError as exc:
            detail = exc.stderr.decode(errors="replace").strip()[-500:]
            raise WorkerStartError(f"cannot clone {self.clean_url}: {detail}") from None
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise WorkerStartError(f"cannot clone {self.clean_url}: {exc}") from None
        return done.stdout.decode(errors="replace")


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
    git = _Git(url, env)
    here = ("git", "-C", str(workspace))
    if mirror is not None:
        # copied, not hardlinked: an agent (its own user, owning its workspace) must not
        # be able to change the objects every later task's clone is made from
        git("git", "clone", "-q", "--no-hardlinks", str(mirror), str(workspace))
        git(*here, "remote", "set-url", "origin", git.clean_url)
    else:
        git("git", "clone", "-q", git.clean_url, str(workspace))
    if branch:
        _check_out(git, workspace, branch, base)


def update_prepared_clone(
    url: str, workspace: Path, branch: str | None, env: Mapping[str, str], *, base: str | None
) -> None:
    """Bring a clone prepared ahead of the task (`RepositoryMirrors.claim_prepared`) to the
    remote as it is now, and check out `branch` as `clone_repository` does: one fetch of
    what was pushed since it was prepared. Without a branch the default branch is reset to
    the remote's."""
    git = _Git(url, env)
    here = ("git", "-C", str(workspace))
    git(*here, "fetch", "-q", "--prune", "--no-auto-maintenance", "--no-write-fetch-head", "origin")
    if branch:  # its local default branch may be behind: start from the remote's
        _check_out(git, workspace, branch, base, default="HEAD")
    elif _refs_present(workspace / ".git", ["refs/remotes/origin/HEAD"]):
        git(*here, "reset", "-q", "--hard", "refs/remotes/origin/HEAD")


def _check_out(
    git: _Git, workspace: Path, branch: str, base: str | None, *, default: str | None = None
) -> None:
    here = ("git", "-C", str(workspace))
    candidates = [f"refs/remotes/origin/{name}" for name in (branch, base, default) if name]
    found = _refs_present(workspace / ".git", candidates)
    start = [ref.removeprefix("refs/remotes/") for ref in candidates if ref in found][:1]
    if start and _start_branch_in_place(workspace / ".git", branch, f"refs/remotes/{start[0]}"):
        return
    git(*here, "checkout", "-q", "-B", branch, *start)


_SAFE_BRANCH = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*(/[A-Za-z0-9_][A-Za-z0-9_.-]*)*$")
"""Branch names written as files here: no `..`, `@{`, spaces, quotes or leading dashes
(anything else goes through git, which checks it)."""


def _start_branch_in_place(git_dir: Path, branch: str, start_ref: str) -> bool:
    """`git checkout -B branch start` without a git process, where it changes no file: the
    checked-out commit is already `start`'s (a clone made or freshened at the remote's
    default branch, a task starting from it) and the new branch is neither checked out nor
    existing. Writes the branch's ref, its upstream (as git's `branch.autoSetupMerge` does
    from a remote-tracking start) and HEAD; False, with nothing written, otherwise."""
    name = start_ref.removeprefix("refs/remotes/origin/")
    if (
        not _SAFE_BRANCH.match(branch)
        or branch.endswith(".lock")
        or ".." in branch
        or name == "HEAD"  # symbolic: left to git
        or not _SAFE_BRANCH.match(name)
    ):
        return False
    local = f"refs/heads/{branch}"
    head = _read_ref(git_dir, "HEAD")
    target = _read_ref(git_dir, start_ref)
    if head is None or target is None or head != target or _refs_present(git_dir, [local]):
        return False
    if (git_dir / "HEAD").read_text(encoding="utf-8").strip() == f"ref: {local}":
        return False
    ref_file = git_dir / local
    if any(part.exists() and part.is_file() for part in ref_file.parents):
        return False  # a branch named like this one's directory (git would refuse too)
    try:
        ref_file.parent.mkdir(parents=True, exist_ok=True)
        ref_file.write_text(f"{target}\n", encoding="utf-8")
        with (git_dir / "config").open("a", encoding="utf-8") as config:
            config.write(f'[branch "{branch}"]\n\tremote = origin\n\tmerge = refs/heads/{name}\n')
        (git_dir / "HEAD").write_text(f"ref: {local}\n", encoding="utf-8")
    except OSError:
        return False
    return True


def _read_ref(git_dir: Path, ref: str, depth: int = 0) -> str | None:
    """The commit a ref names (following symbolic refs), read from its files; None when
    it cannot be told."""
    if depth > 5:
        return None
    try:
        text = (git_dir / ref).read_text(encoding="utf-8").strip()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        text = ""
        try:
            packed = (git_dir / "packed-refs").read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return None
        for line in packed.splitlines():
            sha, _, name = line.partition(" ")
            if name == ref and line[:1] not in "#^":
                text = sha
                break
    except OSError:
        return None
    if text.startswith("ref: "):
        return _read_ref(git_dir, text.removeprefix("ref: "), depth + 1)
    return text if re.fullmatch(r"[0-9a-f]{40}([0-9a-f]{24})?", text) else None


def _refs_present(git_dir: Path, refs: list[str]) -> set[str]:
    """Which of `refs` the repository has, read from its files (a loose ref, or a line of
    packed-refs) rather than one git process per ref: a clone packs its refs, a fetch
    writes the ones it updates loose."""
    found = {ref for ref in refs if (git_dir / ref).is_file()}
    try:
        packed = (git_dir / "packed-refs").read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return found
    names = {line.partition(" ")[2] for line in packed.splitlines() if line[:1] not in "#^"}
    return found | {ref for ref in refs if ref in names}


def remove_tree(path: Path) -> None:
    """Delete a directory tree, ignoring what is already gone."""
    if path.exists():
        shutil.rmtree(path, ignore_errors=True)


def process_env() -> dict[str, str]:
    """The manager's own environment (a copy)."""
    return dict(os.environ)
