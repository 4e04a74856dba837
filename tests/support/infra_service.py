"""The infra-service tests' helpers: settings, dependencies, app sources, servers, leftovers."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

from services.infra_service.ansible import AnsiblePlaybookRunner
from services.infra_service.handlers import InfraDeps
from services.infra_service.secrets import (
    EnvSecretsProvider,
    FileSecretsProvider,
    ProjectSecretsProvider,
    SchemeSecretsProvider,
)
from services.infra_service.servers import SettingsServerLookup
from services.infra_service.settings import InfraSettings
from shared.api_client import ApiClient
from shared.contracts import BaseMessage, ProgressEvent

APP_SOURCE = textwrap.dedent(
    """
    import json, os, sys
    from http.server import BaseHTTPRequestHandler, HTTPServer

    VERSION = {version!r}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps({{
                "version": VERSION,
                "greeting": os.environ.get("GREETING"),
                "has_secret": bool(os.environ.get("API_SECRET")),
                "pid": os.getpid(),
                "commit": os.environ.get("APP_COMMIT"),
            }}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    {crash}
    HTTPServer((os.environ["HOST"], int(os.environ["PORT"])), Handler).serve_forever()
    """
)


@dataclass
class RecordingProgress:
    """A progress reporter that keeps every event."""

    events: list[ProgressEvent] = field(default_factory=list)

    async def report(self, message: BaseMessage, event: ProgressEvent) -> None:
        """Keep the event."""
        self.events.append(event)


def make_settings(data_dir: Path, **overrides: object) -> InfraSettings:
    """Settings for tests: short timeouts and fast retries."""
    values: dict[str, object] = {
        "data_dir": data_dir,
        "health_timeout_s": 20.0,
        "playbook_timeout_s": 100.0,
        "ssh_attempts": 2,
        "ssh_backoff_s": 0.1,
        "ssh_connect_timeout_s": 3,
    }
    values.update(overrides)
    return InfraSettings.model_validate(values)


def make_deps(
    settings: InfraSettings, environ: Mapping[str, str] | None = None
) -> tuple[InfraDeps, RecordingProgress]:
    """Real runner and server lookup; `env:` secrets from `environ`, `project:` ones from the
    legacy files only (no API here); recorded progress."""
    progress = RecordingProgress()
    files = FileSecretsProvider(settings.effective_secrets_dir)
    secrets = SchemeSecretsProvider(
        {
            "env": EnvSecretsProvider(dict(environ or {})),
            "file": files,
            "project": ProjectSecretsProvider(files, None, None),
        }
    )
    deps = InfraDeps(
        settings=settings,
        runner=AnsiblePlaybookRunner(settings),
        secrets=secrets,
        servers=SettingsServerLookup(settings),
        progress=progress,
    )
    return deps, progress


def make_repo(settings: InfraSettings, full_name: str, files: Mapping[str, str]) -> Path:
    """Create or update the bare repository `full_name` with one commit of `files`."""
    bare = settings.effective_repos_dir / f"{full_name}.git"
    work = settings.data_dir / "worktrees" / full_name
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@example.invalid"]
    if not bare.exists():
        bare.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(bare)], check=True)
        subprocess.run(
            ["git", "clone", "-q", str(bare), str(work)], check=True, capture_output=True
        )
    for name, content in files.items():
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_text(content)
    subprocess.run([*git, "-C", str(work), "add", "-A"], check=True)
    subprocess.run([*git, "-C", str(work), "commit", "-q", "-m", "change"], check=True)
    subprocess.run([*git, "-C", str(work), "push", "-q", "origin", "HEAD:main"], check=True)
    return bare


def app_files(version: str, *, crash: bool = False) -> dict[str, str]:
    """A tiny http.server project answering every path (so /health) with 200."""
    crash_line = "sys.exit('boom: this project refuses to start')" if crash else ""
    return {"main.py": APP_SOURCE.format(version=version, crash=crash_line)}


def stop_all_apps(base_dir: Path) -> None:
    """Kill whatever a test left running under `base_dir` (daemons and projects)."""
    for pid_file in base_dir.glob("apps/*/*.pid"):
        try:
            pid = int(pid_file.read_text())
            os.killpg(pid, signal.SIGKILL)
        except (ValueError, OSError):
            continue


def read_json(path: Path) -> dict[str, object]:
    """A JSON object from a file."""
    loaded: dict[str, object] = json.loads(path.read_text())
    return loaded


def server(handle: str, address: str, **extra: Any) -> dict[str, Any]:
    """A `ServerDTO` body."""
    body = {
        "handle": handle,
        "address": address,
        "ssh_user": "deploy",
        "credentials_ref": "env:WEB_KEY",
        "status": "ready",
        "port_range_start": 10000,
        "port_range_end": 10999,
        "capacity": 1000,
        "created_at": "2026-01-01T00:00:00Z",
    }
    body.update(extra)
    return body


class FakeRegistry:
    """The three server routes of the API over a dict; PATCH bodies are recorded."""

    def __init__(self, servers: list[dict[str, Any]]) -> None:
        self.servers = {item["handle"]: item for item in servers}
        self.patches: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        """Answer one request."""
        parts = request.url.path.strip("/").split("/")
        if request.method == "GET" and parts == ["api", "servers"]:
            items = list(self.servers.values())
            return httpx.Response(
                200, json={"items": items, "total": len(items), "limit": 100, "offset": 0}
            )
        handle = parts[-1]
        if handle not in self.servers:
            return httpx.Response(404, json={"error": {"code": "not_found", "message": "no"}})
        if request.method == "PATCH":
            self.patches.append((handle, json.loads(request.content)))
        return httpx.Response(200, json=self.servers[handle])


def client(registry: FakeRegistry) -> ApiClient:
    """An API client whose transport is the fake registry."""
    return ApiClient("http://api.test", key="k", transport=httpx.MockTransport(registry))


GATED_APP = textwrap.dedent(
    """
    import json, os
    from http.server import BaseHTTPRequestHandler, HTTPServer

    GATE = {gate!r}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            ready = os.path.exists(GATE)
            self.send_response(200 if ready else 503)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(json.dumps({{"version": "gated", "pid": os.getpid()}}).encode())

        def log_message(self, *args):
            pass

    HTTPServer((os.environ["HOST"], int(os.environ["PORT"])), Handler).serve_forever()
    """
)
"""A project that listens at once but answers its health check 503 until `gate` exists:
its deploy waits in the playbook's health check, a controlled slow deploy."""


def gated_app(gate: Path) -> dict[str, str]:
    """The files of a gated project."""
    return {"main.py": GATED_APP.format(gate=str(gate))}


def leftovers(data_dir: Path) -> list[str]:
    """Processes that belong to this data directory: Ansible runs (their environment names
    its home there), deploy steps, supervisors and projects (their files are there)."""
    marker = str(data_dir.resolve())
    found = []
    for process in psutil.process_iter(["pid", "cmdline", "cwd", "environ", "status"]):
        info = process.info
        if info["status"] == psutil.STATUS_ZOMBIE:
            continue
        cmdline = " ".join(info["cmdline"] or [])
        environ = info["environ"] or {}
        if (
            marker in cmdline
            or marker in (info["cwd"] or "")
            or marker in environ.get("ANSIBLE_HOME", "")
        ):
            found.append(f"{info['pid']}: {cmdline}")
    return found


async def no_leftovers(data_dir: Path) -> list[str]:
    """`leftovers`, after giving processes already killed a moment to be reaped."""
    for _ in range(20):
        found = leftovers(data_dir)
        if not found:
            return found
        await asyncio.sleep(0.1)
    return leftovers(data_dir)


def listening_pid(port: int) -> int | None:
    """The process listening on 127.0.0.1:port, if any."""
    for connection in psutil.net_connections("tcp4"):
        listening = connection.status == psutil.CONN_LISTEN
        if listening and getattr(connection.laddr, "port", None) == port:
            return connection.pid
    return None


async def until_listening(port: int, *, other_than: int | None = None) -> int:
    """The pid of the project process the job started, once it listens on `port`."""
    async with asyncio.timeout(60):
        while True:
            pid = listening_pid(port)
            if pid is not None and pid != other_than:
                return pid
            await asyncio.sleep(0.05)
