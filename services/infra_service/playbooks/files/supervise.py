#!/usr/bin/env python3
"""A tiny process supervisor for deployed projects (stdlib only, no systemd needed).

Installed on every server by `provision_server.yml` as `<base_dir>/bin/supervise.py`. Each
project lives in `<base_dir>/apps/<name>/` with a `service.json`:

    {"command": ["venv/bin/python", "main.py"], "cwd": "src", "env_file": ".env",
     "port": 8123, "host": "127.0.0.1",
     "workers": [{"name": "bot", "command": ["venv/bin/python", "-m", "bot.main"],
                  "cwd": "src/telegram"}]}

`command` is the web service (`app.pid`, `app.log`); each of the optional `workers` (a
Telegram bot module, ...) runs beside it with the same environment (`<name>.pid`,
`<name>.log`); the daemon restarts whichever dies. A project without a web service (a
bot-only project) has no `command` (nor `port`): only its workers run.

Commands (all idempotent):
    start NAME      (re)start the project's supervisor daemon, detached in its own session
    stop NAME       stop the daemon and the project's whole process group
    status NAME     print {"running": bool, "pid": int | null, "restarts": int,
                    "processes": {"app": bool, "bot": bool, ...}} as JSON (whether each
                    process of service.json runs now)
    start-all       start every enabled project whose daemon is not running; print the count

`deployctl.py`, beside this file, prepares and releases projects on top of these commands.
    run NAME        the daemon itself: keeps the project running, restarts it with backoff

The daemon gets a clean environment (PATH, HOME, LANG), then the project's env file, then
PORT and HOST (and APP_COMMIT, the commit of the release, when service.json names it under
`"commit"`), with the project's venv activated (its `bin/` first on PATH); nothing of the
caller's environment leaks into the project.

Restarts: each time the daemon starts the project again after it died, it counts one in
`apps/<name>/restarts.json` (`{"commit": ..., "restarts": N}`): the count of the release
(`deployctl.py release` starts every release at 0; a daemon started again, e.g. after the
server came back, keeps counting the same commit). The scheduler reads it for the API.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

STOP_TIMEOUT_S = 10.0
APP_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")
"""A project's directory name under `apps/` (infra-service's `app_name_of` makes them): one
plain path component, never `.` or `..`, at most 64 characters."""
MAX_BACKOFF_S = 30.0
HEALTHY_RUN_S = 30.0
SAFE_ENV_KEYS = ("PATH", "HOME", "LANG", "LC_ALL", "TZ")
RESTARTS_FILE = "restarts.json"
WORKER_NAME = re.compile(r"[a-z][a-z0-9_]{0,19}")
"""A worker process's name in service.json (its pid file and log are `<name>.pid/.log`)."""


def _app_dir(root: Path, name: str) -> Path:
    return root / "apps" / name


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _is_our_daemon(pid: int, name: str) -> bool:
    """True when `pid` is alive and is this project's `supervise.py run` (no PID reuse)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    args = [part.decode(errors="replace") for part in raw.split(b"\0") if part]
    return "run" in args and name in args and any(a.endswith("supervise.py") for a in args)


def _runs_in(pid: int, app_dir: Path) -> bool:
    """True when process `pid` is alive with its working directory inside `app_dir`."""
    try:
        cwd = Path(os.readlink(f"/proc/{pid}/cwd"))
    except OSError:
        return False
    return cwd == app_dir.resolve() or app_dir.resolve() in cwd.parents


def daemon_pid(root: Path, name: str) -> int | None:
    pid = _read_pid(_app_dir(root, name) / "supervisor.pid")
    return pid if pid is not None and _is_our_daemon(pid, name) else None


def _read_env_file(path: Path) -> dict[str, str]:
    env: dict[str, str] = {}
    if not path.exists():
        return env
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#") or "=" not in stripped:
            continue
        key, _, value = stripped.partition("=")
        env[key.strip()] = value
    return env


def read_restarts(app_dir: Path) -> dict[str, Any]:
    """`{"commit": str | None, "restarts": int}` of the project's release (0 when unknown)."""
    try:
        record = json.loads((app_dir / RESTARTS_FILE).read_text())
    except (OSError, ValueError):
        return {"commit": None, "restarts": 0}
    if not isinstance(record, dict) or not isinstance(record.get("restarts"), int):
        return {"commit": None, "restarts": 0}
    return {"commit": record.get("commit"), "restarts": record["restarts"]}


def _write_restarts(app_dir: Path, commit: str | None, restarts: int) -> None:
    """Replace the restart record atomically (a reader never sees half of it)."""
    part = app_dir / f".{RESTARTS_FILE}.tmp"
    part.write_text(json.dumps({"commit": commit, "restarts": restarts}) + "\n")
    part.replace(app_dir / RESTARTS_FILE)


def reset_restarts(app_dir: Path) -> None:
    """A new release starts counting at 0."""
    with contextlib.suppress(FileNotFoundError):
        (app_dir / RESTARTS_FILE).unlink()


