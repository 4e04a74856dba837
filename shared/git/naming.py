"""The one convention for a project's repository: its name is derived from the project.

A project's repository is `<owner>/<slug of its name>-<first 8 hex of its id>`: the system
decides it, from values a user cannot change (the id is the API's, the name is fixed at
creation), under the one owner the git provider is configured for. Every actor derives it
here; nobody reads it back from a URL. The API accepts a `repository_url` only from the
system's own services and only when it names this repository (`names_repository_of`).
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

__all__ = [
    "full_name_from_url",
    "names_repository_of",
    "repo_full_name",
    "repo_name",
    "slug",
]

_NOT_SLUG = re.compile(r"[^a-z0-9]+")
_SLUG_MAX = 60


def slug(name: str) -> str:
    """A path-, branch- and shell-safe form of a label: `My Bot!` → `my-bot` (at most 60
    characters of `[a-z0-9-]`; `project` when nothing is left)."""
    return _NOT_SLUG.sub("-", name.lower()).strip("-")[:_SLUG_MAX] or "project"


def repo_name(project_id: str, project_name: str) -> str:
    """The name part of a project's repository: `<slug>-<id8>`."""
    short_id = _NOT_SLUG.sub("", project_id.lower())[:8]
    return f"{slug(project_name)}-{short_id}"


def repo_full_name(owner: str, project_id: str, project_name: str) -> str:
    """A project's repository under `owner`: `<owner>/<slug>-<id8>`."""
    return f"{owner}/{repo_name(project_id, project_name)}"


def full_name_from_url(url: str) -> str | None:
    """`owner/name` of a repository URL (`file:///r/owner/name.git`, `https://h/owner/name`)."""
    path = urlsplit(url).path.rstrip("/")
    parts = [part for part in path.split("/") if part]
    if len(parts) < 2:
        return None
    name = parts[-1].removesuffix(".git")
    return f"{parts[-2]}/{name}" if name else None


def names_repository_of(url: str, project_id: str, project_name: str) -> bool:
    """True when `url` is a plain repository URL (no credentials, query or fragment, no `..`)
    whose last two parts are `<some owner>/<this project's repository name>`."""
    parts = urlsplit(url)
    if parts.scheme not in ("file", "https", "http", "ssh") or parts.username or parts.password:
        return False
    if parts.query or parts.fragment or ".." in parts.path.split("/"):
        return False
    full_name = full_name_from_url(url)
    return full_name is not None and full_name.split("/")[1] == repo_name(project_id, project_name)
