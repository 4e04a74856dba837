"""`POST /api/projects/import`: an existing repository's branches and tags mirrored into the
project's own repository (real git, a local provider); bad sources refused, nothing created."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from services.api.app import create_app
from services.api.db import Database
from services.api.projects.importer import ProjectImporter
from shared.api_client import ApiClient, ValidationError
from shared.api_client.errors import ApiStatusError
from shared.api_client.schemas import ProjectImportBody
from shared.contracts import ProjectStatus
from shared.git import LocalGitProvider
from shared.git.naming import repo_name
from shared.redis_server import free_port
from tests.support.api import ApiHarness

OWNER = "projects"


def _git(*args: str, cwd: Path | None = None) -> str:
    env = {
        "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t", "GIT_CONFIG_GLOBAL": "/dev/null", "HOME": "/tmp",
        "PATH": "/usr/bin:/bin",
    }  # fmt: skip
    done = subprocess.run(
        ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def make_source(root: Path, *, branch: str = "master") -> Path:
    """A bare repository with an app on `branch`, a `feature` branch and a tag."""
    work = root / "work"
    work.mkdir(parents=True)
    _git("init", "-q", "-b", branch, cwd=work)
    (work / "app.py").write_text("print('hello')\n")
    (work / ".orchestrator").mkdir()
    (work / ".orchestrator" / "checks.toml").write_text(
        '[[checks]]\nname = "compiles"\ncommand = "python -m py_compile app.py"\n'
    )
    _git("add", "-A", cwd=work)
    _git("commit", "-qm", "app", cwd=work)
    _git("tag", "v1", cwd=work)
    _git("checkout", "-qb", "feature", cwd=work)
    (work / "feature.txt").write_text("wip\n")
    _git("add", "-A", cwd=work)
    _git("commit", "-qm", "wip", cwd=work)
    _git("checkout", "-q", branch, cwd=work)
    bare = root / "shop.git"
    _git("clone", "-q", "--bare", str(work), str(bare))
    return bare


def _importer(tmp_path: Path) -> ProjectImporter:
    repos = tmp_path / "repos"
    return ProjectImporter(
        git=LocalGitProvider(repos, owner=OWNER),
        owner=OWNER,
        default_branch="main",
        work_dir=tmp_path / "imports",
        local_roots=[tmp_path],
        forbidden=[repos],
    )


@pytest.fixture
def importing(api: ApiHarness, tmp_path: Path) -> ApiHarness:
    """The API with an importer: local provider under tmp, imports allowed from tmp."""
    api.app = create_app(api.database, importer=_importer(tmp_path))
    return api


def _body(url: str, name: str = "shop") -> ProjectImportBody:
    return ProjectImportBody(name=name, repo_url=url)


async def test_a_local_repository_is_mirrored_into_the_projects_own(
    importing: ApiHarness, tmp_path: Path
) -> None:
    """Every branch and tag arrives; the source's HEAD branch is also `main`; the project is
    `scaffolded` with its own repository."""
    source = make_source(tmp_path / "src")
    user_id, token = await importing.user(501)
    async with importing.client(token) as api:
        project = await api.import_project(_body(str(source)))
        again = await api.get_project(project.id)
    assert again.status == ProjectStatus.SCAFFOLDED
    assert again.owner_id == user_id
    assert again.repository_url is not None
    assert again.repository_url.endswith(f"/{OWNER}/{repo_name(project.id, 'shop')}.git")
    heads = _git("ls-remote", again.repository_url)
    refs = {line.split()[1]: line.split()[0] for line in heads.splitlines()}
    assert refs["refs/heads/main"] == refs["refs/heads/master"]
    assert "refs/heads/feature" in refs
    assert "refs/tags/v1" in refs
    assert refs["refs/heads/master"] == _git("rev-parse", "master", cwd=source)
    assert list((tmp_path / "imports").iterdir()) == []  # the working copy is gone


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("--upload-pack=touch%20/tmp/pwned-import", "must not start with '-'"),
        ("ext::sh -c touch% /tmp/pwned-import", "one word"),
        ("ext::touch", "remote-helper"),
        ("https://alice:s3cr3t-pw@example.com/a/b.git", "must not hold credentials"),
        ("ssh://-oProxyCommand=touch/x", "must not start with '-'"),
        ("ftp://example.com/a.git", "scheme 'ftp' is not allowed"),
        ("relative/path", "not a git URL"),
        ("/etc", "outside the directories allowed"),
    ],
)
async def test_bad_urls_are_refused_clearly_and_create_nothing(
    importing: ApiHarness, url: str, reason: str
) -> None:
    """Each refusal names `repo_url` and why; never echoes a credential; no project."""
    async with importing.client(importing.admin_key) as api:
        with pytest.raises(ValidationError) as caught:
            await api.import_project(_body(url), owner_id=(await _admin_user(api)))
        assert caught.value.fields[0].field.endswith("repo_url")
        assert reason in caught.value.fields[0].problem
        assert "s3cr3t-pw" not in str(caught.value.body)
        assert (await api.list_projects()).total == 0
    assert not os.path.exists("/tmp/pwned-import")  # noqa: ASYNC240  # a plain check


async def _admin_user(api: ApiClient) -> int:
    user = await api.find_user(777001)
    if user is None:
        from shared.api_client.schemas import UserCreate

        user = await api.create_user(UserCreate(telegram_id=777001))
    return user.id


async def test_unreadable_sources_are_refused_and_create_nothing(
    importing: ApiHarness, tmp_path: Path
) -> None:
    """Not a repository, an empty one, a missing path, an unreachable host, another
    project's own repository: 422 naming the reason; no project, no repository."""
    (tmp_path / "plain").mkdir()
    empty = tmp_path / "empty.git"
    _git("init", "-q", "--bare", str(empty))
    source = make_source(tmp_path / "src")
    _, token = await importing.user(502)
    async with importing.client(token) as api:
        first = await api.import_project(_body(str(source), "first"))
        assert first.repository_url is not None
        own = first.repository_url.removeprefix("file://")
        cases = {
            str(tmp_path / "plain"): "not a git repository",
            str(empty): "has no branches",
            str(tmp_path / "missing"): "does not exist",
            f"http://127.0.0.1:{free_port()}/x.git": "cannot read the repository",
            own: "outside the directories allowed",
        }
        for url, reason in cases.items():
            with pytest.raises(ValidationError) as caught:
                await api.import_project(_body(url, "second"))
            assert reason in caught.value.fields[0].problem, url
        assert [p.name for p in (await api.list_projects()).items] == ["first"]
    assert len(list((tmp_path / "repos" / OWNER).iterdir())) == 1


async def test_a_user_imports_only_for_themselves_and_without_importer_it_is_503(
    importing: ApiHarness, database: Database, tmp_path: Path
) -> None:
    """A user naming another owner is refused; an API without a git provider says so."""
    source = make_source(tmp_path / "src")
    other_id, _ = await importing.user(503)
    _, token = await importing.user(504)
    async with importing.client(token) as api:
        with pytest.raises(ValidationError) as caught:
            await api.import_project(_body(str(source)), owner_id=other_id)
        assert "only for themselves" in caught.value.fields[0].problem
    plain = ApiHarness(database, create_app(database), importing.admin_key, "")
    async with plain.client(token) as api:
        with pytest.raises(ApiStatusError) as unavailable:
            await api.import_project(_body(str(source)))
    assert unavailable.value.status_code == 503
    assert "no git provider" in unavailable.value.body.message
