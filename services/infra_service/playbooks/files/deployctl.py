#!/usr/bin/env python3
"""Server-side steps of provisioning and deploying (stdlib only), run by the playbooks.

Installed beside `supervise.py` in `<base_dir>/bin/`. One command per playbook step, so a
deploy costs a handful of Ansible module runs instead of one per small action. Every command
prints one JSON object on stdout: `{"ok": true, ...}` or `{"ok": false, "error": "..."}` (exit
status 1), which the playbook turns into a clear failure message.

    setup [--recover]          create apps/, check git and venv support; with --recover start
                               every enabled project that is not running
    fetch NAME --repo R --ref F   clone or update the project's checkout at ref F (a branch,
                               `HEAD`, or a full commit sha: exactly that commit); with
                               --token-from-stdin, a token for an https remote (never argv)
    install NAME [--runtime P] create the project's venv (P: a site-packages directory made
                               visible to it), pip-install the declared requirements
                               (requirements.txt or pyproject dependencies) it cannot see
    prepare NAME ...           fetch, then install (one step for the deploy playbook)
    release NAME --port N      write the env file (stdin, mode 0600) and service.json (with the
                               checked-out commit, which the project gets as APP_COMMIT), stop
                               the old instance, check the port is free, start the new one,
                               wait for its health check; when that fails (or the new process
                               exits first, which ends the wait at once), stop the new one
                               and put the previous release back at once (its checkout,
                               service.json and env file; restarted when it ran), reporting
                               `previous_serves`
    abort NAME --job J         stop deploy job J's running step and undo what it did
                               (`rollback.py`: a first deploy is removed, a redeploy gets its
                               previous release back)

`release` records the deploy request's correlation id (`INFRA_CORRELATION_ID`, a chat
turn's) in service.json and in its report, so a release on the server names the conversation
turn that asked for it.

`prepare` and `release` belong to a deploy job when `--job` (or `INFRA_JOB_ID`) is given: they
record the running step and, before the job's first change, a snapshot of the project, which
`abort` goes back to (see `rollback.py`).

How a project starts: a `Procfile` line `web: <command>` (run by /bin/sh with PORT and HOST in
the environment), else `app/main.py` served by uvicorn (`app.main:app`), else `main.py` run by
the project's Python; looked for at the top of the checkout, then in each module directory
(`--modules`, then `backend/`). The project runs from its directory, not pip-installed.
A bot-only project (the `telegram` module, no web service) runs its bot alone: no port is
bound, and the release's health is the supervisor's process state (the bot still runs
`BOT_SETTLE_S` after its start) instead of an HTTP check; its report says `"web": false`.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import rollback  # type: ignore[import-not-found]  # a sibling script on the server, not a package module
import supervise  # type: ignore[import-not-found]  # a sibling script on the server, not a package module

LOG_TAIL_LINES = 15
BOT_SETTLE_S = 3.0
"""How long a bot-only release's bot must keep running to count as started."""
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*")
_FULL_SHA = re.compile(r"^[0-9a-f]{40}$")


class StepError(Exception):
    """A step that cannot complete; its text is the failure message the user reads."""

    def __init__(self, message: str, **report: Any) -> None:
        super().__init__(message)
        self.report = report
        """More of the failure, for the JSON report (e.g. `previous_serves`)."""


def _run(argv: list[str], cwd: Path | None = None) -> None:
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        raise StepError(f"{argv[0]} {argv[1] if len(argv) > 1 else ''} failed: {' | '.join(tail)}")


def setup(root: Path, recover: bool) -> dict[str, Any]:
    """Create the layout, check the runtime, optionally restart stopped projects."""
    (root / "apps").mkdir(parents=True, exist_ok=True)
    _run(["git", "--version"])
    try:
        import ensurepip  # noqa: F401
        import venv  # noqa: F401
    except ImportError as error:
        raise StepError(f"python on the server cannot create venvs: {error}") from None
    started = supervise.start_stopped(root) if recover else []
    return {"services_redeployed": len(started), "started": started}


