"""ScaffolderSettings: embedded defaults, environment overrides, derived from the system's."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.scaffolder.settings import TEMPLATES_DIR, ScaffolderSettings
from services.settings import SystemSettings
from shared.settings import Settings


def test_defaults_follow_the_system_data_dir(tmp_path: Path) -> None:
    """Local git, branch main, shipped templates, work dir under the system's data dir."""
    settings = ScaffolderSettings.of(Settings(data_dir=tmp_path))
    assert settings.git.provider == "local"
    assert settings.git.default_branch == "main"
    assert settings.templates_dir == TEMPLATES_DIR
    assert settings.work_dir == (tmp_path / "scaffolder").resolve()


def test_environment_selects_github(monkeypatch: pytest.MonkeyPatch) -> None:
    """ORCHESTRATOR_SCAFFOLDER__GIT__* variables configure the nested git settings."""
    monkeypatch.setenv("ORCHESTRATOR_SCAFFOLDER__GIT__PROVIDER", "github")
    monkeypatch.setenv("ORCHESTRATOR_SCAFFOLDER__GIT__GITHUB_TOKEN_REF", "env:GITHUB_TOKEN")
    monkeypatch.setenv("ORCHESTRATOR_SCAFFOLDER__CONCURRENCY", "5")
    monkeypatch.setenv("ORCHESTRATOR_SCAFFOLDER__DATA_DIR", "/srv/scaffolder")
    settings = ScaffolderSettings.of(SystemSettings(data_dir=Path("/srv/system")))
    assert settings.data_dir == Path("/srv/scaffolder")  # its own beats the system's
    assert settings.git.provider == "github"
    assert settings.git.github_token_ref == "env:GITHUB_TOKEN"
    assert settings.concurrency == 5
