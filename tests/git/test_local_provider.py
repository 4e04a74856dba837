"""LocalGitProvider and the working-copy operations, against real bare repositories."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.git import (
    GitCommandError,
    LocalGitProvider,
    PushRejectedError,
    RepoNameError,
    RepoNotFoundError,
    clone,
    commit_all,
    init_worktree,
    push,
    remote_head,
    rev_parse,
)


async def test_create_repo_is_idempotent_and_bare(provider: LocalGitProvider) -> None:
    """Creating twice returns the same empty bare repository under the root."""
    first = await provider.create_repo("acme/shop", description="A shop")
    second = await provider.create_repo("acme/shop")
    assert first == second
    path = provider.path_of("acme/shop")
    assert (path / "HEAD").is_file()
    assert first.clone_url == path.as_uri()
    assert (path / "description").read_text() == "A shop\n"
    assert await provider.head_of("acme/shop", "main") is None


@pytest.mark.parametrize(
    "bad", ["acme", "acme/", "/shop", "../shop", "acme/..", "acme/shop/x", "a b/c", "-x/.y"]
)
async def test_bad_repo_names_are_refused(provider: LocalGitProvider, bad: str) -> None:
    """A name that is not a plain owner/name never reaches the file system."""
    with pytest.raises(RepoNameError):
        await provider.create_repo(bad)


async def test_push_then_inspect_remote(provider: LocalGitProvider, worktree: Path) -> None:
    """After a push, head_of, commit_exists and files_changed describe the pushed commit."""
    repo = await provider.create_repo("acme/shop")
    sha = await rev_parse(worktree, "HEAD")
    assert sha is not None
    await push(worktree, repo.clone_url, "main")
    assert await provider.head_of("acme/shop", "main") == sha
    assert await remote_head(repo.clone_url, "main") == sha
    assert await provider.commit_exists("acme/shop", sha)
    assert await provider.commit_exists("acme/shop", sha[:12])
    assert await provider.files_changed("acme/shop", sha) == ["README.md", "src/app.py"]
    assert not await provider.commit_exists("acme/shop", "0" * 40)
    assert not await provider.commit_exists("acme/other", sha)
    with pytest.raises(RepoNotFoundError):
        await provider.files_changed("acme/shop", "0" * 40)
    with pytest.raises(ValueError, match="not a commit id"):
        await provider.commit_exists("acme/shop", "--all")


async def test_files_changed_of_a_later_commit(
    provider: LocalGitProvider, worktree: Path, tmp_path: Path
) -> None:
    """files_changed lists only what the commit itself changed, including deletions."""
    repo = await provider.create_repo("acme/shop")
    await push(worktree, repo.clone_url, "main")
    copy = tmp_path / "copy"
    await clone(repo.clone_url, copy, branch="main")
    (copy / "README.md").unlink()
    (copy / "NEW.md").write_text("new\n")
    sha = await commit_all(copy, "second")
    assert sha is not None
    await push(copy, repo.clone_url, "main")
    assert await provider.files_changed("acme/shop", sha) == ["NEW.md", "README.md"]
    assert await commit_all(copy, "nothing") is None


async def test_push_never_overwrites_other_history(
    provider: LocalGitProvider, worktree: Path, tmp_path: Path
) -> None:
    """A push of unrelated history is rejected and the remote keeps its head."""
    repo = await provider.create_repo("acme/shop")
    await push(worktree, repo.clone_url, "main")
    before = await provider.head_of("acme/shop", "main")
    other = tmp_path / "other"
    await init_worktree(other, branch="main")
    (other / "x.txt").write_text("x\n")
    await commit_all(other, "unrelated")
    with pytest.raises(PushRejectedError):
        await push(other, repo.clone_url, "main")
    assert await provider.head_of("acme/shop", "main") == before


async def test_clone_of_a_missing_remote_fails(tmp_path: Path) -> None:
    """A clone of a remote that does not exist raises GitCommandError with git's reason."""
    with pytest.raises(GitCommandError, match="clone failed"):
        await clone((tmp_path / "nope.git").as_uri(), tmp_path / "dest")


async def test_commits_page_through_a_branch_newest_first(
    provider: LocalGitProvider, worktree: Path
) -> None:
    """`commits` lists the branch's history newest first, by limit and offset; a missing
    repository or branch is an empty history."""
    repo = await provider.create_repo("acme/log")
    for number in range(3):
        (worktree / "n.txt").write_text(f"{number}\n")
        await commit_all(worktree, f"change {number}\n\nbody")
    await push(worktree, repo.clone_url, "main")
    first = await provider.commits("acme/log", "main", limit=2, offset=0)
    assert [c.subject for c in first] == ["change 2", "change 1"]
    assert first[0].sha == await rev_parse(worktree, "HEAD")
    assert first[0].author
    rest = await provider.commits("acme/log", "main", limit=2, offset=2)
    assert [c.subject for c in rest] == ["change 0", "first"]
    assert await provider.commits("acme/log", "nope", limit=5, offset=0) == []
    assert await provider.commits("acme/none", "main", limit=5, offset=0) == []


async def test_commit_diff_is_the_patch_cut_at_a_size(
    provider: LocalGitProvider, worktree: Path
) -> None:
    """`commit_diff` answers the commit's subject and patch, cut (and says so) past the
    size; an unknown commit or a bad sha is refused."""
    repo = await provider.create_repo("acme/diff")
    (worktree / "src" / "app.py").write_text("print('hello')\n" + "x = 1\n" * 200)
    sha = await commit_all(worktree, "say hello")
    assert sha is not None
    await push(worktree, repo.clone_url, "main")
    whole = await provider.commit_diff("acme/diff", sha, max_bytes=100_000)
    assert whole.subject == "say hello"
    assert not whole.truncated
    assert "+print('hello')" in whole.patch
    assert "src/app.py" in whole.patch
    cut = await provider.commit_diff("acme/diff", sha, max_bytes=200)
    assert cut.truncated
    assert len(cut.patch.encode()) <= 200
    with pytest.raises(RepoNotFoundError):
        await provider.commit_diff("acme/diff", "0" * 40, max_bytes=100)
    with pytest.raises(ValueError, match="not a commit id"):
        await provider.commit_diff("acme/diff", "--output=x", max_bytes=100)
