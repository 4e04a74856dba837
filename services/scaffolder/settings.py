"""Settings of the scaffolder (environment prefix `ORCHESTRATOR_SCAFFOLDER_`, nested `__`).

Built once in `main` from the system's `Settings` (`ScaffolderSettings.for_system`); tests
build `ScaffolderSettings(...)` directly. Every field has an embedded default: repositories
are local bare repositories under `<data_dir>/repos`, templates are the ones shipped here.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.git import GitIdentity, GitSettings
from shared.settings import Settings

__all__ = ["TEMPLATES_DIR", "ScaffolderSettings"]

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
"""The templates shipped with the scaffolder: one directory per module."""


class ScaffolderSettings(BaseSettings):
    """What the scaffolder needs; every field has an embedded default."""

    model_config = SettingsConfigDict(
        env_prefix="ORCHESTRATOR_SCAFFOLDER_", env_nested_delimiter="__", extra="ignore"
    )

    data_dir: Path = Path("var")
    git: GitSettings = Field(default_factory=GitSettings)
    templates_dir: Path = TEMPLATES_DIR
    concurrency: int = 2
    """Messages handled at once."""
    max_attempts: int = 3
    """Deliveries of one message before it goes to the dead-letter stream."""
    git_timeout_s: float = 120.0
    """Deadline of one git network operation (push)."""
    author_name: str = "codegen-scaffolder"
    author_email: str = "scaffolder@codegen.local"

    @classmethod
    def for_system(cls, settings: Settings) -> ScaffolderSettings:
        """Scaffolder settings under the system's data directory (env overrides the rest)."""
        return cls(data_dir=settings.data_dir)

    @property
    def work_dir(self) -> Path:
        """Where working copies are rendered before they are pushed (emptied after each)."""
        return (self.data_dir / "scaffolder").resolve()

    @property
    def identity(self) -> GitIdentity:
        """Author and committer of the scaffold commit."""
        return GitIdentity(name=self.author_name, email=self.author_email)