def _load_service(root: Path, name: str) -> dict[str, Any]:
    service: dict[str, Any] = json.loads((_app_dir(root, name) / "service.json").read_text())
    return service


def _wait_gone(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.05)
    return False


def stop(root: Path, name: str) -> int:
    """Stop the daemon (which stops its project); print whether one was running."""
    sys.stdout.write(json.dumps({"stopped": stop_daemon(root, name)}) + "\n")
    return 0


def stop_daemon(root: Path, name: str) -> bool:
    """Stop the daemon (which stops its project); kill the session when it lingers."""
    pid = daemon_pid(root, name)
    if pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        if not _wait_gone(pid, STOP_TIMEOUT_S + 2):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            _wait_gone(pid, 2.0)
    app_dir = _app_dir(root, name)
    for pid_file in sorted(app_dir.glob("*.pid")):  # app.pid and the workers' (bot.pid, ...)
        app_pid = _read_pid(pid_file) if pid_file.name != "supervisor.pid" else None
        if app_pid is not None and _runs_in(app_pid, app_dir):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(app_pid, signal.SIGKILL)
    for stale in app_dir.glob("*.pid"):
        with contextlib.suppress(FileNotFoundError):
            stale.unlink()
    return pid is not None


def start(root: Path, name: str) -> int:
    """(Re)start the daemon of a project; print its pid."""
    sys.stdout.write(json.dumps({"started": True, "pid": start_daemon(root, name)}) + "\n")
    return 0


def start_daemon(root: Path, name: str) -> int:
    """(Re)start the daemon of a project, detached from the caller; return its pid."""
    app_dir = _app_dir(root, name)
    _load_service(root, name)  # fail early on a missing or broken service.json
    stop_daemon(root, name)
    env = {key: os.environ[key] for key in SAFE_ENV_KEYS if key in os.environ}
    with open(app_dir / "supervisor.log", "ab") as log:
        daemon = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--root", str(root), "run", name],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
            env=env,
            cwd=str(app_dir),
        )
    (app_dir / "supervisor.pid").write_text(f"{daemon.pid}\n")
    (app_dir / "enabled").touch()
    return daemon.pid


def _activate_venv(env: dict[str, str], venv: Path) -> None:
    """Run the project as if its venv were activated, so that a Procfile's bare `python` or
    `uvicorn` is the venv's and not whatever comes first on the supervisor's PATH."""
    if not (venv / "bin").is_dir():
        return
    env["VIRTUAL_ENV"] = str(venv)
    env["PATH"] = os.pathsep.join(filter(None, [str(venv / "bin"), env.get("PATH", "")]))


class _Process:
    """One process of a project: `app` (the web service, on PORT) or a worker (e.g. `bot`),
    with its own pid file, log and restart backoff."""

    def __init__(self, label: str, command: list[Any], cwd: str) -> None:
        self.label = label
        self.command = command
        self.cwd = cwd
        self.child: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0
        self.next_start = 0.0
        self.backoff_s = 1.0

    def start(self, app_dir: Path, env: dict[str, str]) -> None:
        substitutions = {"$PORT": env["PORT"], "$HOST": env["HOST"]}
        command = [substitutions.get(str(part), str(part)) for part in self.command]
        with open(app_dir / f"{self.label}.log", "ab") as log:
            self.child = subprocess.Popen(
                command,
                cwd=str(app_dir / self.cwd),
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        (app_dir / f"{self.label}.pid").write_text(f"{self.child.pid}\n")
        self.started_at = time.monotonic()
        self.next_start = 0.0

    def died(self) -> bool:
        """True when the process exited and is not yet scheduled to start again; schedules
        it after its backoff (which is reset by a run longer than `HEALTHY_RUN_S`)."""
        if self.child is None or self.child.poll() is None or self.next_start:
            return False
        now = time.monotonic()
        if now - self.started_at > HEALTHY_RUN_S:
            self.backoff_s = 1.0
        self.next_start = now + self.backoff_s
        self.backoff_s = min(self.backoff_s * 2, MAX_BACKOFF_S)
        return True

    def due(self) -> bool:
        """True when the process should be started (first time, or its backoff passed)."""
        return self.child is None or (self.next_start > 0 and time.monotonic() >= self.next_start)

    def terminate(self) -> None:
        if self.child is not None and self.child.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.child.pid, signal.SIGTERM)

    def reap(self) -> None:
        if self.child is not None and self.child.poll() is None:
            try:
                self.child.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.child.pid, signal.SIGKILL)
                self.child.wait()


def _processes(service: dict[str, Any]) -> list[_Process]:
    """The web service (`command`, `cwd`), then each of `workers` (`name`, `command`, `cwd`)."""
    processes = []
    if service.get("command"):  # a bot-only project has no web service
        processes.append(_Process("app", list(service["command"]), str(service.get("cwd", "src"))))
    for worker in service.get("workers") or []:
        label = str(worker["name"])
        if not WORKER_NAME.fullmatch(label) or label in ("app", "supervisor"):
            raise ValueError(f"invalid worker name {label!r}")
        processes.append(_Process(label, list(worker["command"]), str(worker.get("cwd", "src"))))
    if not processes:
        raise ValueError("service.json names no process (no command, no workers)")
    return processes


