"""An existing repository imported with the CLI, then developed and deployed like any
project: `orchestrator up`, `project import --repo <local bare repo>`, an engineering task
(built-in agent), a deploy whose URL answers the new endpoint."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

import httpx
import pytest

from services.scaffolder.render import CopierRenderer, render_project
from services.scaffolder.settings import TEMPLATES_DIR
from tests.api.test_project_import import _git
from tests.support.system import UpSystem


def _existing_app(root: Path) -> Path:
    """A repository made elsewhere: a FastAPI app on `master` (not the system's `main`)."""
    work = root / "work"
    work.mkdir(parents=True)
    renderer = CopierRenderer()
    try:
        asyncio.run(
            render_project(
                work,
                renderer=renderer,
                templates_dir=TEMPLATES_DIR,
                modules=["backend"],
                project_name="legacy",
                repo_full_name="someone/legacy",
            )
        )
    finally:
        renderer.close()
    _git("init", "-q", "-b", "master", cwd=work)
    _git("add", "-A", cwd=work)
    _git("commit", "-qm", "the app as it was", cwd=work)
    bare = root / "legacy.git"
    _git("clone", "-q", "--bare", str(work), str(bare))
    return bare


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_an_imported_repository_is_developed_and_deployed(
    up_system: UpSystem, tmp_path: Path
) -> None:
    """import → the project is scaffolded with the source's history on main → an engineering
    task commits on top of it → a deploy serves it (the new /hello answers)."""
    source = _existing_app(tmp_path / "sources")
    refused = up_system.cli("project", "import", "bad", "--repo", "--upload-pack=touch", "--json")
    assert refused.returncode != 0
    assert "repo_url" in refused.stderr
    assert "must not start with '-'" in refused.stderr
    imported = up_system.cli("project", "import", "legacy", "--repo", str(source), "--json")
    assert imported.returncode == 0, imported.stderr
    project = json.loads(imported.stdout)
    assert project["status"] == "scaffolded"
    original = _git("rev-parse", "master", cwd=source)
    heads = _git("ls-remote", project["repository_url"])
    assert f"{original}\trefs/heads/main" in heads

    task = up_system.finish(project["id"], "--spec", "add a /hello endpoint")
    commit = task.result["commit_sha"]
    log = subprocess.run(
        ["git", "--git-dir", project["repository_url"].removeprefix("file://"), "log",
         "--format=%H", "main"],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    assert log[0] == commit
    assert original in log  # developed on top of the imported history

    deploy = up_system.finish(project["id"], "--type", "deploy", timeout_s=200)
    url = deploy.result["deployed_url"]
    hello = httpx.get(f"{url.rstrip('/')}/hello", timeout=5)
    assert (hello.status_code, hello.json()) == (200, {"message": "Hello from /hello!"})
