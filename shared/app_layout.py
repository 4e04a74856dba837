"""Where a deployed project lives on the local server, as infra-service lays it out and the
scheduler reads it (its supervisor's restart counts): one convention, kept here so neither
service imports the other."""

from __future__ import annotations

import re
from pathlib import Path

__all__ = ["app_dir_name", "default_local_base_dir", "local_apps_dir"]

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def app_dir_name(project_id: str) -> str:
    """The directory name of a project on a server (stable across deploys); ValueError when
    the id has no usable character."""
    name = _UNSAFE.sub("-", project_id).strip("-.")[:64]
    if not name:
        raise ValueError(f"project id {project_id!r} has no usable characters")
    return name


def local_apps_dir(local_base_dir: Path) -> Path:
    """The projects' directories under the local server's base directory."""
    return local_base_dir / "apps"


def default_local_base_dir(data_dir: Path) -> Path:
    """The local server's base directory when none is configured."""
    return (data_dir / "servers" / "local").resolve()
