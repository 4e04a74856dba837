"""Removing what archived projects left deployed: a periodic reconcile against the API.

Archiving a project (`PATCH /api/projects/{id}` to `archived`, `orchestrator project archive
ID`) is the user's way to retire it, yet no queue message asks for a removal and the
contracts stay as they are. So infra-service reconciles: at start and every
`reconcile_interval_s`, it asks the API for the port allocations of archived projects
(`GET /api/servers/{handle}/allocations?project_status=archived`, every server that is not
decommissioned) and, for each one:

1. skips it for this pass while a deploy of the project is under way: a deploy task of the
   project queued or running in the API, or a deploy job holding the project's lock here;
2. runs `remove_project.yml` on the allocation's server (`remove_project`, under the same
   per-project lock as deploys): the supervisor and the project's process group are stopped,
   the project's directory is deleted;
3. only then releases the allocation (`DELETE /api/servers/{handle}/allocations/{project}`,
   the route langgraph's deploy flow releases ports with), so a port is never freed under a
   process that may still listen on it.

A removal or release that fails is logged and tried again on the next pass (the allocation,
still there, is the to-do list); nothing in a pass, not even the API being down, ends the
loop. Every step is idempotent: removing a project that is not there stops nothing, a release
already done (404) counts as done. An archived project that never got a port has no
allocation and is never touched. Archived is final in the lifecycle and the API creates no
task for an archived project, so a deployment removed here does not come back. Projects are
not deleted through the API (it has no such route); deleting a project row would drop its
allocations with it (`ON DELETE CASCADE`), so archive first.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Literal, Protocol

import structlog

from services.infra_service.deps import InfraDeps, app_lock_key
from services.infra_service.handlers import remove_project
from shared.api_client import ApiClient
from shared.api_client.errors import NotFoundError
from shared.api_client.schemas import ServerStatus
from shared.contracts import ProjectStatus, TaskStatus, TaskType
from shared.messaging.cancel import raise_if_cancelling

__all__ = [
    "ApiArchivedDeployments",
    "ArchivedDeployments",
    "Deployment",
    "ReconcilePass",
    "reconcile_archived",
    "run_reconcile_loop",
]

_log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Deployment:
    """A port allocation of a project on a server, as the reconcile sees it."""

    server_handle: str
    server_address: str
    project_id: str
    port: int


@dataclass
class ReconcilePass:
    """What one pass did, by deployment."""

    removed: list[Deployment] = field(default_factory=list)
    skipped: list[Deployment] = field(default_factory=list)
    failed: list[tuple[Deployment, str]] = field(default_factory=list)


class ArchivedDeployments(Protocol):
    """Where the deployments of archived projects are listed, and their ports released."""

    async def archived(self) -> list[Deployment]:
        """The allocations of archived projects on every server in use."""
        ...

    async def deploy_in_progress(self, project_id: str) -> bool:
        """True while a deploy task of the project is queued or running."""
        ...

    async def release(self, deployment: Deployment) -> None:
        """Free the deployment's port (already free counts as done)."""
        ...


class ApiArchivedDeployments:
    """`ArchivedDeployments` in the REST API (the caller owns and closes the client)."""

    def __init__(self, api: ApiClient) -> None:
        self._api = api

    async def archived(self) -> list[Deployment]:
        """Pages through the servers, then asks each for its archived projects' allocations."""
        found: list[Deployment] = []
        offset = 0
        while True:
            page = await self._api.list_servers(limit=100, offset=offset)
            for server in page.items:
                if server.status == ServerStatus.DECOMMISSIONED:
                    continue
                allocations = await self._api.list_allocations(
                    server.handle, project_status=ProjectStatus.ARCHIVED
                )
                found.extend(
                    Deployment(server.handle, server.address, item.project_id, item.port)
                    for item in allocations
                )
            offset += len(page.items)
            if not page.items or offset >= page.total:
                return found

    async def deploy_in_progress(self, project_id: str) -> bool:
        """Asks for the project's queued and running deploy tasks."""
        for status in (TaskStatus.QUEUED, TaskStatus.RUNNING):
            page = await self._api.list_tasks(
                status=status, project_id=project_id, task_type=TaskType.DEPLOY, limit=1
            )
            if page.total:
                return True
        return False

    async def release(self, deployment: Deployment) -> None:
        """`DELETE /api/servers/{handle}/allocations/{project_id}`; 404 means done already."""
        with contextlib.suppress(NotFoundError):
            await self._api.release_port(deployment.server_handle, deployment.project_id)


async def _reconcile_one(
    deployment: Deployment, source: ArchivedDeployments, deps: InfraDeps
) -> tuple[Literal["removed", "skipped", "failed"], str]:
    if await source.deploy_in_progress(deployment.project_id):
        return "skipped", "a deploy task of the project is queued or running"
    target = await deps.servers.by_address(deployment.server_address)
    if deps.locks.held(app_lock_key(target, deployment.project_id)):
        return "skipped", "a deploy job of the project runs here"
    removed = await remove_project(
        deployment.project_id,
        deployment.server_address,
        deps,
        request_id=f"reconcile:{deployment.server_handle}:{deployment.project_id}",
    )
    if removed.status != "success":
        return "failed", f"removal failed: {removed.error or removed.status}"
    await source.release(deployment)
    return "removed", "stopped" if removed.stopped else "nothing was running"


async def reconcile_archived(source: ArchivedDeployments, deps: InfraDeps) -> ReconcilePass:
    """One pass: remove the deployment of every archived project, then release its port.

    Raises only when the deployments cannot be listed (the API is down, ...); a deployment
    that cannot be removed or released is reported in `failed` and left for the next pass."""
    outcome = ReconcilePass()
    for deployment in await source.archived():
        log = _log.bind(
            project_id=deployment.project_id,
            server=deployment.server_handle,
            port=deployment.port,
        )
        try:
            verdict, detail = await _reconcile_one(deployment, source, deps)
        except Exception as error:  # noqa: BLE001 - logged; the allocation stays, next pass retries
            verdict, detail = "failed", f"{type(error).__name__}: {error}"
        if verdict == "removed":
            outcome.removed.append(deployment)
            log.info("archived project removed", detail=detail)
        elif verdict == "skipped":
            outcome.skipped.append(deployment)
            log.info("archived project kept for now", reason=detail)
        else:
            outcome.failed.append((deployment, detail))
            log.warning("archived project not removed; retried next pass", error=detail)
    return outcome


async def run_reconcile_loop(
    source: ArchivedDeployments, deps: InfraDeps, *, interval_s: float
) -> None:
    """`reconcile_archived` at once and then every `interval_s`, until cancelled; a pass
    that fails is logged and the loop goes on."""
    while True:
        raise_if_cancelling()  # a client call may have absorbed it
        try:
            await reconcile_archived(source, deps)
        except Exception as error:  # noqa: BLE001 - the loop outlives any one pass
            raise_if_cancelling()
            _log.warning("reconcile pass failed", error=f"{type(error).__name__}: {error}")
        await asyncio.sleep(interval_s)
