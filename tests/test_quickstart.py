"""The README's quick start, run as a user runs it: `orchestrator up`, then the CLI.

Create a project, create an engineering task, watch it complete (exit code 0), find its
commit in the project's repository, then deploy it and open the URL.
"""

from __future__ import annotations

import json
import subprocess

import httpx
import pytest

from tests.support.system import UpSystem


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_quick_start_develops_and_deploys_a_project(up_system: UpSystem) -> None:
    """project create → task create → task watch (exit 0, the commit on main) → deploy → the
    URL names that commit and the requested /hello endpoint answers."""
    project_id = up_system.project("shop")
    task = up_system.finish(project_id, "--spec", "add a /hello endpoint")
    assert "completed" in task.watched.stdout
    commit = task.result["commit_sha"]
    project = json.loads(up_system.cli("project", "show", project_id, "--json").stdout)
    heads = subprocess.run(
        ["git", "ls-remote", project["repository_url"]],
        capture_output=True,
        text=True,
        check=True,
    )
    assert commit in heads.stdout

    deploy = up_system.finish(project_id, "--type", "deploy", timeout_s=200)
    deploy_id = deploy.id
    url = deploy.result["deployed_url"]
    assert httpx.get(url, timeout=5).status_code == 200
    deployed = json.loads(up_system.cli("project", "deploys", project_id, "--json").stdout)
    assert [(d["task_id"], d["outcome"]) for d in deployed] == [(deploy_id, "succeeded")]
    assert httpx.get(url, timeout=5).json()["commit"] == deployed[0]["sha"] == commit
    hello = httpx.get(f"{url.rstrip('/')}/hello", timeout=5)
    assert (hello.status_code, hello.json()) == (200, {"message": "Hello from /hello!"})


@pytest.mark.timeout(120)
def test_watch_of_an_unknown_task_fails_clearly(up_system: UpSystem) -> None:
    """`task watch` of a task that does not exist exits non-zero and says so."""
    done = up_system.cli("task", "watch", "no-such-task")
    assert done.returncode != 0
    assert "404" in done.stderr or "not found" in done.stderr.lower()
