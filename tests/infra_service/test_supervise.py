"""The process supervisor shipped to servers, run for real: a project runs in its own venv."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

SUPERVISE = Path(__file__).parents[2] / "services/infra_service/playbooks/files/supervise.py"


def _supervise(root: Path, *args: str, path: str) -> str:
    env = {"PATH": path, "HOME": str(root)}
    done = subprocess.run(
        [sys.executable, str(SUPERVISE), "--root", str(root), *args],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return done.stdout


def test_a_bare_python_in_the_start_command_is_the_venvs(tmp_path: Path) -> None:
    """A Procfile's `python ...` runs the project's venv, whatever the supervisor's PATH holds
    (a fresh shell has no venv on PATH: the quick start's deploy failed with 'No module named
    uvicorn' when `python` was the system one)."""
    root = tmp_path / "srv"
    app = root / "apps" / "site"
    (app / "src").mkdir(parents=True)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(app / "venv")], check=True)
    (app / ".env").write_text("")
    probe = "import os, sys, time; open('prefix', 'w').write(sys.prefix); time.sleep(60)"
    service = {
        "command": ["/bin/sh", "-c", f'exec python -c "{probe}"'],
        "cwd": "src",
        "env_file": ".env",
        "port": 1,
        "host": "127.0.0.1",
    }
    (app / "service.json").write_text(json.dumps(service))
    system_path = os.pathsep.join([str(Path(sys.base_prefix) / "bin"), "/usr/bin", "/bin"])
    _supervise(root, "start", "site", path=system_path)
    try:
        deadline = time.monotonic() + 30
        while not (app / "src" / "prefix").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert (app / "src" / "prefix").read_text() == str(app / "venv")
    finally:
        stopped = json.loads(_supervise(root, "stop", "site", path=system_path))
    assert stopped == {"stopped": True}
