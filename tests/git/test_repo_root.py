"""Providers reach only the repositories under their root: the configured owner, and (local)
paths that stay inside the repositories directory, symlinks and `..` included."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from shared.git import (
    GitHubProvider,
    GitSettings,
    LocalGitProvider,
    RepoNameError,
    RepoOutsideRootError,
    build_provider,
)
from tests.git.fake_github import FakeGitHub

TOKEN = "ghp_TestToken0123456789abcdef"


@pytest.fixture
def owned(tmp_path: Path) -> LocalGitProvider:
    """A local provider restricted to the owner `projects`, as the system builds it."""
    provider = build_provider(GitSettings(repos_dir=tmp_path / "repos"), data_dir=tmp_path)
    assert isinstance(provider, LocalGitProvider)
    return provider


async def test_the_system_provider_reaches_only_its_owner(owned: LocalGitProvider) -> None:
    """`projects/x` is reachable; another owner's repository is refused before any disk access."""
    repo = await owned.create_repo("projects/shop-12345678")
    assert repo.full_name == "projects/shop-12345678"
    for call in (
        owned.get_repo("victims/shop-12345678"),
        owned.create_repo("victims/shop-12345678"),
        owned.head_of("victims/shop-12345678", "main"),
        owned.commit_exists("victims/shop-12345678", "0" * 40),
    ):
        with pytest.raises(RepoOutsideRootError, match="not under the owner 'projects'"):
            await call
    assert not (owned.root / "victims").exists()


async def test_a_symlinked_repository_leading_outside_the_root_is_refused(
    owned: LocalGitProvider, tmp_path: Path
) -> None:
    """A repository path (or owner directory) that is a symlink out of the root is refused."""
    outside = LocalGitProvider(tmp_path / "elsewhere")
    await outside.create_repo("victims/secret")
    (owned.root / "projects").mkdir(parents=True)
    (owned.root / "projects" / "link.git").symlink_to(outside.path_of("victims/secret"))
    with pytest.raises(RepoOutsideRootError, match="resolves outside"):
        await owned.get_repo("projects/link")
    open_owner = LocalGitProvider(tmp_path / "repos2")
    (tmp_path / "repos2").mkdir()
    (tmp_path / "repos2" / "evil").symlink_to(outside.root / "victims")
    with pytest.raises(RepoOutsideRootError, match="resolves outside"):
        await open_owner.head_of("evil/secret", "main")


@pytest.mark.parametrize("name", ["projects/..", "../projects/x", "projects/../x", "projects/.x"])
async def test_dot_dot_never_reaches_the_file_system(owned: LocalGitProvider, name: str) -> None:
    """`..` and dot-names are not repository names at all."""
    with pytest.raises(RepoNameError):
        await owned.get_repo(name)


@pytest.fixture
async def github(tmp_path: Path) -> AsyncIterator[tuple[GitHubProvider, FakeGitHub]]:
    """A GitHub provider restricted to the organisation `acme`, on the fake API."""
    (tmp_path / "gh").mkdir()
    fake = FakeGitHub(tmp_path / "gh", TOKEN)
    provider = GitHubProvider(SecretStr(TOKEN), transport=fake.transport(), owner="acme")
    try:
        yield provider, fake
    finally:
        await provider.aclose()


async def test_github_refuses_another_owner_without_calling_the_api(
    github: tuple[GitHubProvider, FakeGitHub],
) -> None:
    """Under owner `acme`, `octo/app` is refused and no request reaches GitHub; `ACME/x`
    (GitHub owners ignore case) is allowed."""
    provider, fake = github
    with pytest.raises(RepoOutsideRootError):
        await provider.create_repo("octo/app")
    with pytest.raises(RepoOutsideRootError):
        await provider.head_of("octo/app", "main")
    assert fake.requests == []
    assert await provider.get_repo("ACME/app") is None
    assert fake.requests == [("GET", "/repos/ACME/app")]


def test_the_owner_setting_is_a_plain_name() -> None:
    """`git.owner` refuses separators, dots first and leading dashes."""
    for bad in ("a/b", "..", ".hidden", "-x", "", "a b"):
        with pytest.raises(ValueError, match="owner"):
            GitSettings(owner=bad)


async def test_a_branch_that_reads_as_an_option_is_refused(owned: LocalGitProvider) -> None:
    """A branch name starting with `-` never reaches git's argv."""
    await owned.create_repo("projects/shop-12345678")
    with pytest.raises(ValueError, match="not a branch name"):
        await owned.head_of("projects/shop-12345678", "--upload-pack=touch PWNED")
