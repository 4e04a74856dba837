"""`orchestrator up` as root with a real agent CLI against a scripted model: the system the
real-CLI system tests share (the developer flow with Claude Code and with Codex)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.agents.conftest import PLANTED_KEY
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


@contextmanager
def agent_system(
    tmp_path: Path,
    home: Path,
    settings: dict[str, str],
    secrets: dict[str, str],
    agent_line: str,
) -> Iterator[System]:
    """Run `orchestrator up` (HOME `home`, the venv off its PATH) with the workers' extra
    `settings` (ORCHESTRATOR_* variables) and the agent's `secrets` in its environment only;
    yield the system once its API answers. After the stop: `up` printed `agent_line` and no
    planted key."""
    from shared.redis_server import free_port

    data_dir = tmp_path / "var"
    port = free_port()
    env = {
        "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "HOME": str(home),
        "ORCHESTRATOR_DATA_DIR": str(data_dir),
        "ORCHESTRATOR_API__PORT": str(port),
        "ORCHESTRATOR_LOCAL_PORTS": local_ports_env(),
        "ORCHESTRATOR_SCHEDULER__INTERVALS_S__PROVISION_SERVERS": "2",
        "ORCHESTRATOR_WORKERS__ADAPTER": "cli",
        "COLUMNS": "200",
        **settings,
    }
    outside = [part for part in env["PATH"].split(os.pathsep) if Path(part) != VENV_BIN]
    log_path = tmp_path / "up.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(VENV_BIN / "orchestrator"), "up"],
            cwd=ROOT,
            env={**env, "PATH": os.pathsep.join(outside), **secrets},
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
            yield system
        finally:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            _reap(data_dir)
    up_log = log_path.read_text(errors="replace")
    assert agent_line in up_log, up_log[-3000:]
    assert PLANTED_KEY not in up_log
