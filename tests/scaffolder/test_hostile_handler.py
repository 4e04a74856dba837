"""Hostile project names through the scaffolder's handler (the templates themselves are
pinned in test_hostile_names.py): the repository derived from the name lands under the git
provider's root with a bounded name, nothing else is written outside the data directory, no
command the name carries runs, and a name no file or argument can hold is made printable."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.scaffolder.handlers import ScaffolderDeps, handle_scaffolder_message
from shared.contracts import ProjectStatus
from shared.git import LocalGitProvider, clone, run_git
from tests.support.hostile import HOSTILE_NAMES, PWNED
from tests.support.scaffolder import FakeProjects, make_message

PROJECT_ID = "3f1c2a9e-0000-4000-8000-000000000000"


def _entries(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.iterdir())


@pytest.mark.slow
@pytest.mark.parametrize(
    "name", HOSTILE_NAMES, ids=[f"{i}:{n[:16]!r}" for i, n in enumerate(HOSTILE_NAMES)]
)
async def test_a_hostile_name_is_scaffolded_inside_its_directories(
    name: str,
    deps: ScaffolderDeps,
    provider: LocalGitProvider,
    projects: FakeProjects,
    tmp_path: Path,
) -> None:
    """The scaffold succeeds; its repository is `<root>/projects/<slug>-<id8>.git` (at most
    60 + 9 characters of `[a-z0-9-]`), its commit message and description are one printable
    line, and nothing appears outside the data directory."""
    message = make_message(project_id=PROJECT_ID, project_name=name)
    result = await handle_scaffolder_message(message, deps)
    assert (result.status, result.error) == ("success", None)
    path = provider.path_of(message.repo_full_name).resolve()
    assert path.parent == provider.root / "projects"
    assert _entries(provider.root) == ["projects"]
    assert _entries(path.parent) == [path.name]
    stem = path.name.removesuffix(".git")
    assert len(stem) <= 60 + len("-3f1c2a9e")
    assert stem.endswith("-3f1c2a9e")
    assert set(stem) <= set("abcdefghijklmnopqrstuvwxyz0123456789-")
    description = (path / "description").read_text(encoding="utf-8")
    _, subject, _ = await run_git("log", "-1", "--format=%s", "main", cwd=path)
    for text in (description.strip(), subject.strip()):
        assert text.isprintable(), text[:80]
    assert deps.settings.data_dir == tmp_path
    assert set(_entries(tmp_path)) <= {"repos", deps.settings.work_dir.name}
    assert ProjectStatus.SCAFFOLDED in [call.status for call in projects.calls]
    copy = tmp_path / "copy"
    await clone(path.as_uri(), copy, branch="main")
    assert (copy / "backend" / "app" / "main.py").is_file()
    assert not PWNED.exists()
