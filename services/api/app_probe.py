"""The deployed apps' health, as `orchestrator_deployed_app_up{project}`.

The API owns the deploy history: every `interval_s`, the latest succeeded deploy of each
project not archived is probed at `<url>/health`; 1 when it answers 2xx within `timeout_s`,
else 0. A project archived (or without a succeeded deploy) leaves the gauge. The
`DeployedAppDown` alert (deploy/prometheus/alerts.yml) fires on 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import httpx
import structlog
from sqlalchemy import select

from services.api.db import Database
from services.api.deploys.models import Deploy
from services.api.projects.models import Project
from shared.messaging.cancel import raise_if_cancelling
from shared.observability.metrics import SystemMetrics

__all__ = ["AppProbe"]

log = structlog.get_logger("services.api.app_probe")


class AppProbe:
    """Probes the deployed apps; `run()` until cancelled."""

    def __init__(self, database: Database, *, interval_s: float, timeout_s: float) -> None:
        self.database = database
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self.gauge = SystemMetrics.default().deployed_app_up
        self._known: set[str] = set()
        self.last: dict[str, tuple[bool, float]] = {}
        """Project id → (up, when: epoch seconds) of the last pass (the console shows it)."""

    async def targets(self) -> dict[str, str]:
        """Project id → URL of its latest succeeded deploy (projects not archived)."""
        query = (
            select(Deploy.project_id, Deploy.url)
            .join(Project, Project.id == Deploy.project_id)
            .where(Deploy.outcome == "succeeded", Deploy.url.is_not(None))
            .where(Project.status != "archived")
            .order_by(Deploy.id)
        )
        async with self.database.sessionmaker() as session:
            rows = (await session.execute(query)).all()
        return {project_id: str(url) for project_id, url in rows}  # the latest wins

    async def probe_once(self) -> dict[str, bool]:
        """Probe every target once and set the gauge; project id → up."""
        targets = await self.targets()
        async with httpx.AsyncClient(timeout=self.timeout_s) as client:
            results = await asyncio.gather(*(self._up(client, url) for url in targets.values()))
        status = dict(zip(targets, results, strict=True))
        for project_id, up in status.items():
            self.gauge.labels(project_id).set(1 if up else 0)
        for gone in self._known - set(status):
            with contextlib.suppress(KeyError):
                self.gauge.remove(gone)
        self._known = set(status)
        now = time.time()
        self.last = {project_id: (up, now) for project_id, up in status.items()}
        return status

    @staticmethod
    async def _up(client: httpx.AsyncClient, url: str) -> bool:
        try:
            response = await client.get(f"{url.rstrip('/')}/health")
        except httpx.HTTPError:
            return False
        return response.is_success

    async def run(self) -> None:
        """Probe every `interval_s`; a failing pass is logged and retried next time."""
        while True:
            try:
                await self.probe_once()
            except Exception as error:  # noqa: BLE001 - observability never stops the API
                raise_if_cancelling()
                log.warning("app_probe_failed", error=f"{type(error).__name__}: {error}")
            await asyncio.sleep(self.interval_s)
