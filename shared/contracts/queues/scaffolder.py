"""`scaffolder:queue`: langgraph → scaffolder. Initialise a project's structure."""

from __future__ import annotations

from shared.contracts.base import BaseMessage

__all__ = ["ScaffolderMessage"]


class ScaffolderMessage(BaseMessage):
    """Initialize project structure."""

    project_id: str
    repo_full_name: str
    """"org/repo"."""
    project_name: str
    modules: list[str]
    """For example ["backend", "telegram"]."""
