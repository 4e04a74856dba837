"""Names the flows derive: repositories of projects, branches, the callback stream."""

from __future__ import annotations

import re
from urllib.parse import urlparse

from shared import registry
from shared.contracts import ProjectDTO, ProjectStatus
from shared.registry import Actor

__all__ = [
    "SCAFFOLDED",
    "full_name_from_url",
    "repo_full_name_of",
    "results_stream",
    "slug",
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

_NOT_SLUG = re.compile(r"[^a-z0-9]+")


def results_stream() -> str:
    """langgraph's callback stream, where scaffolder and infra-service send their results."""
    return registry.get("results:{actor}").format(actor=Actor.LANGGRAPH.value)


def slug(name: str) -> str:
    """A repository-safe form of a project name: `My Bot!` → `my-bot`."""
    return _NOT_SLUG.sub("-", name.lower()).strip("-")[:60] or "project"


def full_name_from_url(url: str) -> str | None:
    """`owner/name` of a repository URL (`file:///r/owner/name.git`, `https://h/owner/name`)."""
    path = urlparse(url).path.rstrip("/")
    parts = [part for part in path.split("/") if part]
    if len(parts) < 2:
        return None
    name = parts[-1].removesuffix(".git")
    return f"{parts[-2]}/{name}" if name else None


def repo_full_name_of(project: ProjectDTO, *, owner: str) -> str:
    """The repository of a project: from its URL once it has one, else `owner/<slug>-<id8>`."""
    if project.repository_url:
        found = full_name_from_url(project.repository_url)
        if found:
            return found
    short_id = _NOT_SLUG.sub("", project.id.lower())[:8]
    return f"{owner}/{slug(project.name)}-{short_id}"