def _git(args: list[str], env: dict[str, str], cwd: Path | None = None) -> None:
    done = subprocess.run(
        ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        detail = " | ".join(done.stderr.strip().splitlines()[-3:])
        raise StepError(f"git {args[0]} failed: {detail}")


def fetch(root: Path, name: str, repo: str, ref: str, token: str) -> dict[str, Any]:
    """Clone or update `apps/NAME/src` to `ref` of `repo`; the token only in a 0600 file."""
    app_dir = root / "apps" / name
    app_dir.mkdir(parents=True, exist_ok=True)
    src = app_dir / "src"
    with tempfile.TemporaryDirectory(prefix="git-auth-") as private_dir:
        config = Path(private_dir) / "gitconfig"
        descriptor = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            if token:
                basic = base64.b64encode(f"x-access-token:{token}".encode()).decode()
                handle.write(f"[http]\n\textraHeader = Authorization: Basic {basic}\n")
        env = {**os.environ, "GIT_CONFIG_GLOBAL": str(config), "GIT_TERMINAL_PROMPT": "0"}
        if not (src / ".git").exists():
            shutil.rmtree(src, ignore_errors=True)
            _git(["clone", "--quiet", "--no-checkout", repo, str(src)], env)
        else:
            _git(["remote", "set-url", "origin", repo], env, cwd=src)
        pinned = _FULL_SHA.match(ref) is not None
        try:
            _git(["fetch", "--quiet", "--force", "origin", ref], env, cwd=src)
        except StepError as error:
            if pinned:
                raise StepError(f"commit {ref} is not in the repository ({error})") from None
            raise
        _git(["checkout", "--quiet", "--force", "--detach", "FETCH_HEAD"], env, cwd=src)
        _git(["clean", "-ffdxq"], env, cwd=src)
    commit = _head(src)
    if pinned and commit != ref:
        raise StepError(f"fetched commit {commit} is not the commit asked for ({ref})")
    return {"commit": commit}


def _head(src: Path) -> str:
    return subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=src, capture_output=True, text=True, check=True
    ).stdout.strip()


def _write_private(path: Path, content: str) -> None:
    """Write `content` to `path` with mode 0600 from the first byte on."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(descriptor, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(content)


def _requirements(project: Path) -> list[str]:
    """What a project declares it needs: requirements.txt lines, or pyproject dependencies."""
    requirements_txt = project / "requirements.txt"
    if requirements_txt.exists():
        lines = (
            line.split("#", 1)[0].strip() for line in requirements_txt.read_text().splitlines()
        )
        return [line for line in lines if line and not line.startswith("-")]
    pyproject = project / "pyproject.toml"
    if pyproject.exists():
        with pyproject.open("rb") as handle:
            declared = tomllib.load(handle).get("project", {}).get("dependencies", [])
        return [str(item) for item in declared]
    return []


def _missing(venv_python: Path, requirements: list[str]) -> list[str]:
    """The requirements whose distribution the venv cannot see (versions are not compared)."""
    names = [match.group(0) for item in requirements if (match := _NAME.match(item.strip()))]
    probe = (
        "import importlib.metadata as m, json, sys\n"
        "def seen(name):\n"
        "    try:\n        m.distribution(name)\n        return True\n"
        "    except m.PackageNotFoundError:\n        return False\n"
        "print(json.dumps([seen(n) for n in sys.argv[1:]]))"
    )
    done = subprocess.run(
        [str(venv_python), "-c", probe, *names], capture_output=True, text=True, check=True
    )
    seen = json.loads(done.stdout)
    return [item for item, found in zip(requirements, seen, strict=True) if not found]


def find_project(src: Path, modules: list[str]) -> Path | None:
    """The directory of the service to run: the checkout, else its module directories."""
    candidates = [src, *(src / module for module in modules), src / "backend"]
    for candidate in candidates:
        if candidate.is_dir() and detect_command(candidate, "python") is not None:
            return candidate
    return None


def find_bot(src: Path, modules: list[str]) -> Path | None:
    """The directory of the project's Telegram bot module (`telegram/bot/main.py`, run as
    `python -m bot.main`), when the deploy's modules include `telegram`."""
    if "telegram" not in modules:
        return None
    bot = src / "telegram"
    return bot if (bot / "bot" / "main.py").is_file() else None


