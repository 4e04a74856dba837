"""A real API process (`python -m services.api`, uvicorn) for tests and the benchmark."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from services.api.auth.service import AuthService
from services.api.db import Database
from services.api.migrate import upgrade
from shared.api_client.schemas import Scope
from shared.redis_server import free_port

ROOT = Path(__file__).resolve().parents[2]


class ApiProcess:
    """`python -m services.api` on a free port, configured through its environment."""

    def __init__(
        self,
        *,
        database_url: str,
        redis_url: str | None,
        relay_enabled: bool = True,
        service_key: str | None = None,
        log_path: Path | None = None,
    ) -> None:
        self.port = free_port()
        self.env = {
            **os.environ,
            "ORCHESTRATOR_DATABASE_URL": database_url,
            "ORCHESTRATOR_API__HOST": "127.0.0.1",
            "ORCHESTRATOR_API__PORT": str(self.port),
            "ORCHESTRATOR_API__RELAY_ENABLED": "true" if relay_enabled else "false",
            "ORCHESTRATOR_API__RELAY_POLL_S": "0.2",
            "ORCHESTRATOR_LOG_LEVEL": "WARNING",
        }
        if redis_url:
            self.env["ORCHESTRATOR_REDIS_URL"] = redis_url
        if service_key:
            self.env["ORCHESTRATOR_API__SERVICE_KEY"] = service_key
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Base URL of the API."""
        return f"http://127.0.0.1:{self.port}"

    def start(self, *, timeout_s: float = 60.0) -> ApiProcess:
        """Start the process and wait until `/health` answers."""
        log = open(self.log_path or os.devnull, "ab")  # noqa: SIM115 - owned by the child
        self.process = subprocess.Popen(
            [sys.executable, "-m", "services.api"],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                tail = self.log_path.read_text()[-2000:] if self.log_path else ""
                raise RuntimeError(f"API exited with {self.process.returncode}: {tail}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"API did not answer on {self.url} within {timeout_s}s")

    def kill(self) -> None:
        """SIGKILL: no shutdown, no flushing, like a crash."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def terminate(self, *, timeout_s: float = 15.0) -> int:
        """SIGTERM and wait; returns the exit code."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout_s)


async def mint_key(database_url: str, name: str, scope: Scope, user_id: int | None = None) -> str:
    """Migrate the database at `database_url` and create a key there; its secret."""
    database = Database(database_url)
    try:
        await upgrade(database)
        async with database.sessionmaker() as session:
            _, secret = await AuthService(session).create_key(name, scope, user_id)
            await session.commit()
    finally:
        await database.close()
    return secret
