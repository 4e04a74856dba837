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