def run(root: Path, name: str) -> int:
    """The daemon: run each process of the project in its own process group, restart one
    that dies (with backoff); every restart counts for the release."""
    app_dir = _app_dir(root, name)
    service = _load_service(root, name)
    processes = _processes(service)
    stopping = threading.Event()

    def on_term(signum: int, frame: FrameType | None) -> None:
        stopping.set()
        for process in processes:
            process.terminate()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    (app_dir / "supervisor.pid").write_text(f"{os.getpid()}\n")
    commit = str(service["commit"]) if service.get("commit") else None
    counted = read_restarts(app_dir)
    restarts = int(counted["restarts"]) if counted["commit"] == commit else 0
    _write_restarts(app_dir, commit, restarts)
    while not stopping.is_set():
        for process in processes:
            process.died()
            if not process.due() or stopping.is_set():
                continue
            if process.child is not None:  # it died and is started again
                restarts += 1
                _write_restarts(app_dir, commit, restarts)
            process.start(app_dir, _process_env(app_dir, service))
            if stopping.is_set():  # a stop that arrived while the child was being spawned
                on_term(signal.SIGTERM, None)
        stopping.wait(0.2)
    for process in processes:
        process.reap()
    for stale in ("supervisor.pid", *(f"{process.label}.pid" for process in processes)):
        with contextlib.suppress(FileNotFoundError):
            (app_dir / stale).unlink()
    return 0


def _process_env(app_dir: Path, service: dict[str, Any]) -> dict[str, str]:
    """The environment of the project's processes (see the module docstring)."""
    env = {key: os.environ[key] for key in SAFE_ENV_KEYS if key in os.environ}
    env.update(_read_env_file(app_dir / str(service.get("env_file", ".env"))))
    env["PORT"] = str(service.get("port") or "")
    env["HOST"] = str(service.get("host", "127.0.0.1"))
    if service.get("commit"):
        env["APP_COMMIT"] = str(service["commit"])
    _activate_venv(env, app_dir / "venv")
    return env


def status(root: Path, name: str) -> int:
    """Print whether the project's daemon and each of its processes run."""
    pid = daemon_pid(root, name)
    app_dir = _app_dir(root, name)
    restarts = read_restarts(app_dir)["restarts"]
    report = {
        "running": pid is not None,
        "pid": pid,
        "restarts": restarts,
        "processes": process_states(app_dir),
    }
    sys.stdout.write(json.dumps(report) + "\n")
    return 0


def process_states(app_dir: Path) -> dict[str, bool]:
    """Whether each process of the project's service.json runs now (its pid file names a
    live, non-zombie process in the project's directory); {} without a service.json."""
    try:
        service: dict[str, Any] = json.loads((app_dir / "service.json").read_text())
        labels = [process.label for process in _processes(service)]
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    states: dict[str, bool] = {}
    for label in labels:
        pid = _read_pid(app_dir / f"{label}.pid")
        states[label] = pid is not None and _alive(pid) and _runs_in(pid, app_dir)
    return states


def _alive(pid: int) -> bool:
    """True when `pid` runs and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[:1] != ["Z"]


def start_all(root: Path) -> int:
    """Start every enabled project whose daemon is not running; print how many."""
    started = start_stopped(root)
    sys.stdout.write(json.dumps({"started": started, "count": len(started)}) + "\n")
    return 0


def start_stopped(root: Path) -> list[str]:
    """Start every enabled project whose daemon is not running; return their names."""
    started: list[str] = []
    apps = root / "apps"
    for app_dir in sorted(apps.iterdir()) if apps.is_dir() else []:
        name = app_dir.name
        enabled = (app_dir / "enabled").exists() and (app_dir / "service.json").exists()
        if enabled and daemon_pid(root, name) is None:
            start_daemon(root, name)
            started.append(name)
    return started


def is_app_name(name: str) -> bool:
    """True when `name` is one plain directory name under `apps/` (see `APP_NAME`)."""
    return APP_NAME.fullmatch(name) is not None


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run one command."""
    parser = argparse.ArgumentParser(prog="supervise.py", description=__doc__)
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent)
    parser.add_argument("command", choices=["start", "stop", "status", "run", "start-all"])
    parser.add_argument("target", nargs="?", default="")
    args = parser.parse_args(argv)
    root: Path = args.root.resolve()
    if args.command == "start-all":
        return start_all(root)
    if not args.target:
        parser.error(f"{args.command} needs a project name")
    if not is_app_name(args.target):
        parser.error(f"invalid project name {args.target!r}: use 1-64 of A-Z a-z 0-9 _ . -")
    handlers = {"start": start, "stop": stop, "status": status, "run": run}
    return handlers[args.command](root, args.target)


if __name__ == "__main__":
    sys.exit(main())
