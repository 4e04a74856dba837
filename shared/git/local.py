"""`LocalGitProvider`: remote repositories as bare git repositories under a directory.

`org/repo` lives at `<root>/org/repo.git`; its clone URL is a `file://` URL, so every git
client (workers, deploys, people) can clone and push it like any remote.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from shared.git.errors import (
    GitCommandError,
    ProviderError,
    RepoNotFoundError,
    RepoOutsideRootError,
)
from shared.git.ops import check_sha, commit_exists_in, files_changed_in, rev_parse
from shared.git.provider import (
    CommitDiff,
    CommitSummary,
    PullRequest,
    RemoteRepo,
    split_full_name,
)
from shared.git.runner import GitAuth, run_git

__all__ = ["LocalGitProvider"]


class LocalGitProvider:
    """Bare repositories under `root`; the embedded default.

    Only repositories under `root` are reached: a name whose path resolves elsewhere (a
    symlinked owner or repository directory) is refused, and so is any owner but `owner`
    when one is given (the system's providers always give it)."""

    def __init__(
        self, root: Path, *, default_branch: str = "main", owner: str | None = None
    ) -> None:
        self._root = root.resolve()
        self._default_branch = default_branch
        self._owner = owner
        self._create_lock = asyncio.Lock()
        self._ancestry: dict[tuple[Path, str, str], None] = {}

    @property
    def name(self) -> str:
        """Provider name for logs."""
        return "local"

    @property
    def root(self) -> Path:
        """Directory holding the bare repositories."""
        return self._root

    def path_of(self, full_name: str) -> Path:
        """Where the bare repository of `full_name` lives (whether or not it exists);
        `RepoOutsideRootError` for another owner or a path that resolves outside the root."""
        owner, name = split_full_name(full_name)
        if self._owner is not None and owner != self._owner:
            raise RepoOutsideRootError(
                f"repository {full_name!r} is not under the owner {self._owner!r}"
            )
        path = self._root / owner / f"{name}.git"
        if not path.resolve().is_relative_to(self._root):
            raise RepoOutsideRootError(
                f"repository {full_name!r} resolves outside the repositories directory"
            )
        return path

    def auth(self) -> GitAuth:
        """Local repositories need no credential."""
        return GitAuth()

    def _repo(self, full_name: str) -> RemoteRepo:
        url = self.path_of(full_name).as_uri()
        return RemoteRepo(
            full_name=full_name,
            clone_url=url,
            web_url=url,
            default_branch=self._default_branch,
        )

    async def get_repo(self, full_name: str) -> RemoteRepo | None:
        """The repository, or None when there is no bare repository of that name."""
        path = self.path_of(full_name)
        if not (path / "HEAD").is_file():
            return None
        return self._repo(full_name)

    async def create_repo(self, full_name: str, *, description: str | None = None) -> RemoteRepo:
        """Create an empty bare repository, or return the existing one."""
        async with self._create_lock:
            existing = await self.get_repo(full_name)
            if existing is not None:
                return existing
            path = self.path_of(full_name)
            path.parent.mkdir(parents=True, exist_ok=True)
            await run_git(
                "init", "--bare", "--quiet", f"--initial-branch={self._default_branch}", str(path)
            )
            if description:
                (path / "description").write_text(description.strip() + "\n", encoding="utf-8")
            return self._repo(full_name)

    async def _existing(self, full_name: str) -> Path:
        if await self.get_repo(full_name) is None:
            raise RepoNotFoundError(f"no repository {full_name!r}")
        return self.path_of(full_name)

    async def head_of(self, full_name: str, branch: str) -> str | None:
        """The commit `branch` points at, or None."""
        if await self.get_repo(full_name) is None:
            return None
        if branch.startswith("-"):
            raise ValueError(f"not a branch name: {branch!r}")
        return await rev_parse(self.path_of(full_name), f"refs/heads/{branch}")

    async def heads_of(self, full_name: str, branches: Sequence[str]) -> list[str | None]:
        """`head_of` of each branch, in one `git for-each-ref` (a pattern also matches the
        refs below it, so only exact names are taken). A branch pointing at anything but a
        commit (never made by git itself) is left to `head_of`, which peels it."""
        if await self.get_repo(full_name) is None:
            return [None for _ in branches]
        if any(branch.startswith("-") for branch in branches):
            raise ValueError(f"not a branch name in {list(branches)!r}")
        refs = [f"refs/heads/{branch}" for branch in branches]
        _, out, _ = await run_git(
            "for-each-ref", "--format=%(objecttype) %(objectname) %(refname)", "--", *refs,
            cwd=self.path_of(full_name),
        )  # fmt: skip
        found: dict[str, tuple[str, str]] = {}
        for line in out.splitlines():
            kind, sha, ref = line.split(" ", 2)
            found[ref] = (kind, sha)
        heads: list[str | None] = []
        for branch, ref in zip(branches, refs, strict=True):
            kind, sha = found.get(ref, ("", ""))
            if kind and kind != "commit":
                heads.append(await self.head_of(full_name, branch))
            else:
                heads.append(sha or None)
        return heads

    async def commit_exists(self, full_name: str, sha: str) -> bool:
        """True when the bare repository holds the commit."""
        if await self.get_repo(full_name) is None:
            return False
        return await commit_exists_in(self.path_of(full_name), sha)

    async def files_changed(self, full_name: str, sha: str) -> list[str]:
        """Paths the commit changed."""
        path = await self._existing(full_name)
        try:
            return await files_changed_in(path, sha)
        except GitCommandError as error:
            raise RepoNotFoundError(f"no commit {sha} in {full_name!r}") from error

    async def is_ancestor(self, full_name: str, ancestor: str, descendant: str) -> bool:
        """True when `descendant` contains `ancestor` (`git merge-base --is-ancestor`)."""
        path = await self._existing(full_name)
        key = (path, check_sha(ancestor), check_sha(descendant))
        if key in self._ancestry:
            return True
        code, _, _ = await run_git(
            "merge-base", "--is-ancestor", key[1], key[2], cwd=path, check=False
        )
        if code == 0 and len(key[1]) == len(key[2]) and len(key[1]) in (40, 64):
            self._remember_ancestry(key)  # full ids only: a short one may become ambiguous
        return code == 0

    def _remember_ancestry(self, key: tuple[Path, str, str]) -> None:
        """Keep a `True` answer of `is_ancestor`: two commits' ancestry never changes (a
        commit names its parents), so asking again, as `fast_forward` does right after the
        flow's `integrate` asked, needs no git process. `False` is never kept (a commit
        missing now may be pushed later). The oldest answers go past `_ANCESTRY_KEPT`."""
        self._ancestry[key] = None
        if len(self._ancestry) > _ANCESTRY_KEPT:
            del self._ancestry[next(iter(self._ancestry))]

    async def diff_files(self, full_name: str, base: str, head: str) -> list[str]:
        """Paths that differ between two commits."""
        path = await self._existing(full_name)
        _, out, _ = await run_git(
            "diff", "--name-only", "-z", check_sha(base), check_sha(head), "--", cwd=path
        )
        return sorted(name for name in out.split("\0") if name)

    async def commits(
        self, full_name: str, branch: str, *, limit: int, offset: int
    ) -> list[CommitSummary]:
        """`git log` of the branch in the bare repository, newest first."""
        if await self.get_repo(full_name) is None:
            return []
        if branch.startswith("-"):
            raise ValueError(f"not a branch name: {branch!r}")
        code, out, _ = await run_git(
            "log",
            f"--max-count={max(limit, 0)}",
            f"--skip={max(offset, 0)}",
            f"--format={_LOG_FORMAT}",
            f"refs/heads/{branch}",
            "--",
            cwd=self.path_of(full_name),
            check=False,
        )
        if code != 0:  # no such branch (or an empty repository)
            return []
        return [_summary(record) for record in out.split("\x1e") if record.strip()]

    async def commit_diff(self, full_name: str, sha: str, *, max_bytes: int) -> CommitDiff:
        """`git show` of the commit (its first parent's diff), cut after `max_bytes`."""
        path = await self._existing(full_name)
        sha = check_sha(sha)
        try:
            _, out, _ = await run_git(
                "show",
                "--first-parent",
                "--stat",
                "--patch",
                f"--format={_LOG_FORMAT}",
                f"{sha}^{{commit}}",
                "--",
                cwd=path,
            )
        except GitCommandError as error:
            raise RepoNotFoundError(f"no commit {sha} in {full_name!r}") from error
        header, _, patch = out.partition("\x1e")
        summary = _summary(header)
        data = patch.lstrip("\n").encode()
        truncated = len(data) > max_bytes
        text = data[:max_bytes].decode(errors="ignore") if truncated else data.decode()
        return CommitDiff(summary.sha, summary.subject, summary.author, text, truncated)

    async def fast_forward(self, full_name: str, branch: str, *, expected: str, new: str) -> bool:
        """`git update-ref` with the old value: atomic, so a retry never moves it twice.

        Two git processes when it moves (the ancestry, then the compare-and-swap), one when
        the ancestry was asked just before (kept); the branch is read only when the swap did
        not happen (moved elsewhere, or a retry)."""
        path = await self._existing(full_name)
        if branch.startswith("-"):
            raise ValueError(f"not a branch name: {branch!r}")
        ref = f"refs/heads/{branch}"
        new, expected = check_sha(new), check_sha(expected)
        if not await self.is_ancestor(full_name, expected, new):
            current = await rev_parse(path, ref)
            if current == new:
                return True
            if current != expected:
                return False  # moved elsewhere meanwhile: left alone
            raise ProviderError(f"{new[:12]} does not descend from {branch} ({expected[:12]})")
        code, _, _ = await run_git(
            "update-ref", "-m", "orchestrator: integrate", ref, new, expected,
            cwd=path, check=False,
        )  # fmt: skip
        return code == 0 or await rev_parse(path, ref) == new

    async def pull_request(
        self, full_name: str, *, head: str, base: str, title: str, body: str
    ) -> PullRequest:
        """Local repositories have no pull requests."""
        raise ProviderError(
            "the local git provider has no pull requests; use the integration 'merge'"
        )

    async def merge_pull_request(self, full_name: str, number: int, *, sha: str) -> PullRequest:
        """Local repositories have no pull requests."""
        raise ProviderError("the local git provider has no pull requests")


_ANCESTRY_KEPT = 1024
"""`is_ancestor` answers a provider keeps (about 0.2 MiB at most)."""

_LOG_FORMAT = "%H%x1f%an%x1f%at%x1f%s%x1e"
"""sha, author, author time (epoch), subject; records end with RS (0x1e)."""


def _summary(record: str) -> CommitSummary:
    sha, author, at, subject = record.strip("\n").split("\x1f", 3)
    when = datetime.fromtimestamp(int(at), tz=UTC)
    return CommitSummary(sha=sha, subject=subject, author=author, authored_at=when)
