"""GitHubProvider against a fake REST API and a real smart-HTTP git server that needs the token."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from shared.git import (
    GitCommandError,
    GitHubProvider,
    GitSettings,
    LocalGitProvider,
    ProviderError,
    RepoNotFoundError,
    build_provider,
    commit_all,
    push,
    resolve_token_ref,
    rev_parse,
)
from tests.git.fake_github import FakeGitHub
from tests.git.git_http_server import serve_git

TOKEN = "ghp_TestToken0123456789abcdef"


@pytest.fixture
def fake(tmp_path: Path) -> FakeGitHub:
    """A fake GitHub whose repositories live under tmp_path/gh."""
    root = tmp_path / "gh"
    root.mkdir()
    return FakeGitHub(root, TOKEN)


@pytest.fixture
async def github(fake: FakeGitHub) -> AsyncIterator[GitHubProvider]:
    """A provider talking to the fake API."""
    provider = GitHubProvider(
        SecretStr(TOKEN), api_url="https://api.github.example", transport=fake.transport()
    )
    try:
        yield provider
    finally:
        await provider.aclose()


async def test_create_under_the_user_then_reuse(github: GitHubProvider, fake: FakeGitHub) -> None:
    """A repo of the token's user is created with POST /user/repos once; later calls reuse it."""
    repo = await github.create_repo("octo/app", description="demo")
    again = await github.create_repo("octo/app")
    assert repo == again
    assert repo.full_name == "octo/app"
    posts = [path for method, path in fake.requests if method == "POST"]
    assert posts == ["/user/repos"]


async def test_create_under_an_organisation(github: GitHubProvider, fake: FakeGitHub) -> None:
    """A repo of another owner is created with POST /orgs/{owner}/repos."""
    await github.create_repo("acme/app")
    assert ("POST", "/orgs/acme/repos") in fake.requests
    assert (fake.root / "acme" / "app.git" / "HEAD").is_file()


async def test_head_and_commits_of_a_missing_repo(github: GitHubProvider) -> None:
    """An absent repository has no head and no commits; files_changed raises."""
    assert await github.get_repo("octo/none") is None
    assert await github.head_of("octo/none", "main") is None
    assert not await github.commit_exists("octo/none", "a" * 40)
    with pytest.raises(RepoNotFoundError):
        await github.files_changed("octo/none", "a" * 40)


async def test_push_over_http_with_the_token_in_the_environment(
    github: GitHubProvider, fake: FakeGitHub, worktree: Path
) -> None:
    """git pushes with the token from GitAuth (env), never in argv; the API then sees the commit."""
    basic = base64.b64encode(f"x-access-token:{TOKEN}".encode()).decode()
    with serve_git(fake.root, f"basic {basic}", TOKEN) as server:
        fake.git_url = server.url
        provider = GitHubProvider(
            SecretStr(TOKEN),
            api_url="https://api.github.example",
            git_url=server.url,
            transport=fake.transport(),
        )
        try:
            repo = await provider.create_repo("octo/app")
            await push(worktree, repo.clone_url, "main", auth=provider.auth())
        finally:
            await provider.aclose()
        assert server.served > 0
        assert not server.token_seen_in_argv
    sha = await rev_parse(worktree, "HEAD")
    assert sha is not None
    assert await github.head_of("octo/app", "main") == sha
    assert await github.commit_exists("octo/app", sha)
    assert await github.files_changed("octo/app", sha) == ["README.md", "src/app.py"]


async def test_push_with_a_wrong_token_fails_without_leaking_it(
    fake: FakeGitHub, worktree: Path
) -> None:
    """A push the server refuses raises GitCommandError whose text holds no token."""
    wrong = "ghp_WrongToken999"
    with serve_git(fake.root, "basic nope", TOKEN) as server:
        fake.git_url = server.url
        provider = GitHubProvider(SecretStr(wrong), git_url=server.url, transport=fake.transport())
        try:
            (fake.root / "octo").mkdir()
            await _init_bare(fake.root / "octo" / "app.git")
            with pytest.raises(GitCommandError) as caught:
                await push(worktree, f"{server.url}/octo/app.git", "main", auth=provider.auth())
        finally:
            await provider.aclose()
        assert server.unauthorized > 0
    assert wrong not in str(caught.value)
    assert wrong not in caught.value.stderr


