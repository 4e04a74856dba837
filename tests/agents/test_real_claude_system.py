"""The quick start with the real Claude Code CLI as the developer: `orchestrator up` as root,
the key and the gateway URL in its environment only, an empty HOME; the scripted model adds a
route, commits and pushes; the task completes with that commit; the project deploys and its
URL answers. (The deploy serves the default branch: the route itself goes live once the
engineering flow integrates the task's branch, which this test does not assume.)"""

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

from tests.agents.conftest import PLANTED_KEY, cli_path
from tests.agents.fake_models import ModelScript, Reply, ToolCall, serve_anthropic
from tests.conftest import local_ports_env
from tests.telegram_bot.test_whole_system import _reap
from tests.test_quickstart import ROOT, VENV_BIN, System, _healthy

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


@pytest.fixture
def claude_system(tmp_path: Path, empty_home: Path) -> Iterator[tuple[System, ModelScript]]:
    """`orchestrator up` whose workers run the real `claude` against a scripted model."""
    from shared.redis_server import free_port

    claude = cli_path("claude")
    script = ModelScript(
        [
            Reply(text="Adding the endpoint.", tools=(ToolCall("Bash", {"command": ADD_ROUTE}),)),
            Reply(text="Added /hello and pushed the branch."),
        ]
    )
    data_dir = tmp_path / "var"
    port = free_port()
    with serve_anthropic(script) as fake:
        env = {
            "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            "HOME": str(empty_home),
            "ORCHESTRATOR_DATA_DIR": str(data_dir),
            "ORCHESTRATOR_API__PORT": str(port),
            "ORCHESTRATOR_LOCAL_PORTS": local_ports_env(),
            "ORCHESTRATOR_SCHEDULER__INTERVALS_S__PROVISION_SERVERS": "2",
            "ORCHESTRATOR_WORKERS__ADAPTER": "cli",
            "ORCHESTRATOR_WORKERS__CLAUDE_COMMAND": json.dumps([str(claude)]),
            "ORCHESTRATOR_WORKERS__CLAUDE_MAX_RETRIES": "1",
            "COLUMNS": "200",
        }
        outside = [part for part in env["PATH"].split(os.pathsep) if Path(part) != VENV_BIN]
        log_path = tmp_path / "up.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [str(VENV_BIN / "orchestrator"), "up"],
                cwd=ROOT,
                env={
                    **env,
                    "PATH": os.pathsep.join(outside),
                    "ANTHROPIC_BASE_URL": fake.url,
                    "ANTHROPIC_API_KEY": PLANTED_KEY,
                },
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            try:
                deadline = time.monotonic() + 90
                while not (data_dir / "secrets" / "cli.key").exists() or not _healthy(port):
                    assert process.poll() is None, log_path.read_text()[-3000:]
                    assert time.monotonic() < deadline, "orchestrator up did not come up in 90 s"
                    time.sleep(0.3)
                system = System(data_dir, env)
                # a loaded machine (other suites, the first provisioning run) can keep the first
                # requests past the CLI's 10 s: wait until the API answers one
                while system.cli("project", "list", "--json").returncode != 0:
                    assert time.monotonic() < deadline + 60, "the API never answered"
                yield system, script
            finally:
                process.send_signal(signal.SIGINT)
                try:
                    process.wait(30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
                _reap(data_dir)
        up_log = log_path.read_text(errors="replace")
        assert f"agent  claude-code → claude-code ({claude})" in up_log
        assert PLANTED_KEY not in up_log


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_real_claude_develops_and_the_project_deploys(
    claude_system: tuple[System, ModelScript],
) -> None:
    """task create → the real CLI's commit on the remote → task completed → deploy → URL."""
    system, script = claude_system
    created = system.cli("project", "create", "shop", "--json")
    assert created.returncode == 0, created.stderr
    project_id = json.loads(created.stdout)["id"]
    task = system.cli("task", "create", project_id, "--spec", "add a /hello endpoint", "--json")
    assert task.returncode == 0, task.stderr
    task_id = json.loads(task.stdout)["id"]
    watched = system.cli("task", "watch", task_id, "--timeout-s", "150", timeout_s=180)
    assert watched.returncode == 0, watched.stdout + watched.stderr
    shown = json.loads(system.cli("task", "show", task_id, "--json").stdout)
    commit, branch = shown["result"]["commit_sha"], shown["result"]["branch"]
    assert any(path.endswith("app/main.py") for path in shown["result"]["files_changed"])
    project = json.loads(system.cli("project", "show", project_id, "--json").stdout)
    remote = project["repository_url"]
    git_dir = remote.removeprefix("file://")
    show = subprocess.run(
        ["git", "--git-dir", git_dir, "log", "-1", "--format=%H %an", branch],
        capture_output=True,
        text=True,
        check=True,
    )
    assert show.stdout.strip() == f"{commit} Claude Code agent"
    assert "add a /hello endpoint" in str(script.requests[0]["messages"])
    assert PLANTED_KEY not in watched.stdout + json.dumps(shown)
    assert shown["result"]["agent_runs"] >= 1
    assert shown["result"]["agent_cost_usd"] > 0
    log = system.cli("task", "log", task_id)
    assert log.returncode == 0, log.stderr
    assert "[send_spec] claude-code" in log.stdout
    assert "- Bash python3 - <<'PY'" in log.stdout
    assert "Added /hello and pushed the branch." in log.stdout
    assert "total: " in log.stdout
    runs = json.loads(system.cli("task", "log", task_id, "--json").stdout)
    assert runs[0]["input_tokens"] >= 200  # two scripted turns of 100 input tokens
    assert PLANTED_KEY not in log.stdout + json.dumps(runs)

    deploy = system.cli("task", "create", project_id, "--type", "deploy", "--json")
    assert deploy.returncode == 0, deploy.stderr
    deploy_id = json.loads(deploy.stdout)["id"]
    watched = system.cli("task", "watch", deploy_id, "--timeout-s", "200", timeout_s=230)
    assert watched.returncode == 0, watched.stdout + watched.stderr
    url = json.loads(system.cli("task", "show", deploy_id, "--json").stdout)["result"][
        "deployed_url"
    ]
    assert httpx.get(url, timeout=5).status_code == 200
