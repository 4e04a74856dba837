"""Settings of the scaffolder: the tree's `scaffolder` section (`ORCHESTRATOR_SCAFFOLDER__*`).

Read once in `main` (`ScaffolderSettings.of(settings)`); tests build `ScaffolderSettings(...)`
directly. Every field has an embedded default: repositories
are local bare repositories under `<data_dir>/repos`, templates are the ones shipped here.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from shared.git import GitIdentity, GitSettings
from shared.settings import Section, Settings

__all__ = ["TEMPLATES_DIR", "ScaffolderSettings"]

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
"""The templates shipped with the scaffolder: one directory per module."""


class ScaffolderSettings(Section):
    """What the scaffolder needs; every field has an embedded default."""

    section = "scaffolder"

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

    def within(self, system: Settings) -> ScaffolderSettings:
        """Under the system's data directory unless the section names its own."""
        if "data_dir" in self.model_fields_set:
            return self
        return self.model_copy(update={"data_dir": system.data_dir})

    @property
    def work_dir(self) -> Path:
        """Where working copies are rendered before they are pushed (emptied after each)."""
        return (self.data_dir / "scaffolder").resolve()

    @property
    def identity(self) -> GitIdentity:
        """Author and committer of the scaffold commit."""
        return GitIdentity(name=self.author_name, email=self.author_email)
