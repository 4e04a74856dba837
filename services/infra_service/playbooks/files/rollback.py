#!/usr/bin/env python3
"""Undoing a cancelled deploy on the server (stdlib only), used by `deployctl.py`.

Installed beside `deployctl.py` and `supervise.py` in `<base_dir>/bin/`. A deploy job has an
id (`INFRA_JOB_ID`: the deploy request's id, the same when a message is redelivered, so a
redelivered job undoes an earlier attempt of itself); its steps leave two files in
`apps/<name>/`:

    step.json        the running step (pid, process group, job): `abort` kills that group, so
                     no half-run fetch, pip install or health wait goes on after a cancel
    rollback.json    what the project was before the job touched it (commit, service.json,
                     whether its daemon ran and which pid), with `rollback.env`, a 0600 copy
                     of its env file; written by the job's first step; a release that
                     succeeded replaces it with `{"job": J, "released": true}`

`abort NAME --job J` (the `abort_deploy.yml` playbook) kills the job's running step, then:
- when job J never reached the server (no snapshot of J): changes nothing of the project;
- when J's release already succeeded: too late to undo, the new release keeps running;
- when the project had no release before J (a first deploy): stops whatever J started and
  removes the project's directory, so the supervisor knows nothing of it any more;
- otherwise (a redeploy): puts the previous release back (its commit, service.json and env
  file) and, when it ran before, makes sure that daemon runs it again (restarting it when J
  had replaced it), waiting for its health check.
The project's venv keeps what the job installed (installs only ever add packages). It reports
`{"changed", "released", "running", "removed", "restored", "restarted", "step_killed"}`;
`running` tells whether the project runs on its port afterwards.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import supervise  # type: ignore[import-not-found]  # a sibling script on the server, not a package module

KILL_GRACE_S = 5.0
STEP_FILE = "step.json"
SNAPSHOT_FILE = "rollback.json"
SNAPSHOT_ENV = "rollback.env"


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object from a file, or None (missing, unreadable, not an object)."""
    return _read_json(path)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        loaded = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return loaded if isinstance(loaded, dict) else None


