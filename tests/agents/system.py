"""`orchestrator up` as root with a real agent CLI against a scripted model: the system the
real-CLI system tests share (the developer flow with Claude Code and with Codex)."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from tests.support.agents import PLANTED_KEY
from tests.support.system import Finished, UpSystem

ADD_ROUTE = """python3 - <<'PY'
import pathlib
marker = "# builtin-agent: new routes go above this line"
for path in sorted(pathlib.Path(".").rglob("main.py")):
    text = path.read_text()
    if marker not in text:
        continue
    lines = text.splitlines(keepends=True)
    at = next(n for n, line in enumerate(lines) if marker in line)
    pad = lines[at][: len(lines[at]) - len(lines[at].lstrip())]
    lines[at:at] = [
        f'{pad}@app.get("/hello")\\n',
        f"{pad}def hello() -> dict[str, str]:\\n",
        f'{pad}    return {{"message": "Hello from the agent"}}\\n',
        "\\n",
    ]
    path.write_text("".join(lines))
    print(path)
    break
PY
git add -A && git commit -q -m "Add a /hello endpoint" && git push -q origin HEAD
git rev-parse HEAD"""
"""The developer's one shell command: the route above the template's marker, commit, push."""


@contextmanager
def agent_system(
    tmp_path: Path,
    home: Path,
    settings: dict[str, str],
    secrets: dict[str, str],
    agent_line: str,
) -> Iterator[UpSystem]:
    """Run `orchestrator up` (HOME `home`, the venv off its PATH) with the workers' extra
    `settings` (ORCHESTRATOR_* variables) and the agent's `secrets` in its environment only;
    yield the system once its API answers. After the stop: `up` printed `agent_line` and no
    planted key."""
    system = UpSystem(
        tmp_path,
        settings={"ORCHESTRATOR_WORKERS__ADAPTER": "cli", **settings},
        secrets=secrets,
        home=home,
        venv_on_path=False,
    )
    with system:
        # a loaded machine (other suites, the first provisioning run) can keep the first
        # requests past the CLI's 10 s: wait until the API answers one
        deadline = time.monotonic() + 120
        while system.cli("project", "list", "--json").returncode != 0:
            assert time.monotonic() < deadline, "the API never answered"
        yield system
    up_log = system.log_path.read_text(errors="replace")
    assert agent_line in up_log, up_log[-3000:]
    assert PLANTED_KEY not in up_log


def developed(system: UpSystem, author: str) -> tuple[str, Finished]:
    """A project `shop` and its task "add a /hello endpoint", finished: the result changed
    the app's `main.py` and its commit on the remote branch is `author`'s. The project's id
    and the finished task."""
    project_id = system.project("shop")
    task = system.finish(project_id, "--spec", "add a /hello endpoint")
    result = task.shown["result"]
    assert any(path.endswith("app/main.py") for path in result["files_changed"])
    project = system.json("project", "show", project_id)
    git_dir = str(project["repository_url"]).removeprefix("file://")
    show = subprocess.run(
        ["git", "--git-dir", git_dir, "log", "-1", "--format=%H %an", result["branch"]],
        capture_output=True,
        text=True,
        check=True,
    )
    assert show.stdout.strip() == f"{result['commit_sha']} {author}"
    assert PLANTED_KEY not in task.watched.stdout + json.dumps(task.shown)
    return project_id, task


def run_log(system: UpSystem, task_id: str, adapter: str) -> tuple[str, dict[str, Any]]:
    """`task log` of a task developed by `adapter` (its spec run and the scripted answer
    shown, no planted key); the text and the spec run's record (`--json`)."""
    log = system.cli("task", "log", task_id)
    assert log.returncode == 0, log.stderr
    assert f"[send_spec] {adapter}" in log.stdout, log.stdout
    assert "Added /hello and pushed the branch." in log.stdout
    assert PLANTED_KEY not in log.stdout
    runs = json.loads(system.cli("task", "log", task_id, "--json").stdout)
    assert PLANTED_KEY not in json.dumps(runs)
    return log.stdout, next(run for run in runs if run["step"] == "send_spec")


def deployed(system: UpSystem, project_id: str) -> None:
    """A deploy of the project finishes and its URL answers."""
    url = system.finish(project_id, "--type", "deploy", timeout_s=200).result["deployed_url"]
    assert httpx.get(url, timeout=5).status_code == 200
