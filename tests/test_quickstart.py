"""The README's quick start, run as a user runs it: `orchestrator up`, then the CLI.

Create a project, create an engineering task, watch it complete (exit code 0), find its
commit in the project's repository, then deploy it and open the URL.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import local_ports_env
from tests.telegram_bot.test_whole_system import _reap

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = ROOT / ".venv" / "bin"


class System:
    """A running `orchestrator up` and a way to run CLI commands against it."""

    def __init__(self, data_dir: Path, env: dict[str, str]) -> None:
        self.data_dir = data_dir
        self.env = env

    def cli(self, *args: str, timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
        """Run `orchestrator <args>` as a separate process, like a user in a second terminal."""
        return subprocess.run(
            [str(VENV_BIN / "orchestrator"), *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )


@pytest.fixture
def up_system(tmp_path: Path) -> Iterator[System]:
    """`orchestrator up` on a fresh data directory, on its embedded defaults."""
    from shared.redis_server import free_port

    data_dir = tmp_path / "var"
    port = free_port()
    env = {
        "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "HOME": os.environ.get("HOME", "/tmp"),
        "ORCHESTRATOR_DATA_DIR": str(data_dir),
        "ORCHESTRATOR_API__PORT": str(port),
        "ORCHESTRATOR_LOCAL_PORTS": local_ports_env(),
        "ORCHESTRATOR_SCHEDULER__INTERVALS_S__PROVISION_SERVERS": "2",
        "ORCHESTRATOR_API__IMPORT_ROOTS": json.dumps([str(tmp_path / "sources")]),
        "COLUMNS": "200",
    }
    log = (tmp_path / "up.log").open("wb")
    # `make up` runs .venv/bin/orchestrator without activating the venv: the system must not
    # rely on the venv being on PATH (a deployed project's bare `python` once did).
    outside = [part for part in env["PATH"].split(os.pathsep) if Path(part) != VENV_BIN]
    process = subprocess.Popen(
        [str(VENV_BIN / "orchestrator"), "up"],
        cwd=ROOT,
        env={**env, "PATH": os.pathsep.join(outside)},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 90
        while not (data_dir / "secrets" / "cli.key").exists() or not _healthy(port):
            assert process.poll() is None, (tmp_path / "up.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "orchestrator up did not come up in 90 s"
            time.sleep(0.3)
        yield System(data_dir, env)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
        _reap(data_dir)


def _healthy(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_quick_start_develops_and_deploys_a_project(up_system: System) -> None:
    """project create → task create → task watch (exit 0, the commit on main) → deploy → the
    URL names that commit and the requested /hello endpoint answers."""
    created = up_system.cli("project", "create", "shop", "--json")
    assert created.returncode == 0, created.stderr
    project_id = json.loads(created.stdout)["id"]

    task = up_system.cli("task", "create", project_id, "--spec", "add a /hello endpoint", "--json")
    assert task.returncode == 0, task.stderr
    task_id = json.loads(task.stdout)["id"]

    watched = up_system.cli("task", "watch", task_id, "--timeout-s", "150", timeout_s=180)
    assert watched.returncode == 0, watched.stdout + watched.stderr
    assert "completed" in watched.stdout
    shown = json.loads(up_system.cli("task", "show", task_id, "--json").stdout)
    commit = shown["result"]["commit_sha"]
    project = json.loads(up_system.cli("project", "show", project_id, "--json").stdout)
    heads = subprocess.run(
        ["git", "ls-remote", project["repository_url"]],
        capture_output=True,
        text=True,
        check=True,
    )
    assert commit in heads.stdout

    deploy = up_system.cli("task", "create", project_id, "--type", "deploy", "--json")
    assert deploy.returncode == 0, deploy.stderr
    deploy_id = json.loads(deploy.stdout)["id"]
    watched = up_system.cli("task", "watch", deploy_id, "--timeout-s", "200", timeout_s=230)
    assert watched.returncode == 0, watched.stdout + watched.stderr
    url = json.loads(up_system.cli("task", "show", deploy_id, "--json").stdout)["result"][
        "deployed_url"
    ]
    assert httpx.get(url, timeout=5).status_code == 200
    deployed = json.loads(up_system.cli("project", "deploys", project_id, "--json").stdout)
    assert [(d["task_id"], d["outcome"]) for d in deployed] == [(deploy_id, "succeeded")]
    assert httpx.get(url, timeout=5).json()["commit"] == deployed[0]["sha"] == commit
    hello = httpx.get(f"{url.rstrip('/')}/hello", timeout=5)
    assert (hello.status_code, hello.json()) == (200, {"message": "Hello from /hello!"})


@pytest.mark.timeout(120)
def test_watch_of_an_unknown_task_fails_clearly(up_system: System) -> None:
    """`task watch` of a task that does not exist exits non-zero and says so."""
    done = up_system.cli("task", "watch", "no-such-task")
    assert done.returncode != 0
    assert "404" in done.stderr or "not found" in done.stderr.lower()
