"""What integration needs from a provider: ancestry, diffs, a compare-and-swap fast-forward,
and (GitHub) pull requests opened and merged; on real bare repositories."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from shared.git import (
    GitHubProvider,
    LocalGitProvider,
    ProviderError,
    RepoNotFoundError,
    commit_all,
    push,
    rev_parse,
    run_git,
)
from tests.git.fake_github import FakeGitHub

TOKEN = "ghp_TestToken0123456789abcdef"


async def _history(provider: LocalGitProvider, work: Path) -> tuple[str, str, str]:
    """main → task (one commit ahead) and other (diverged from main); their shas."""
    repo = await provider.create_repo("octo/app")
    await push(work, repo.clone_url, "main")
    main = await rev_parse(work, "HEAD")
    (work / "feature.py").write_text("x = 1\n")
    await commit_all(work, "feature")
    await push(work, repo.clone_url, "task/1")
    task = await rev_parse(work, "HEAD")
    assert main is not None
    await run_git("checkout", "-q", "-b", "other", main, cwd=work)
    (work / "other.py").write_text("y = 2\n")
    await commit_all(work, "other")
    await push(work, repo.clone_url, "other")
    other = await rev_parse(work, "HEAD")
    assert main is not None
    assert task is not None
    assert other is not None
    return main, task, other


async def test_ancestry_and_diff(provider: LocalGitProvider, worktree: Path) -> None:
    """is_ancestor follows history; diff_files lists what differs between two commits."""
    main, task, other = await _history(provider, worktree)
    assert await provider.is_ancestor("octo/app", main, task)
    assert await provider.is_ancestor("octo/app", task, task)
    assert not await provider.is_ancestor("octo/app", task, main)
    assert not await provider.is_ancestor("octo/app", other, task)
    assert await provider.diff_files("octo/app", main, task) == ["feature.py"]


async def test_fast_forward_is_a_compare_and_swap(
    provider: LocalGitProvider, worktree: Path
) -> None:
    """main moves only from the expected commit to a descendant; a retry is a no-op; a
    branch that moved elsewhere is left alone; a non-descendant is refused."""
    main, task, other = await _history(provider, worktree)
    assert await provider.fast_forward("octo/app", "main", expected=main, new=task)
    assert await provider.head_of("octo/app", "main") == task
    assert await provider.fast_forward("octo/app", "main", expected=main, new=task)  # retry
    assert not await provider.fast_forward("octo/app", "main", expected=main, new=other)
    assert await provider.head_of("octo/app", "main") == task
    with pytest.raises(ProviderError, match="does not descend"):
        await provider.fast_forward("octo/app", "main", expected=task, new=other)
    assert await provider.head_of("octo/app", "main") == task


async def test_fast_forward_runs_two_git_processes(
    provider: LocalGitProvider, worktree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Moving the branch costs two git processes (ancestry, compare-and-swap); a retry
    (its ancestry kept) and a branch moved elsewhere read the branch once more and still
    answer right."""
    main, task, other = await _history(provider, worktree)
    commands = _counting_git(monkeypatch)
    assert await provider.fast_forward("octo/app", "main", expected=main, new=task)
    assert commands == ["merge-base", "update-ref"]
    commands.clear()
    assert await provider.fast_forward("octo/app", "main", expected=main, new=task)  # retry
    assert commands == ["update-ref", "rev-parse"]
    commands.clear()
    assert not await provider.fast_forward("octo/app", "main", expected=main, new=other)
    assert len(commands) == 3
    monkeypatch.undo()
    assert await provider.head_of("octo/app", "main") == task


