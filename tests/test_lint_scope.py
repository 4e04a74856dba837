"""`make lint` looks only at the project's own files: after `make up`, var/ holds the deployed
apps' sources (each with a `tests` package) and mypy must not walk them."""

from __future__ import annotations

import shutil
import subprocess
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MYPY = ROOT / ".venv" / "bin" / "mypy"


def _tree(tmp_path: Path, *, exclude_gitignore: bool) -> Path:
    """A project with the repository's .gitignore and mypy settings (the gitignore switch
    as given), a `tests` package of its own and a deployed app's under var/."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]
    project = tmp_path / "project"
    project.mkdir(parents=True)
    shutil.copy(ROOT / ".gitignore", project / ".gitignore")
    (project / "mypy.ini").write_text(
        "[mypy]\nstrict = True\n"
        f"exclude_gitignore = {exclude_gitignore}\n"
        f"exclude = {'|'.join(config['exclude'])}\n"
    )
    for package in (project / "tests", project / "var" / "apps" / "shop" / "tests"):
        package.mkdir(parents=True)
        (package / "__init__.py").write_text("")
        (package / "test_x.py").write_text("def test_x() -> None:\n    assert True\n")
    return project


def _mypy(project: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(MYPY), "--no-incremental", "--config-file", "mypy.ini", "."],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_project_mypy_settings_exclude_what_git_ignores() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]
    assert config.get("exclude_gitignore") is True
    assert "/var/" in (ROOT / ".gitignore").read_text().splitlines()


def test_mypy_skips_var_with_the_project_settings_and_trips_without(tmp_path: Path) -> None:
    """With the settings, `mypy .` passes next to var/; without the gitignore switch it
    reports the duplicate `tests` module (the failure `make lint` had after `make up`)."""
    checked = _mypy(_tree(tmp_path / "on", exclude_gitignore=True))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tripped = _mypy(_tree(tmp_path / "off", exclude_gitignore=False))
    assert tripped.returncode != 0
    assert "Duplicate module named" in tripped.stdout + tripped.stderr
