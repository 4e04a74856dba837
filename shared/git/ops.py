"""Working-copy operations every actor needs: init, clone, commit, push, inspect a commit.

Each function runs real `git` subprocesses through `run_git`; authentication travels as a
`GitAuth` (environment, never argv). A `target` is a working copy or a bare repository.
"""

from __future__ import annotations

import re
from pathlib import Path

from shared.git.errors import GitCommandError
from shared.git.runner import DEFAULT_TIMEOUT_S, GitAuth, GitIdentity, run_git

__all__ = [
    "check_sha",
    "clone",
    "commit_all",
    "commit_exists_in",
    "files_changed_in",
    "init_worktree",
    "push",
    "remote_head",
    "rev_parse",
]

_SHA = re.compile(r"^[0-9a-fA-F]{4,64}$")
_BRANCH = re.compile(r"^(?!-)(?!.*\.\.)[A-Za-z0-9._/-]+$")


def check_sha(sha: str) -> str:
    """`sha` if it looks like a (possibly abbreviated) commit id; ValueError otherwise."""
    if not _SHA.match(sha):
        raise ValueError(f"not a commit id: {sha!r}")
    return sha.lower()


def _check_branch(branch: str) -> str:
    if not _BRANCH.match(branch) or branch.endswith(("/", ".lock")):
        raise ValueError(f"not a branch name: {branch!r}")
    return branch


async def init_worktree(path: Path, *, branch: str = "main") -> None:
    """Create a new empty working copy at `path` whose first branch is `branch`."""
    await run_git("init", "--quiet", f"--initial-branch={_check_branch(branch)}", "--", str(path))


async def clone(
    url: str,
    dest: Path,
    *,
    branch: str | None = None,
    auth: GitAuth | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> None:
    """Clone `url` into `dest` (optionally one branch only)."""
    args = ["clone", "--quiet"]
    if branch is not None:
        args += ["--branch", _check_branch(branch), "--single-branch"]
    await run_git(*args, "--", url, str(dest), auth=auth, timeout_s=timeout_s)


async def commit_all(
    worktree: Path, message: str, *, identity: GitIdentity | None = None
) -> str | None:
    """Stage every change in `worktree` and commit it; the new sha, or None if nothing changed."""
    await run_git("add", "--all", cwd=worktree)
    code, _, _ = await run_git("diff", "--cached", "--quiet", cwd=worktree, check=False)
    has_head = await rev_parse(worktree, "HEAD") is not None
    if code == 0 and has_head:
        return None
    await run_git(
        "commit", "--quiet", "--allow-empty", "--no-verify", "-m", message,
        cwd=worktree, identity=identity or GitIdentity(),
    )  # fmt: skip
    sha = await rev_parse(worktree, "HEAD")
    assert sha is not None  # a commit was just made
    return sha


async def push(
    worktree: Path,
    url: str,
    branch: str,
    *,
    auth: GitAuth | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> None:
    """Push HEAD of `worktree` to `branch` of `url`, never forcing.

    Raises `PushRejectedError` when the remote branch holds history HEAD does not contain.
    """
    refspec = f"HEAD:refs/heads/{_check_branch(branch)}"
    await run_git(
        "push", "--quiet", "--", url, refspec, cwd=worktree, auth=auth, timeout_s=timeout_s
    )  # fmt: skip


async def rev_parse(target: Path, revision: str) -> str | None:
    """The commit `revision` names in `target`, or None when it names none."""
    if revision.startswith("-"):
        raise ValueError(f"not a revision: {revision!r}")
    code, out, _ = await run_git(
        "rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}", cwd=target, check=False
    )
    return out.strip() if code == 0 else None


async def commit_exists_in(target: Path, sha: str) -> bool:
    """True when the commit `sha` is in the repository at `target`."""
    code, _, _ = await run_git(
        "cat-file", "-e", f"{check_sha(sha)}^{{commit}}", cwd=target, check=False
    )
    return code == 0


async def files_changed_in(target: Path, sha: str) -> list[str]:
    """Paths the commit `sha` added, modified or deleted (against its first parent)."""
    if not await commit_exists_in(target, sha):
        raise GitCommandError("diff-tree", 128, f"no commit {sha} in {target}")
    _, out, _ = await run_git(
        "diff-tree", "--no-commit-id", "--name-only", "-r", "--root", "-z", check_sha(sha),
        cwd=target,
    )  # fmt: skip
    return sorted(path for path in out.split("\0") if path)


async def remote_head(
    url: str, branch: str, *, auth: GitAuth | None = None, timeout_s: float = DEFAULT_TIMEOUT_S
) -> str | None:
    """The commit `branch` points at on the remote `url`, or None when it has no such branch."""
    ref = f"refs/heads/{_check_branch(branch)}"
    _, out, _ = await run_git("ls-remote", "--", url, ref, auth=auth, timeout_s=timeout_s)
    for line in out.splitlines():
        sha, _, name = line.partition("\t")
        if name == ref:
            return sha
    return None