def _write_private(path: Path, content: str) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(descriptor, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(content)


def begin_step(app_dir: Path, job: str, step: str) -> None:
    """Record the running step of job `job` (pid and process group) for `abort`."""
    app_dir.mkdir(parents=True, exist_ok=True)
    record = {"pid": os.getpid(), "pgid": os.getpgid(0), "job": job, "step": step}
    (app_dir / STEP_FILE).write_text(json.dumps(record) + "\n")


def end_step(app_dir: Path) -> None:
    """The step is over (whatever its outcome)."""
    with contextlib.suppress(FileNotFoundError):
        (app_dir / STEP_FILE).unlink()


def _head(src: Path) -> str | None:
    if not (src / ".git").exists():
        return None
    done = subprocess.run(
        ["git", "rev-parse", "--verify", "--quiet", "HEAD"],
        cwd=src,
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip() or None


def snapshot(root: Path, name: str, job: str) -> None:
    """Remember the project as it is before job `job` changes it (once per job)."""
    app_dir = root / "apps" / name
    previous = _read_json(app_dir / SNAPSHOT_FILE)
    if previous is not None and previous.get("job") == job:
        return  # a step of this job ran before: the first snapshot is the one to keep
    service = _read_json(app_dir / "service.json")
    record = {
        "job": job,
        "commit": _head(app_dir / "src"),
        "service": service,
        "daemon_pid": supervise.daemon_pid(root, name),
    }
    env_file = app_dir / ".env"
    if env_file.exists():
        _write_private(app_dir / SNAPSHOT_ENV, env_file.read_text())
    else:
        with contextlib.suppress(FileNotFoundError):
            (app_dir / SNAPSHOT_ENV).unlink()
    (app_dir / SNAPSHOT_FILE).write_text(json.dumps(record) + "\n")


def read_snapshot(app_dir: Path, job: str) -> dict[str, Any] | None:
    """The project as it was before job `job` (service, commit, env, daemon_pid), or None
    when the job took no snapshot or already released."""
    record = _read_json(app_dir / SNAPSHOT_FILE)
    if record is None or record.get("job") != job or record.get("released"):
        return None
    env_file = app_dir / SNAPSHOT_ENV
    return {
        "service": record.get("service"),
        "commit": record.get("commit"),
        "env": env_file.read_text() if env_file.exists() else None,
        "daemon_pid": record.get("daemon_pid"),
    }


def released(app_dir: Path, job: str) -> None:
    """Job `job`'s release succeeded: its snapshot is dropped, only the fact is kept."""
    record = _read_json(app_dir / SNAPSHOT_FILE)
    if record is not None and record.get("job") == job:
        (app_dir / SNAPSHOT_FILE).write_text(json.dumps({"job": job, "released": True}) + "\n")
        with contextlib.suppress(FileNotFoundError):
            (app_dir / SNAPSHOT_ENV).unlink()


def _forget(app_dir: Path) -> None:
    for stale in (SNAPSHOT_FILE, SNAPSHOT_ENV):
        with contextlib.suppress(FileNotFoundError):
            (app_dir / stale).unlink()


def _is_deployctl(pid: int) -> bool:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return any(part.endswith(b"deployctl.py") for part in raw.split(b"\0"))


def _gone(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not _is_deployctl(pid):
            return True
        time.sleep(0.05)
    return not _is_deployctl(pid)


def kill_step(app_dir: Path) -> bool:
    """Stop the recorded running step and its process group; True when one was running."""
    record = _read_json(app_dir / STEP_FILE)
    end_step(app_dir)
    if record is None:
        return False
    pid, pgid = int(record["pid"]), int(record["pgid"])
    if not _is_deployctl(pid):
        return False
    own_group = pgid == os.getpgid(0)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if own_group:
                os.kill(pid, sig)
            else:
                os.killpg(pgid, sig)
        if _gone(pid, KILL_GRACE_S):
            break
    return True


def restore_checkout(src: Path, commit: str) -> None:
    """Check out `commit` in `src` again (detached, cleaned)."""
    with contextlib.suppress(FileNotFoundError):
        (src / ".git" / "index.lock").unlink()  # left by a git command the kill interrupted
    if _head(src) == commit:
        return
    for args in (["checkout", "--quiet", "--force", "--detach", commit], ["clean", "-ffdxq"]):
        done = subprocess.run(["git", *args], cwd=src, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            detail = " | ".join(done.stderr.strip().splitlines()[-3:])
            raise OSError(f"git {args[0]} of the previous release failed: {detail}")


def abort(
    root: Path,
    name: str,
    job: str,
    health: Callable[[str, float], int | None],
    health_path: str,
    timeout_s: float,
) -> dict[str, Any]:
    """Stop job `job` on the server and undo what it did (see the module docstring)."""
    app_dir = root / "apps" / name
    report: dict[str, Any] = {
        "changed": False,
        "released": False,
        "removed": False,
        "restored": False,
        "restarted": False,
        "step_killed": kill_step(app_dir),
    }
    record = _read_json(app_dir / SNAPSHOT_FILE)
    if record is None or record.get("job") != job or record.get("released"):
        if record is not None and record.get("job") == job:
            report["released"] = True  # too late to undo: the new release is live
            _forget(app_dir)
        if app_dir.is_dir() and not any(app_dir.iterdir()):
            app_dir.rmdir()  # only the bookkeeping of a step that was killed at once
        report["running"] = supervise.daemon_pid(root, name) is not None
        return report
    report["changed"] = True
    service = record.get("service")
    if not isinstance(service, dict):  # a first deploy: nothing of it may stay
        supervise.stop_daemon(root, name)
        shutil.rmtree(app_dir, ignore_errors=True)
        report.update(removed=True, running=False)
        return report
    commit = record.get("commit")
    if isinstance(commit, str):
        restore_checkout(app_dir / "src", commit)
    (app_dir / "service.json").write_text(json.dumps(service, indent=2) + "\n")
    if (app_dir / SNAPSHOT_ENV).exists():
        _write_private(app_dir / ".env", (app_dir / SNAPSHOT_ENV).read_text())
    was_running = record.get("daemon_pid") is not None
    if was_running and supervise.daemon_pid(root, name) != record.get("daemon_pid"):
        supervise.start_daemon(root, name)
        report["restarted"] = True
    elif not was_running:
        supervise.stop_daemon(root, name)
    if was_running and service.get("command"):  # a bot-only release has no URL to wait for
        host = str(service.get("host", "127.0.0.1"))
        host = "127.0.0.1" if host == "0.0.0.0" else host  # noqa: S104 - comparing, not binding
        report["health_status"] = health(
            f"http://{host}:{service.get('port')}{health_path}", timeout_s
        )
    _forget(app_dir)
    report.update(restored=True, running=was_running)
    return report
