"""Hostile project names through the repository naming (`shared.git.naming`) and the local
provider: the derived repository is `<owner>/<slug>-<id8>` with a bounded name of
`[a-z0-9-]`, the provider accepts it, and the bare repository lands directly under the owner's
directory, nowhere else; branches derive from task ids, never from names."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from services.langgraph.naming import repo_full_name_of
from services.langgraph.settings import LanggraphSettings
from shared.contracts import ProjectDTO, ProjectStatus
from shared.git import GitSettings, LocalGitProvider, build_provider, split_full_name
from shared.git.naming import repo_full_name, slug
from tests.support.hostile import HOSTILE_NAMES, PWNED

PROJECT_ID = "3f1c2a9e-0000-4000-8000-000000000000"
IDS = [f"{index}:{name[:16]!r}" for index, name in enumerate(HOSTILE_NAMES)]


@pytest.mark.parametrize("name", HOSTILE_NAMES, ids=IDS)
def test_a_hostile_name_gives_a_tame_bounded_repository_name(name: str) -> None:
    """The slug is at most 60 characters of `[a-z0-9-]`, never starting with a dash; the full
    name passes the providers' own check; langgraph derives the same one."""
    assert re.fullmatch(r"[a-z0-9][a-z0-9-]{0,59}", slug(name)), slug(name)
    full_name = repo_full_name("projects", PROJECT_ID, name)
    owner, repo = split_full_name(full_name)
    assert (owner, repo.removeprefix(slug(name))) == ("projects", "-3f1c2a9e")
    project = ProjectDTO(id=PROJECT_ID, name=name, status=ProjectStatus.DRAFT)
    assert repo_full_name_of(project, owner="projects") == full_name


def _entries(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.iterdir())


@pytest.mark.parametrize("name", HOSTILE_NAMES, ids=IDS)
async def test_a_hostile_name_creates_its_repository_under_the_root_only(
    name: str, tmp_path: Path
) -> None:
    """The system's provider creates the bare repository at `<root>/projects/<name>.git`;
    nothing else appears under the data directory, and no command of the name runs."""
    provider = build_provider(GitSettings(repos_dir=tmp_path / "repos"), data_dir=tmp_path)
    assert isinstance(provider, LocalGitProvider)
    full_name = repo_full_name("projects", PROJECT_ID, name)
    await provider.create_repo(full_name)
    path = provider.path_of(full_name)
    assert (path / "HEAD").is_file()
    assert path.resolve().parent == provider.root / "projects"
    assert _entries(tmp_path) == ["repos"]
    assert _entries(tmp_path / "repos") == ["projects"]
    assert _entries(tmp_path / "repos" / "projects") == [path.name]
    assert not PWNED.exists()


def test_branches_come_from_task_ids_not_names() -> None:
    """The developer branch template names only the task (an id the API makes)."""
    template = LanggraphSettings().branch_template
    assert set(re.findall(r"{(\w+)}", template)) <= {"task_id", "project_id"}
