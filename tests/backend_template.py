"""The shipped backend template, rendered once per test process, as a real git remote.

Tests of the engineering loop need a project whose own checks (`backend/Makefile`'s
`make test`) really run: this renders the template with the real renderer, caches the tree,
and copies it into a new bare repository's first commit on `main`.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from pathlib import Path

from services.scaffolder.render import CopierRenderer, render_project
from services.scaffolder.settings import TEMPLATES_DIR
from shared.git import LocalGitProvider, commit_all, init_worktree, push

__all__ = ["backend_remote", "rendered_backend"]

_CACHE: dict[str, Path] = {}
_LOCK = asyncio.Lock()


async def rendered_backend() -> Path:
    """A directory holding the rendered backend project (shared; copy it, never edit it)."""
    async with _LOCK:
        if "backend" not in _CACHE:
            dest = Path(tempfile.mkdtemp(prefix="backend-template-")) / "project"
            renderer = CopierRenderer(timeout_s=120)
            try:
                await render_project(
                    dest,
                    renderer=renderer,
                    templates_dir=TEMPLATES_DIR,
                    modules=["backend"],
                    project_name="Shop",
                    repo_full_name="projects/shop",
                )
            finally:
                renderer.close()
            _CACHE["backend"] = dest
        return _CACHE["backend"]


async def backend_remote(git: LocalGitProvider, full_name: str) -> str:
    """A bare repository whose `main` holds the rendered backend project; its clone URL."""
    repo = await git.create_repo(full_name)
    if await git.head_of(full_name, "main") is None:
        source = await rendered_backend()
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp) / "w"
            await init_worktree(work)
            shutil.copytree(source, work, dirs_exist_ok=True)
            await commit_all(work, "scaffold the backend")
            await push(work, repo.clone_url, "main")
    return repo.clone_url