async def _init_bare(path: Path) -> None:
    await LocalGitProvider(path.parent.parent).create_repo(f"{path.parent.name}/app")


async def test_api_errors_carry_status_but_never_the_token(fake: FakeGitHub) -> None:
    """A refused or failing API call raises ProviderError with the status, without the token."""
    bad = GitHubProvider(SecretStr("ghp_bad_token_value"), transport=fake.transport())
    try:
        with pytest.raises(ProviderError) as caught:
            await bad.get_repo("octo/app")
    finally:
        await bad.aclose()
    assert caught.value.status_code == 401
    assert "ghp_bad_token_value" not in str(caught.value)
    fake.fail_with = 502
    good = GitHubProvider(SecretStr(TOKEN), transport=fake.transport())
    try:
        with pytest.raises(ProviderError, match="HTTP 502"):
            await good.create_repo("octo/app")
    finally:
        await good.aclose()


async def test_transport_failure_is_a_provider_error() -> None:
    """A connection failure becomes ProviderError, not a raw httpx exception."""

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    provider = GitHubProvider(SecretStr(TOKEN), transport=httpx.MockTransport(refuse))
    try:
        with pytest.raises(ProviderError, match="ConnectError"):
            await provider.head_of("octo/app", "main")
    finally:
        await provider.aclose()


def test_token_references(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """env: and file: references resolve; unset, unreadable or unknown ones are refused."""
    monkeypatch.setenv("GH_TOKEN_TEST", " tok-env \n")
    assert resolve_token_ref("env:GH_TOKEN_TEST").get_secret_value() == "tok-env"
    secret_file = tmp_path / "token"
    secret_file.write_text("tok-file\n")
    assert resolve_token_ref(f"file:{secret_file}").get_secret_value() == "tok-file"
    for bad in ("env:GH_TOKEN_UNSET_XYZ", f"file:{tmp_path / 'missing'}", "vault:x", "plain"):
        with pytest.raises(ProviderError):
            resolve_token_ref(bad)


def test_build_provider(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings pick the local provider by default, GitHub with a token reference."""
    local = build_provider(GitSettings(), data_dir=tmp_path)
    assert isinstance(local, LocalGitProvider)
    assert local.root == (tmp_path / "repos").resolve()
    with pytest.raises(ValueError, match="github_token_ref"):
        build_provider(GitSettings(provider="github"), data_dir=tmp_path)
    monkeypatch.setenv("GH_TOKEN_TEST", "tok")
    remote = build_provider(
        GitSettings(provider="github", github_token_ref="env:GH_TOKEN_TEST"), data_dir=tmp_path
    )
    assert isinstance(remote, GitHubProvider)
    assert "tok" not in repr(remote.auth())


async def test_commits_and_a_commit_diff(
    github: GitHubProvider, fake: FakeGitHub, worktree: Path
) -> None:
    """The branch's commits page by limit and offset across GitHub's pages; a commit's diff
    comes with the diff media type and is cut at the size asked for."""
    await github.create_repo("octo/log")
    for number in range(4):
        (worktree / "n.txt").write_text(f"{number}\n")
        await commit_all(worktree, f"change {number}")
    await push(worktree, (fake.root / "octo" / "log.git").as_uri(), "main")
    page = await github.commits("octo/log", "main", limit=3, offset=1)
    assert [c.subject for c in page] == ["change 2", "change 1", "change 0"]
    assert page[0].authored_at.tzinfo is not None
    assert await github.commits("octo/none", "main", limit=3, offset=0) == []
    sha = await rev_parse(worktree, "HEAD")
    assert sha is not None
    diff = await github.commit_diff("octo/log", sha, max_bytes=100_000)
    assert diff.subject == "change 3"
    assert "+3" in diff.patch
    assert not diff.truncated
    cut = await github.commit_diff("octo/log", sha, max_bytes=10)
    assert cut.truncated
    assert len(cut.patch) <= 10
    with pytest.raises(RepoNotFoundError):
        await github.commit_diff("octo/log", "0" * 40, max_bytes=10)
