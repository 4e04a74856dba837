"""The whole system as a user runs it: `orchestrator up` as a process of its own on a fresh
data directory, and the CLI run against it like in a second terminal.

`UpSystem` starts, kills and stops one `orchestrator up`; as a context manager it is the
usual shape (started, entered once its API answers, stopped and its leftovers reaped). The options
cover what the whole-system tests vary: the workers' settings, secrets only `up` sees, HOME,
PATH, a module-scoped start on a slow machine.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil

from shared.redis_server import free_port, port_free

__all__ = [
    "ROOT",
    "VENV_BIN",
    "Finished",
    "UpSystem",
    "healthy",
    "local_ports_env",
    "reap",
]

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = ROOT / ".venv" / "bin"


def local_ports_env(count: int = 20) -> str:
    """`ORCHESTRATOR_LOCAL_PORTS` for a test's `orchestrator up`: `count` ports free right now,
    away from the default range a user's own system deploys to (10000-10999)."""
    for _ in range(100):
        first = random.randrange(20_000, 30_000 - count)
        if all(port_free(port) for port in range(first, first + count)):
            return f"[{first}, {first + count - 1}]"
    raise RuntimeError(f"no {count} free ports in a row between 20000 and 30000")


def healthy(port: int) -> bool:
    """True when the API on `port` answers /health."""
    try:
        return httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def reap(data_dir: Path) -> None:
    """Kill every process the run left behind under the data dir (deployed apps, daemons)."""
    doomed: list[psutil.Process] = []
    for process in psutil.process_iter(["cmdline", "cwd"]):
        try:
            text = " ".join(process.info["cmdline"] or []) + " " + (process.info["cwd"] or "")
        except psutil.Error:
            continue
        if str(data_dir) in text and process.pid != os.getpid():
            doomed += [process, *process.children(recursive=True)]
    for process in doomed:
        try:
            process.kill()
        except psutil.Error:
            continue
    psutil.wait_procs(doomed, timeout=5)


@dataclass
class Finished:
    """A task run to its end through the CLI: its id, `task watch`'s output, `task show`."""

    id: str
    watched: subprocess.CompletedProcess[str]
    shown: dict[str, Any]

    @property
    def result(self) -> dict[str, Any]:
        result: dict[str, Any] = self.shown["result"]
        return result


class UpSystem:
    """One `orchestrator up` on `tmp_path / "var"`, started and killed at will (or `with`:
    started on entry, stopped and reaped on exit), and the CLI against it.

    `settings`: more variables of the system's environment (ORCHESTRATOR_*), the CLI's too.
    `secrets`: variables only `up` gets (an agent's API key), never the CLI.
    `home`: HOME (else the test run's). `path_first`: directories put before the venv on PATH.
    `venv_on_path`: False runs `up` with the venv off its PATH (as `make up` does).
    `provision_interval_s`: the scheduler's server provisioning interval (None: its default).
    `start_timeout_s`: how long `up` may take until its API answers."""

    def __init__(
        self,
        tmp_path: Path,
        *,
        settings: Mapping[str, str] | None = None,
        secrets: Mapping[str, str] | None = None,
        home: Path | None = None,
        path_first: Sequence[Path] = (),
        venv_on_path: bool = True,
        provision_interval_s: float | None = 2,
        start_timeout_s: float = 90,
    ) -> None:
        self.data_dir = tmp_path / "var"
        self.port = free_port()
        self.log_path = tmp_path / "up.log"
        path = [*map(str, path_first), str(VENV_BIN), os.environ.get("PATH", "/usr/bin:/bin")]
        self.env: dict[str, str] = {
            "PATH": os.pathsep.join(path),
            "HOME": str(home) if home is not None else os.environ.get("HOME", "/tmp"),
            "ORCHESTRATOR_DATA_DIR": str(self.data_dir),
            "ORCHESTRATOR_API__PORT": str(self.port),
            "ORCHESTRATOR_LOCAL_PORTS": local_ports_env(),
            "COLUMNS": "200",
        }
        if provision_interval_s is not None:
            interval = f"{provision_interval_s:g}"
            self.env["ORCHESTRATOR_SCHEDULER__INTERVALS_S__PROVISION_SERVERS"] = interval
        self.env.update(settings or {})
        self._secrets = dict(secrets or {})
        self._venv_on_path = venv_on_path
        self._start_timeout_s = start_timeout_s
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start `up` (its output appended to `log_path`); return once the CLI's key exists
        and the API answers."""
        env = {**self.env, **self._secrets}
        if not self._venv_on_path:
            parts = env["PATH"].split(os.pathsep)
            env["PATH"] = os.pathsep.join(part for part in parts if Path(part) != VENV_BIN)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [str(VENV_BIN / "orchestrator"), "up"],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + self._start_timeout_s
        while not (self.data_dir / "secrets" / "cli.key").exists() or not healthy(self.port):
            assert self.process.poll() is None, self.log_path.read_text()[-3000:]
            assert time.monotonic() < deadline, (
                f"orchestrator up did not come up in {self._start_timeout_s:g} s"
            )
            time.sleep(0.3)

    def kill(self) -> None:
        """SIGKILL `up` alone: its Redis and its workers run on, as after a crash."""
        assert self.process is not None
        self.process.kill()
        self.process.wait(30)

    def stop(self) -> None:
        """SIGINT, as Ctrl-C in its terminal; SIGKILL after 30 s."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

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

    def json(self, *args: str) -> dict[str, object]:
        """`orchestrator <args> --json`, which must succeed, parsed."""
        done = self.cli(*args, "--json")
        assert done.returncode == 0, done.stdout + done.stderr
        value: dict[str, object] = json.loads(done.stdout)
        return value

    def project(self, name: str) -> str:
        """`project create <name>`, which must succeed; the new project's id."""
        return str(self.json("project", "create", name)["id"])

    def finish(self, project_id: str, *create: str, timeout_s: float = 150) -> Finished:
        """`task create <project_id> <create…>`, then `task watch` (which must exit 0 within
        `timeout_s`), then `task show`."""
        created = self.cli("task", "create", project_id, *create, "--json")
        assert created.returncode == 0, created.stderr
        task_id = str(json.loads(created.stdout)["id"])
        watch = ("task", "watch", task_id, "--timeout-s", f"{timeout_s:g}")
        watched = self.cli(*watch, timeout_s=timeout_s + 30)
        assert watched.returncode == 0, watched.stdout + watched.stderr
        shown: dict[str, Any] = json.loads(self.cli("task", "show", task_id, "--json").stdout)
        return Finished(task_id, watched, shown)

    def __enter__(self) -> UpSystem:
        try:
            self.start()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *_: object) -> None:
        """Stopped, and every process left under its data directory killed."""
        self.stop()
        reap(self.data_dir)
