"""ScaffolderSettings: embedded defaults, environment overrides, derived from the system's."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.scaffolder.settings import TEMPLATES_DIR, ScaffolderSettings
from shared.settings import Settings


def test_defaults_follow_the_system_data_dir(tmp_path: Path) -> None:
    """Local git, branch main, shipped templates, work dir under the system's data dir."""
    settings = ScaffolderSettings.for_system(Settings(data_dir=tmp_path))
    assert settings.git.provider == "local"
    assert settings.git.default_branch == "main"
    assert settings.templates_dir == TEMPLATES_DIR
    assert settings.work_dir == (tmp_path / "scaffolder").resolve()


def test_environment_selects_github(monkeypatch: pytest.MonkeyPatch) -> None:
    """ORCHESTRATOR_SCAFFOLDER_GIT__* variables configure the nested git settings."""
    monkeypatch.setenv("ORCHESTRATOR_SCAFFOLDER_GIT__PROVIDER", "github")
    monkeypatch.setenv("ORCHESTRATOR_SCAFFOLDER_GIT__GITHUB_TOKEN_REF", "env:GITHUB_TOKEN")
    monkeypatch.setenv("ORCHESTRATOR_SCAFFOLDER_CONCURRENCY", "5")
    settings = ScaffolderSettings()
    assert settings.git.provider == "github"
    assert settings.git.github_token_ref == "env:GITHUB_TOKEN"
    assert settings.concurrency == 5
