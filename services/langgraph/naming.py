"""Names the flows derive: repositories of projects, branches, the callback stream."""

from __future__ import annotations

from services.langgraph.errors import RepositoryMismatchError
from shared import registry
from shared.contracts import ProjectDTO, ProjectStatus
from shared.git.naming import full_name_from_url, repo_full_name
from shared.registry import Actor

__all__ = [
    "SCAFFOLDED",
    "repo_full_name_of",
    "results_stream",
]

SCAFFOLDED = frozenset(
    {
        ProjectStatus.SCAFFOLDED,
        ProjectStatus.DEVELOPING,
        ProjectStatus.TESTING,
        ProjectStatus.DEPLOYING,
        ProjectStatus.ACTIVE,
    }
)
"""Project statuses that mean its repository holds the scaffold."""


def results_stream() -> str:
    """langgraph's callback stream, where scaffolder and infra-service send their results."""
    return registry.get("results:{actor}").format(actor=Actor.LANGGRAPH.value)


def repo_full_name_of(project: ProjectDTO, *, owner: str, step: str = "prepare") -> str:
    """The repository of a project, always derived from the project (`<owner>/<slug>-<id8>`),
    never read from its `repository_url`. A recorded URL that names another repository is a
    record the system did not write: `RepositoryMismatchError`, and the flow touches nothing."""
    full_name = repo_full_name(owner, project.id, project.name)
    recorded = full_name_from_url(project.repository_url) if project.repository_url else None
    if project.repository_url and recorded != full_name:
        raise RepositoryMismatchError(
            step,
            f"the project's record names the repository {recorded or '(unreadable URL)'}, "
            f"not its own ({full_name}); nothing was cloned or pushed",
        )
    return full_name
