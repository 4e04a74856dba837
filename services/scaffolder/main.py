"""Running the scaffolder on the bus: build the dependencies, consume, shut down.

    await run_scaffolder(settings, bus)   # until cancelled

`settings` is the system's `Settings` (scaffolder settings are derived from it and the
environment, `ORCHESTRATOR_SCAFFOLDER_*`) or a `ScaffolderSettings`; project statuses go
through the REST API of `settings` (`ApiProjectStatus`) unless a `projects` updater is given.
`run_actor(ctx)` is the entry of `orchestrator up` / `orchestrator run scaffolder`.
"""

from __future__ import annotations

import asyncio

import structlog

from services.scaffolder.handlers import (
    ProjectStatusReader,
    ProjectStatusUpdater,
    ScaffolderDeps,
    handle_scaffolder_message,
)
from services.scaffolder.render import CopierRenderer
from services.scaffolder.settings import ScaffolderSettings
from shared import registry
from shared.actor import ActorContext, run_parts
from shared.api_client import ApiClient, NotFoundError
from shared.api_client.schemas import ProjectUpdate
from shared.contracts import (
    BaseResult,
    ProjectStatus,
    ScaffolderMessage,
)
from shared.git import GitHubProvider, GitProvider, build_provider
from shared.messaging import Bus, MessageContext
from shared.settings import SHUTDOWN_GRACE_S, Settings
from shared.steps import StepProgressReporter

__all__ = [
    "ApiProjectStatus",
    "build_deps",
    "run_actor",
    "run_scaffolder",
]

log = structlog.get_logger(__name__)


class ApiProjectStatus:
    """`ProjectStatusUpdater` and `ProjectStatusReader` over the REST API client.

    The API keeps no failure text on a project; a failure's reason travels in the result and
    the progress events, and is logged here."""

    def __init__(self, client: ApiClient) -> None:
        self._client = client

    async def set_project_status(
        self,
        project_id: str,
        status: ProjectStatus,
        *,
        repository_url: str | None = None,
        error: str | None = None,
    ) -> None:
        """PATCH the project's status (and repository URL when given)."""
        change = (
            ProjectUpdate(status=status, repository_url=repository_url)
            if repository_url is not None
            else ProjectUpdate(status=status)
        )
        await self._client.update_project(project_id, change)
        if error:
            log.info("project_failed", project_id=project_id, reason=error)

    async def get_project_status(self, project_id: str) -> ProjectStatus | None:
        """The project's status, None when the API does not know the project."""
        try:
            return (await self._client.get_project(project_id)).status
        except NotFoundError:
            return None


def build_deps(
    settings: ScaffolderSettings,
    bus: Bus,
    projects: ProjectStatusUpdater,
    *,
    project_reader: ProjectStatusReader | None = None,
    git: GitProvider | None = None,
    renderer: CopierRenderer | None = None,
) -> ScaffolderDeps:
    """The real dependencies: the configured git provider, copier in a child, the bus."""
    return ScaffolderDeps(
        settings=settings,
        git=git or build_provider(settings.git, data_dir=settings.data_dir),
        projects=projects,
        progress=StepProgressReporter(bus, label="scaffold"),
        project_reader=project_reader,
        renderer=renderer or CopierRenderer(),
    )


async def run_scaffolder(
    settings: Settings | ScaffolderSettings,
    bus: Bus,
    projects: ProjectStatusUpdater | None = None,
    *,
    project_reader: ProjectStatusReader | None = None,
    git: GitProvider | None = None,
    renderer: CopierRenderer | None = None,
) -> None:
    """Consume `scaffolder:queue` until cancelled; results go to each message's callback.

    Without `projects`, statuses go through the REST API named by the system's `settings`
    (`ApiProjectStatus`, also used as the reader), which then must be a `Settings`."""
    if projects is None:
        if not isinstance(settings, Settings):
            raise TypeError("run_scaffolder needs `projects` or the system's Settings")
        async with ApiClient.from_settings(settings) as api:
            adapter = ApiProjectStatus(api)
            await _consume(
                settings, bus, adapter, project_reader=adapter, git=git, renderer=renderer
            )
    else:
        await _consume(
            settings, bus, projects, project_reader=project_reader, git=git, renderer=renderer
        )


async def _consume(
    settings: Settings | ScaffolderSettings,
    bus: Bus,
    projects: ProjectStatusUpdater,
    *,
    project_reader: ProjectStatusReader | None,
    git: GitProvider | None,
    renderer: CopierRenderer | None,
) -> None:
    if isinstance(settings, ScaffolderSettings):
        scaffolder, grace_s = settings, SHUTDOWN_GRACE_S
    else:
        scaffolder, grace_s = ScaffolderSettings.of(settings), settings.shutdown_grace_s
    deps = build_deps(
        scaffolder, bus, projects, project_reader=project_reader, git=git, renderer=renderer
    )

    async def on_message(message: ScaffolderMessage, ctx: MessageContext) -> BaseResult:
        return await handle_scaffolder_message(message, deps, final_attempt=ctx.is_last_attempt)

    consumer = bus.consumer(
        registry.get("scaffolder:queue").name,
        on_message,
        concurrency=scaffolder.concurrency,
        max_attempts=scaffolder.max_attempts,
    )
    log.info("scaffolder_started", provider=deps.git.name, data_dir=str(scaffolder.data_dir))
    try:
        await run_parts(
            registry.Actor.SCAFFOLDER.value, consumers=[consumer], shutdown_grace_s=grace_s
        )
    finally:
        if renderer is None:
            await asyncio.to_thread(deps.renderer.close)
        if isinstance(deps.git, GitHubProvider) and git is None:
            await deps.git.aclose()


async def run_actor(ctx: ActorContext) -> None:
    """The `scaffolder` actor for `orchestrator up` / `orchestrator run scaffolder`."""
    redis = ctx.redis()
    try:
        await run_scaffolder(ctx.settings, Bus(redis, actor=registry.Actor.SCAFFOLDER))
    finally:
        await redis.aclose()
