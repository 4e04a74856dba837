"""Render a project with copier in a process of its own (`-m services.scaffolder.copier_job`).

copier changes the process's working directory while it renders (it probes the template
with `os.chdir`), which must never happen inside a process running other actors' coroutines
and threads. So the scaffolder renders here, in a long-lived child: one JSON job per line on
stdin, one JSON answer per line on stdout (`{"files": [...]}` or `{"error": "..."}`).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import copier
import jinja2
from copier.errors import CopierError

__all__ = ["main", "render_all"]


class _RenderFailedError(Exception):
    """One template could not be rendered."""


def _copy(template: Path, dest: Path, data: dict[str, Any]) -> None:
    try:
        copier.run_copy(
            str(template),
            dest,
            data=data,
            defaults=True,
            overwrite=True,
            quiet=True,
            unsafe=False,
            skip_tasks=True,
        )
    except (CopierError, jinja2.TemplateError, OSError, ValueError) as error:
        raise _RenderFailedError(
            f"rendering template {template.name!r} failed: {type(error).__name__}: {error}"
        ) from error


def render_all(
    dest: Path, templates_dir: Path, root: str, modules: list[str], data: dict[str, Any]
) -> list[str]:
    """Render the `root` template into `dest` and each module into `dest/<module>`."""
    _copy(templates_dir / root, dest, {**data, "modules": modules})
    for module in modules:
        _copy(templates_dir / module, dest / module, {**data, "module": module})
    return sorted(path.relative_to(dest).as_posix() for path in dest.rglob("*") if path.is_file())


def _answer(job: dict[str, Any]) -> dict[str, Any]:
    try:
        files = render_all(
            Path(job["dest"]),
            Path(job["templates_dir"]),
            str(job["root_template"]),
            list(job["modules"]),
            job["data"],
        )
    except _RenderFailedError as error:
        return {"error": str(error)}
    return {"files": files}


def main() -> int:
    """Serve jobs: one JSON job per line on stdin, one JSON answer per line on stdout."""
    answers = sys.stdout
    sys.stdout = sys.stderr  # anything copier prints must not corrupt the answers
    for line in sys.stdin:
        if line.strip():
            answers.write(json.dumps(_answer(json.loads(line))) + "\n")
            answers.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
