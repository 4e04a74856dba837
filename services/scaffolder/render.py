"""Render the shipped copier templates into a working copy (copier's Python API, in a child).

Layout of a scaffolded repository: the `_project` template at the root (README, .gitignore),
then one directory per module, rendered from `templates/<module>/`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from services.scaffolder.errors import TemplateRenderError, UnknownModuleError
from shared.git.naming import slug

__all__ = [
    "ROOT_TEMPLATE",
    "CopierRenderer",
    "available_modules",
    "check_modules",
    "one_line",
    "render_project",
    "slugify",
]

ROOT_TEMPLATE = "_project"
"""Template of the repository's root files; module templates are the other directories."""


def available_modules(templates_dir: Path) -> list[str]:
    """Modules that have a template, sorted."""
    return sorted(
        entry.name
        for entry in templates_dir.iterdir()
        if entry.is_dir() and not entry.name.startswith(("_", ".")) and _is_template(entry)
    )


def _is_template(path: Path) -> bool:
    return (path / "copier.yml").is_file() or (path / "copier.yaml").is_file()


def check_modules(modules: Sequence[str], templates_dir: Path) -> list[str]:
    """The requested modules, de-duplicated in order; `UnknownModuleError` for any unknown."""
    known = available_modules(templates_dir)
    wanted = list(dict.fromkeys(modules))
    if not wanted:
        raise UnknownModuleError(f"no module requested; available: {', '.join(known)}")
    unknown = [module for module in wanted if module not in known]
    if unknown:
        raise UnknownModuleError(
            f"no template for module(s) {', '.join(unknown)}; available: {', '.join(known)}"
        )
    return wanted


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def one_line(text: str, *, max_length: int = 100) -> str:
    """`text` as one printable line of at most `max_length` characters, for a commit message
    or a repository's description: runs of whitespace and of unprintable characters
    (controls, line separators, bidirectional controls, lone surrogates) become one space."""
    printable = "".join(char if char.isprintable() else " " for char in text[: max_length * 4])
    return " ".join(printable.split())[:max_length].rstrip()


def slugify(text: str) -> str:
    """Lower-case, dash-separated ASCII of at most 60 characters: "My Shop!" → "my-shop";
    "project" when nothing is left (the repository naming's own `slug`)."""
    return slug(text)


def toml_escape(text: str) -> str:
    """`text` for the inside of a TOML basic string: backslash, quote and every control
    character escaped; everything else as it is."""
    return "".join(
        f"\\u{ord(char):04X}" if ord(char) < 0x20 or ord(char) == 0x7F else char
        for char in text.replace("\\", "\\\\").replace('"', '\\"')
    )


def _job(
    dest: Path, templates_dir: Path, modules: list[str], data: dict[str, str]
) -> dict[str, Any]:
    """The renderer's job: absolute paths, since the child may run anywhere."""
    return {
        "dest": os.path.abspath(dest),
        "templates_dir": os.path.abspath(templates_dir),
        "root_template": ROOT_TEMPLATE,
        "modules": modules,
        "data": data,
    }


class CopierRenderer:
    """A long-lived child process (`copier_job`) that renders one job at a time.

    Started on first use, restarted after it dies or times out; its pipes are blocking and
    used from a worker thread under a lock, so any event loop may call `render`, and a
    cancelled caller never leaves an answer unread."""

    def __init__(self, *, timeout_s: float = 300.0) -> None:
        self._timeout_s = timeout_s
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None

    def _ensure(self) -> subprocess.Popen[bytes]:
        if self._process is None or self._process.poll() is not None:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "services.scaffolder.copier_job"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                start_new_session=True,
            )
        return self._process

    def _render(self, job: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            process = self._ensure()
            assert process.stdin is not None
            assert process.stdout is not None
            timed_out = threading.Event()

            def expire() -> None:
                timed_out.set()
                process.kill()

            watchdog = threading.Timer(self._timeout_s, expire)
            watchdog.start()
            try:
                process.stdin.write(json.dumps(job).encode() + b"\n")
                process.stdin.flush()
                line = process.stdout.readline()
            except OSError:
                line = b""
            finally:
                watchdog.cancel()
            if not line:
                self._stop(process)
                if timed_out.is_set():
                    raise TemplateRenderError(f"rendering timed out after {self._timeout_s}s")
                raise TemplateRenderError(f"the renderer exited with status {process.returncode}")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def _stop(self, process: subprocess.Popen[bytes]) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        for pipe in (process.stdin, process.stdout):
            if pipe is not None:
                pipe.close()
        self._process = None

    async def render(self, job: dict[str, Any]) -> list[str]:
        """Render `job`; the files written, or `TemplateRenderError`."""
        answer = await asyncio.to_thread(self._render, job)
        if "error" in answer:
            raise TemplateRenderError(str(answer["error"]))
        return [str(name) for name in answer["files"]]

    def close(self) -> None:
        """Stop the child (a later `render` starts a new one)."""
        with self._lock:
            if self._process is not None:
                self._stop(self._process)


async def render_project(
    dest: Path,
    *,
    renderer: CopierRenderer,
    templates_dir: Path,
    modules: Sequence[str],
    project_name: str,
    repo_full_name: str,
) -> list[str]:
    """Render the root and every module into `dest`; returns the files written (relative).

    copier runs in the renderer's child process, so its working-directory changes never
    touch this process; `TemplateRenderError` when a template fails or time runs out.

    The project's name is a free label: templates put it into code only as a literal
    (`| tojson`), and into paths, names, comments and docstrings only as its slug. A lone
    surrogate (no file can hold one) becomes U+FFFD."""
    wanted = check_modules(modules, templates_dir)
    project_name = _LONE_SURROGATE.sub("\ufffd", project_name)
    project_slug = slugify(project_name)
    if project_slug == "project":  # nothing usable in the name: fall back to the repository's
        project_slug = slugify(repo_full_name.rpartition("/")[2])
    data = {
        "project_name": project_name,
        "project_name_py": repr(project_name),
        "project_name_toml": toml_escape(project_name),
        "project_slug": project_slug,
        "repo_full_name": repo_full_name,
    }
    return await renderer.render(_job(dest, templates_dir, wanted, data))
