"""The engineering loop through the whole system as real processes: `orchestrator up`, its
workers running a fake agent CLI (the `command` adapter) that edits the backend template's
code for real; each task's checks run in its worker, its work lands on `main`, the next task
starts from it, and a deploy serves both endpoints."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.system import ROOT, UpSystem

FAKE_AGENT = ROOT / "tests" / "fake_dev_agent.py"


@pytest.fixture
def loop_system(tmp_path: Path) -> Iterator[UpSystem]:
    """`orchestrator up` whose workers run the fake agent CLI through the command adapter."""
    settings = {
        "ORCHESTRATOR_WORKERS__ADAPTER": "command",
        "ORCHESTRATOR_WORKERS__COMMAND_TEMPLATE": json.dumps([sys.executable, str(FAKE_AGENT)]),
        # its own manager id: another run's `up` on this host never adopts its workers
        "ORCHESTRATOR_WORKERS__MANAGER_ID": f"loop-{uuid.uuid4().hex[:8]}",
    }
    with UpSystem(tmp_path, settings=settings) as system:
        yield system


def _task(system: UpSystem, project_id: str, spec: str) -> dict[str, object]:
    return dict(system.finish(project_id, "--spec", spec).shown)


@pytest.mark.slow
@pytest.mark.timeout(480)
def test_two_tasks_land_on_main_and_a_deploy_serves_both(loop_system: UpSystem) -> None:
    """Task 1 adds /hello, its checks pass in the worker, it lands on main; task 2's worker
    starts from it and adds /bye; the deploy then answers both endpoints."""
    system = loop_system
    created = system.cli("project", "create", "loop", "--json")
    assert created.returncode == 0, created.stderr
    project_id = json.loads(created.stdout)["id"]

    first = _task(system, project_id, "add a /hello endpoint that returns world")
    result = first["result"]
    assert isinstance(result, dict)
    assert result["branch"] == "main"
    assert result["checks"]["passed"] is True
    assert result["checks"]["runs"][0]["checks"][0]["command"] == "make test"
    second = _task(system, project_id, "add /bye that returns ciao")
    result2 = second["result"]
    assert isinstance(result2, dict)
    project = json.loads(system.cli("project", "show", project_id, "--json").stdout)
    heads = subprocess.run(
        ["git", "ls-remote", project["repository_url"], "refs/heads/main"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert heads.split()[0] == result2["commit_sha"]
    ancestry = subprocess.run(
        ["git", "merge-base", "--is-ancestor", str(result["commit_sha"]), heads.split()[0]],
        cwd=project["repository_url"].removeprefix("file://"), check=False,
    )  # fmt: skip
    assert ancestry.returncode == 0  # the second task started from the first one's work
    shown = system.cli("task", "show", str(second["id"]))
    assert "checks #1" in shown.stdout
    assert "passed after spec" in shown.stdout

    url = system.finish(project_id, "--type", "deploy", timeout_s=200).result["deployed_url"]
    assert httpx.get(f"{url.rstrip('/')}/hello", timeout=5).json() == {"hello": "world"}
    assert httpx.get(f"{url.rstrip('/')}/bye", timeout=5).json() == {"bye": "ciao"}
