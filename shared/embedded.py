"""The embedded topology: what `orchestrator up` starts when nothing is configured.

A private Redis (with append-only persistence) under the data directory, unless `REDIS_URL`
is set. The URLs of a running system are written to `<data_dir>/runtime.json`, so the other
commands (`orchestrator queues`, `task watch`, `chat`, ...) find it without configuration.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from shared.redis_server import RedisServer
from shared.settings import Settings

__all__ = [
    "CLI_KEY",
    "SERVICE_KEY",
    "EmbeddedRedis",
    "RuntimeInfo",
    "read_runtime",
    "read_secret",
    "resolve_redis_url",
    "start_redis",
    "write_runtime",
    "write_secret",
]

RUNTIME_FILE = "runtime.json"


@dataclass(frozen=True)
class RuntimeInfo:
    """Where a running system can be reached."""

    redis_url: str
    api_url: str
    pid: int
    metrics_url: str = ""
    """The process's Prometheus endpoint (empty when metrics are off)."""


@dataclass
class EmbeddedRedis:
    """The Redis a system uses, and the private server behind it when we started one."""

    url: str
    server: RedisServer | None = None

    def stop(self) -> None:
        """Stop the private server, if any (its data stays in the data directory)."""
        if self.server is not None:
            self.server.stop()


def start_redis(settings: Settings) -> EmbeddedRedis:
    """Use the configured Redis, or start a private one with persistence in the data dir (on
    the port of the last run while it is free, so that workers a killed run left behind
    reconnect)."""
    if settings.redis_url:
        return EmbeddedRedis(url=settings.redis_url)
    data = (settings.data_dir / "redis").resolve()
    server = RedisServer(data_dir=data, appendonly=True).start()
    return EmbeddedRedis(url=server.url, server=server)


def write_runtime(settings: Settings, info: RuntimeInfo) -> Path:
    """Record where the running system is, for the other commands."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    path = settings.data_dir / RUNTIME_FILE
    path.write_text(json.dumps(asdict(info), indent=2) + "\n")
    return path


def read_runtime(settings: Settings) -> RuntimeInfo | None:
    """The running system recorded in the data dir, or None when none is running."""
    path = settings.data_dir / RUNTIME_FILE
    try:
        info = RuntimeInfo(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None
    try:
        os.kill(info.pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return info


def resolve_redis_url(settings: Settings) -> str | None:
    """The Redis of this system: configured, else the running embedded one, else None."""
    if settings.redis_url:
        return settings.redis_url
    info = read_runtime(settings)
    return info.redis_url if info else None


def _secret_file(settings: Settings, name: str) -> Path:
    return settings.data_dir / "secrets" / name


def read_secret(settings: Settings, name: str) -> str | None:
    """A secret the embedded mode keeps in `<data_dir>/secrets/` (mode 0600), if present."""
    try:
        value = _secret_file(settings, name).read_text().strip()
    except OSError:
        return None
    return value or None


def write_secret(settings: Settings, name: str, value: str) -> Path:
    """Keep a secret in `<data_dir>/secrets/<name>`, readable by its owner only."""
    path = _secret_file(settings, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.parent.chmod(0o700)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(value + "\n")
    return path


CLI_KEY = "cli.key"
"""File name of the local admin's API key, written by `orchestrator up`."""
SERVICE_KEY = "service.key"
"""File name of the service key the embedded actors share."""