def install(
    root: Path, name: str, runtime_site_packages: str, modules: list[str]
) -> dict[str, Any]:
    """Create the venv, link the runtime packages, pip-install only what the venv lacks."""
    app_dir = root / "apps" / name
    bot = find_bot(app_dir / "src", modules)
    project = find_project(app_dir / "src", modules) or bot
    if project is None:
        raise StepError(
            "no start command in the repository: add a Procfile 'web:' line, app/main.py or "
            "main.py (at the top or in a module directory such as backend/)"
        )
    venv_python = app_dir / "venv" / "bin" / "python"
    if not venv_python.exists():
        _run([sys.executable, "-m", "venv", "--without-pip", str(app_dir / "venv")])
    if runtime_site_packages:
        probe = "import sysconfig; print(sysconfig.get_path('purelib'))"
        purelib = subprocess.run(
            [str(venv_python), "-c", probe], capture_output=True, text=True, check=True
        ).stdout.strip()
        (Path(purelib) / "_orchestrator_runtime.pth").write_text(runtime_site_packages + "\n")
    requirements = _requirements(project) + ([] if bot in (None, project) else _requirements(bot))
    missing = _missing(venv_python, list(dict.fromkeys(requirements)))
    if missing:
        if not (app_dir / "venv" / "bin" / "pip").exists():
            _run([str(venv_python), "-m", "ensurepip", "--default-pip"])
        pip = [str(venv_python), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
        _run([*pip, *missing], cwd=project)
    return {"installed": missing, "project_dir": str(project.relative_to(app_dir))}


def detect_command(src: Path, python: str) -> list[str] | None:
    """The command that starts the project in `src`, or None."""
    procfile = src / "Procfile"
    if procfile.exists():
        for line in procfile.read_text().splitlines():
            kind, _, command = line.partition(":")
            if kind.strip() == "web" and command.strip():
                return ["/bin/sh", "-c", f"exec {command.strip()}"]
    if (src / "app" / "main.py").exists():
        return [python, "-m", "uvicorn", "app.main:app", "--host", "$HOST", "--port", "$PORT"]
    if (src / "main.py").exists():
        return [python, "main.py"]
    return None


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _health(url: str, timeout_s: float) -> int | None:
    """Poll `url` until it answers 200 or `timeout_s` passes; the last status (None: no answer)."""
    deadline = time.monotonic() + timeout_s
    status: int | None = None
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:  # noqa: S310 - http URL we build
                status = int(answer.status)
        except urllib.error.HTTPError as error:
            status = error.code
        except (OSError, ValueError):
            status = None
        if status == 200 or time.monotonic() >= deadline:
            return status
        time.sleep(0.3)


def _exited(app_dir: Path) -> bool:
    """True once the project process the supervisor started has exited (its recorded pid is
    gone or a zombie); False while it runs or before it was started."""
    try:
        pid = int((app_dir / "app.pid").read_text().strip())
    except (OSError, ValueError):
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[:1] == ["Z"]


def _release_health(app_dir: Path, url: str, timeout_s: float) -> tuple[int | None, bool]:
    """Poll `url` like `_health`, but give up at once when the new release's process exits
    (a release that crashes at start costs the project no more than that): (the last status,
    whether the process exited)."""
    deadline = time.monotonic() + timeout_s
    while True:
        status = _health(url, 0)
        if status == 200:
            return status, False
        if _exited(app_dir):
            return status, True
        if time.monotonic() >= deadline:
            return status, False
        time.sleep(0.3)


def _log_tail(app_dir: Path, label: str = "app") -> str:
    try:
        lines = (app_dir / f"{label}.log").read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return " | ".join(lines[-LOG_TAIL_LINES:])


def _previous(root: Path, name: str, job: str) -> dict[str, Any]:
    """The release that serves before this one: its service.json, env file, commit and
    whether its daemon runs. The job's snapshot (taken before `prepare` moved the checkout)
    when there is one, else the files as they are now."""
    app_dir = root / "apps" / name
    record: dict[str, Any] | None = rollback.read_snapshot(app_dir, job) if job else None
    if record is not None:
        return record
    service = rollback.read_json(app_dir / "service.json")
    env_file = app_dir / ".env"
    return {
        "service": service,
        "commit": None if service is None else service.get("commit"),
        "env": env_file.read_text() if env_file.exists() else None,
        "daemon_pid": supervise.daemon_pid(root, name),
    }


def _put_back(
    root: Path, name: str, previous: dict[str, Any], health: str, timeout_s: float
) -> bool:
    """Put the previous release back at once (checkout, service.json, env file) and restart
    it when it ran; True when it answers its health check again."""
    app_dir = root / "apps" / name
    service = previous.get("service")
    if not isinstance(service, dict):
        return False  # a first release: there is nothing to go back to
    commit = previous.get("commit") or service.get("commit")
    if isinstance(commit, str) and commit:
        rollback.restore_checkout(app_dir / "src", commit)
    (app_dir / "service.json").write_text(json.dumps(service, indent=2) + "\n")
    if isinstance(previous.get("env"), str):
        _write_private(app_dir / ".env", previous["env"])
    if previous.get("daemon_pid") is None:
        return False
    supervise.start_daemon(root, name)
    if not service.get("command"):  # a bot-only release: it serves while its processes run
        time.sleep(min(BOT_SETTLE_S, timeout_s))
        states = supervise.process_states(app_dir)
        return bool(states) and all(states.values())
    host = str(service.get("host", "127.0.0.1"))
    host = "127.0.0.1" if host == "0.0.0.0" else host  # noqa: S104 - comparing, not binding
    return _health(f"http://{host}:{service.get('port')}{health}", timeout_s) == 200


def release(
    root: Path,
    name: str,
    modules: list[str],
    port: int,
    bind: str,
    health: str,
    timeout_s: float,
    env_text: str,
    job: str = "",
) -> dict[str, Any]:
    """Replace the running instance of a project with the checked-out one; when the new one
    fails its health check, put the previous release back at once."""
    app_dir = root / "apps" / name
    previous = _previous(root, name, job)
    project = find_project(app_dir / "src", modules)
    python = str(app_dir / "venv" / "bin" / "python")
    command = None if project is None else detect_command(project, python)
    bot = find_bot(app_dir / "src", modules)
    if (project is None or command is None) and bot is None:
        raise StepError("no start command: add a Procfile 'web:' line, app/main.py or main.py")
    commit = _head(app_dir / "src")
    _write_private(app_dir / ".env", env_text)
    service: dict[str, Any] = {"env_file": ".env", "host": bind, "commit": commit}
    if project is not None and command is not None:
        service.update(command=command, cwd=str(project.relative_to(app_dir)), port=port)
    correlation_id = os.environ.get("INFRA_CORRELATION_ID", "")
    if correlation_id:
        service["correlation_id"] = correlation_id
    workers: list[dict[str, Any]] = []
    if bot is not None:  # the bot module runs beside the web service, supervised alike
        bot_command = [python, "-m", "bot.main"]
        workers.append(
            {"name": "bot", "command": bot_command, "cwd": str(bot.relative_to(app_dir))}
        )
        service["workers"] = workers
    (app_dir / "service.json").write_text(json.dumps(service, indent=2) + "\n")
    replaced = supervise.stop_daemon(root, name)
    if "command" not in service:  # a bot-only release: no port, the bot's process is its health
        return _release_workers(root, name, previous, service, health, timeout_s, replaced)
    if not _port_free(bind, port):
        serves = _put_back(root, name, previous, health, timeout_s)
        raise StepError(
            f"port {port} is already in use on the server by another process",
            previous_serves=serves,
        )
    supervise.reset_restarts(app_dir)
    supervise.start_daemon(root, name)
    check_host = "127.0.0.1" if bind == "0.0.0.0" else bind  # noqa: S104 - comparing, not binding
    status, exited = _release_health(app_dir, f"http://{check_host}:{port}{health}", timeout_s)
    if status != 200:
        supervise.stop_daemon(root, name)
        how = "it exited before answering" if exited else f"not within {timeout_s:g} s"
        failure = (
            f"the new release (commit {commit[:12]}) did not answer {health} with 200 ({how}; "
            f"last status: {status}); last log lines: {_log_tail(app_dir)}"
        )
        serves = _put_back(root, name, previous, health, timeout_s)
        old = previous.get("commit") or (previous.get("service") or {}).get("commit")
        named = f" (commit {str(old)[:12]})" if old else ""
        if serves:
            failure += f"; the previous release{named} still serves on port {port}"
        elif isinstance(previous.get("service"), dict):
            failure += "; the previous release was put back but does not answer"
        raise StepError(failure, previous_serves=serves, previous_commit=old)
    names = [worker["name"] for worker in workers]
    return {
        "replaced": replaced,
        "health_status": status,
        "commit": commit,
        "workers": names,
        "correlation_id": correlation_id,
    }


def _release_workers(
    root: Path,
    name: str,
    previous: dict[str, Any],
    service: dict[str, Any],
    health: str,
    timeout_s: float,
    replaced: bool,
) -> dict[str, Any]:
    """Start a release without a web service (a bot-only project): healthy when each of its
    processes still runs `BOT_SETTLE_S` after the start; else the previous one is put back."""
    app_dir = root / "apps" / name
    supervise.reset_restarts(app_dir)
    supervise.start_daemon(root, name)
    commit = str(service["commit"])
    names = [worker["name"] for worker in service.get("workers", [])]
    deadline = time.monotonic() + min(BOT_SETTLE_S, timeout_s)
    states: dict[str, bool] = {}
    while time.monotonic() < deadline:
        time.sleep(0.3)
        states = supervise.process_states(app_dir)
        if states and not all(states.values()) and supervise.read_restarts(app_dir)["restarts"]:
            break  # a process died: the supervisor had to restart it
    states = supervise.process_states(app_dir)
    restarts = supervise.read_restarts(app_dir)["restarts"]
    if not states or not all(states.values()) or restarts:
        supervise.stop_daemon(root, name)
        logs = " | ".join(f"{label}: {_log_tail(app_dir, label)}" for label in names)
        down = [label for label, up in states.items() if not up] or names
        failure = (
            f"the new release (commit {commit[:12]}) did not keep running: "
            f"{', '.join(down)} exited; last log lines: {logs}"
        )
        serves = _put_back(root, name, previous, health, timeout_s)
        raise StepError(failure, previous_serves=serves)
    return {
        "replaced": replaced,
        "health_status": None,
        "commit": commit,
        "workers": names,
        "web": False,
        "correlation_id": service.get("correlation_id", ""),
    }


def _job_step(root: Path, name: str, job: str, step: str) -> None:
    """Record the running step of a deploy job and, first, the project before the job."""
    if job:
        app_dir = root / "apps" / name
        rollback.begin_step(app_dir, job, step)
        rollback.snapshot(root, name, job)


def main(argv: list[str] | None = None) -> int:
    """Run one step; print its JSON report; exit 1 on a failed step."""
    parser = argparse.ArgumentParser(prog="deployctl.py", description=__doc__)
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent)
    parser.add_argument("--recover", action="store_true")
    parser.add_argument("--runtime", default="", help="site-packages made visible to venvs")
    parser.add_argument("--modules", default="", help="module directories, comma-separated")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--bind", default="127.0.0.1")
    parser.add_argument("--health-path", default="/health")
    parser.add_argument("--health-timeout-s", type=float, default=60.0)
    parser.add_argument("--repo", default="")
    parser.add_argument("--ref", default="HEAD")
    parser.add_argument("--token-from-stdin", action="store_true")
    parser.add_argument("--job", default=os.environ.get("INFRA_JOB_ID", ""), help="deploy job id")
    parser.add_argument(
        "command", choices=["setup", "fetch", "install", "prepare", "release", "abort"]
    )
    parser.add_argument("name", nargs="?", default="")
    args = parser.parse_args(argv)
    root: Path = args.root.resolve()
    modules = [module for module in args.modules.split(",") if module]
    try:
        if args.command == "setup":
            report = setup(root, args.recover)
        elif not args.name:
            raise StepError(f"{args.command} needs a project name")
        elif not supervise.is_app_name(args.name):
            raise StepError(
                f"invalid project name {args.name!r}: use 1-64 of A-Z a-z 0-9 _ . - (no path)"
            )
        elif args.command == "abort":
            if not args.job:
                raise StepError("abort needs the job (--job)")
            report = rollback.abort(
                root, args.name, args.job, _health, args.health_path, args.health_timeout_s
            )
        elif args.command in ("fetch", "prepare"):
            token = sys.stdin.read().strip() if args.token_from_stdin else ""
            if args.command == "prepare":
                _job_step(root, args.name, args.job, "prepare")
            report = fetch(root, args.name, args.repo, args.ref, token)
            if args.command == "prepare":
                report.update(install(root, args.name, args.runtime, modules))
        elif args.command == "install":
            report = install(root, args.name, args.runtime, modules)
        else:
            _job_step(root, args.name, args.job, "release")
            report = release(
                root,
                args.name,
                modules,
                args.port,
                args.bind,
                args.health_path,
                args.health_timeout_s,
                sys.stdin.read(),
                args.job,
            )
            if args.job:
                rollback.released(root / "apps" / args.name, args.job)
    except (StepError, OSError, subprocess.CalledProcessError) as error:
        extra = error.report if isinstance(error, StepError) else {}
        sys.stdout.write(json.dumps({"ok": False, "error": str(error), **extra}) + "\n")
        return 1
    finally:
        if args.job and supervise.is_app_name(args.name) and args.command in ("prepare", "release"):
            rollback.end_step(root / "apps" / args.name)
    sys.stdout.write(json.dumps({"ok": True, **report}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