def _counting_git(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The git subcommands run from now on."""
    commands: list[str] = []
    spawn = asyncio.create_subprocess_exec

    async def counting(program: str, *args: Any, **kwargs: Any) -> asyncio.subprocess.Process:
        commands.append(str(args[0]) if args else program)
        return await spawn(program, *args, **kwargs)

    monkeypatch.setattr(asyncio, "create_subprocess_exec", counting)
    return commands


async def test_an_ancestry_asked_before_is_not_asked_again(
    provider: LocalGitProvider, worktree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The flow's `integrate` asks the ancestry, then `fast_forward` needs it again: a kept
    `True` answer (full commit ids) spares its git process, and the swap still happens."""
    main, task, _ = await _history(provider, worktree)
    commands = _counting_git(monkeypatch)
    assert await provider.is_ancestor("octo/app", main, task)
    assert await provider.is_ancestor("octo/app", main.upper(), task)  # the same commits
    assert commands == ["merge-base"]
    commands.clear()
    assert await provider.fast_forward("octo/app", "main", expected=main, new=task)
    assert commands == ["update-ref"]
    monkeypatch.undo()
    assert await provider.head_of("octo/app", "main") == task


async def test_a_no_and_a_short_id_are_asked_again(
    provider: LocalGitProvider, worktree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`False` is never kept: a commit missing from the repository now may be pushed later
    (and then descends); neither are answers about abbreviated ids, which may become
    ambiguous. A kept answer is the repository's own, not another's."""
    main, task, _ = await _history(provider, worktree)
    (worktree / "later.py").write_text("z = 3\n")
    await commit_all(worktree, "later")
    later = await rev_parse(worktree, "HEAD")
    assert later is not None
    assert not await provider.is_ancestor("octo/app", main, later)  # not pushed yet
    await push(worktree, (await provider.create_repo("octo/app")).clone_url, "other")
    assert await provider.is_ancestor("octo/app", main, later)
    commands = _counting_git(monkeypatch)
    assert await provider.is_ancestor("octo/app", main[:12], task)
    assert await provider.is_ancestor("octo/app", main[:12], task)
    assert commands == ["merge-base", "merge-base"]
    commands.clear()
    with pytest.raises(RepoNotFoundError):  # the kept answer is octo/app's only
        await provider.is_ancestor("octo/nothing", main, later)
    assert commands == []


async def test_heads_of_reads_several_branches_in_one_process(
    provider: LocalGitProvider, worktree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`heads_of` answers as `head_of` branch by branch, in the order asked, with one git
    process: an absent branch is None, and so is a name whose refs are only below it
    (`task` when `task/1` exists); a missing repository answers None for each."""
    main, task, other = await _history(provider, worktree)
    asked = ["task/1", "nothing", "main", "task", "other"]
    one_by_one = [await provider.head_of("octo/app", branch) for branch in asked]
    commands = _counting_git(monkeypatch)
    heads = await provider.heads_of("octo/app", asked)
    assert heads == one_by_one == [task, None, main, None, other]
    assert commands == ["for-each-ref"]
    assert await provider.heads_of("octo/none", ["main", "task/1"]) == [None, None]
    with pytest.raises(ValueError, match="not a branch name"):
        await provider.heads_of("octo/app", ["main", "--all"])


async def test_heads_of_a_branch_not_at_a_commit_is_peeled(
    provider: LocalGitProvider, worktree: Path
) -> None:
    """A branch set to an annotated tag (git refuses it; a person editing the ref file
    may) answers the commit the tag names, as `head_of` does."""
    main, task, _ = await _history(provider, worktree)
    bare = provider.path_of("octo/app")
    who = ["-c", "user.name=t", "-c", "user.email=t@example.com"]
    await run_git(*who, "tag", "-a", "-m", "release", "v1", task, cwd=bare)
    tag = (await run_git("rev-parse", "refs/tags/v1", cwd=bare))[1].strip()
    (bare / "refs" / "heads" / "tagged").write_text(f"{tag}\n")  # git update-ref refuses
    assert await provider.heads_of("octo/app", ["tagged", "main"]) == [task, main]


async def test_the_local_provider_has_no_pull_requests(provider: LocalGitProvider) -> None:
    """Asking the local provider for a pull request names the integration to use instead."""
    with pytest.raises(ProviderError, match="use the integration 'merge'"):
        await provider.pull_request("octo/app", head="t", base="main", title="t", body="")


@pytest.fixture
async def github(tmp_path: Path) -> AsyncIterator[tuple[GitHubProvider, FakeGitHub]]:
    """A provider on a fake GitHub whose bare repositories live under tmp_path/gh."""
    fake = FakeGitHub(tmp_path / "gh", TOKEN)
    provider = GitHubProvider(
        SecretStr(TOKEN), api_url="https://api.github.example", transport=fake.transport()
    )
    try:
        yield provider, fake
    finally:
        await provider.aclose()


async def test_github_heads_of_asks_each_branch(
    github: tuple[GitHubProvider, FakeGitHub], worktree: Path
) -> None:
    """On GitHub `heads_of` is `head_of` of each branch, in the order asked."""
    provider, fake = github
    main, task, _ = await _history(LocalGitProvider(fake.root), worktree)
    assert await provider.heads_of("octo/app", ["task/1", "nothing", "main"]) == [
        task,
        None,
        main,
    ]


async def test_github_pull_request_opened_once_and_merged(
    github: tuple[GitHubProvider, FakeGitHub], worktree: Path
) -> None:
    """A pull request of the task branch is opened once (asking again finds it), merged
    through the API at the expected head, and main then holds a merge of both."""
    provider, fake = github
    main, task, _ = await _history(LocalGitProvider(fake.root), worktree)
    assert await provider.is_ancestor("octo/app", main, task)
    assert await provider.diff_files("octo/app", main, task) == ["feature.py"]
    pull = await provider.pull_request(
        "octo/app", head="task/1", base="main", title="Task 1", body="checks passed"
    )
    again = await provider.pull_request(
        "octo/app", head="task/1", base="main", title="Task 1", body="checks passed"
    )
    assert again == pull
    assert (pull.number, pull.state, pull.merged) == (1, "open", False)
    assert pull.url.endswith("/octo/app/pull/1")
    with pytest.raises(ProviderError, match="409"):
        await provider.merge_pull_request("octo/app", pull.number, sha=main)
    merged = await provider.merge_pull_request("octo/app", pull.number, sha=task)
    assert merged.merged
    assert merged.merge_commit_sha is not None
    assert await provider.head_of("octo/app", "main") == merged.merge_commit_sha
    assert await provider.is_ancestor("octo/app", task, merged.merge_commit_sha)
    assert await provider.merge_pull_request("octo/app", pull.number, sha=task) == merged
    assert ("POST", "/repos/octo/app/pulls") in fake.requests
    assert [m for m, p in fake.requests if p.endswith("/merge")] == ["PUT", "PUT"]  # 409, merge


async def test_github_fast_forward_never_overwrites(
    github: tuple[GitHubProvider, FakeGitHub], worktree: Path
) -> None:
    """The GitHub fast-forward moves main to a descendant and refuses anything else."""
    provider, fake = github
    main, task, other = await _history(LocalGitProvider(fake.root), worktree)
    assert await provider.fast_forward("octo/app", "main", expected=main, new=task)
    assert await provider.head_of("octo/app", "main") == task
    assert not await provider.fast_forward("octo/app", "main", expected=main, new=other)
    assert await provider.head_of("octo/app", "main") == task
