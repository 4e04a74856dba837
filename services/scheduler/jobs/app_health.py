"""Job `check_app_health`: probe the release each active project serves, record changes.

- a release whose health check fails `app_down_after_failures` times in a row is reported
  `down` through the API (once: it stays down until a probe succeeds); one that answers again
  is reported `up`. The API numbers each change, and the front doors' notifiers tell the
  project's owner of each exactly once;
- a release without a URL (a bot-only project: no web service) is healthy while its
  supervisor's processes run, where this scheduler can see them (the local server);
- the supervisor's restart count of the release, where this scheduler can read it (the local
  server), is reported when it changed.
"""

from __future__ import annotations

import asyncio

import structlog

from services.scheduler import keys
from services.scheduler.deps import SchedulerDeps
from services.scheduler.errors import ApiConflictError
from services.scheduler.loop import Tick
from shared.api_client.schemas import DeployDTO, DeployHealth, DeployHealthReport

__all__ = ["check_app_health"]

log = structlog.get_logger("services.scheduler.jobs.app_health")

_FAILURES_TTL_S = 86_400


async def check_app_health(deps: SchedulerDeps, tick: Tick) -> None:
    """Probe every serving release (concurrently, bounded) and report what changed."""
    current = await deps.api.list_current_releases()
    releases = [r for r in current if r.url]
    limit = asyncio.Semaphore(deps.settings.health_concurrency)

    async def probe(release: DeployDTO) -> bool:
        async with limit:
            return await deps.app_probe.healthy(str(release.url))

    answers = await asyncio.gather(*(probe(release) for release in releases))
    for release, healthy in zip(releases, answers, strict=True):
        await _record(deps, release, healthy=healthy, tick=tick)
    for release in (r for r in current if not r.url):  # no web service: a bot-only project
        running = deps.restarts.processes_up(release)
        if running is not None:  # its supervisor's process state, where this replica sees it
            await _record(deps, release, healthy=running, tick=tick)


async def _record(deps: SchedulerDeps, release: DeployDTO, *, healthy: bool, tick: Tick) -> None:
    health = await _health_change(deps, release, healthy=healthy, tick=tick)
    restarts = deps.restarts.restarts(release)
    if restarts == release.restarts:
        restarts = None
    if health is None and restarts is None:
        return
    report = DeployHealthReport(health=health, restarts=restarts)
    try:
        await deps.api.report_deploy_health(release.project_id, release.task_id, report)
    except ApiConflictError:  # a newer release replaced it meanwhile: its own probes follow
        log.info("app_release_replaced", project_id=release.project_id, task_id=release.task_id)
        return
    if health is not None:
        log.warning(
            "app_down" if health == DeployHealth.DOWN else "app_up",
            project_id=release.project_id,
            task_id=release.task_id,
            url=release.url,
            restarts=release.restarts if restarts is None else restarts,
            tick=tick.number,
        )


async def _health_change(
    deps: SchedulerDeps, release: DeployDTO, *, healthy: bool, tick: Tick
) -> DeployHealth | None:
    """The health to report, or None when it is what the API already has."""
    failures_key = keys.app_failures_key(release.task_id)
    if healthy:
        await deps.redis.delete(failures_key)
        return None if release.health == DeployHealth.UP else DeployHealth.UP
    failures = int(await deps.redis.incr(failures_key))
    await deps.redis.expire(failures_key, _FAILURES_TTL_S)
    if failures < deps.settings.app_down_after_failures:
        log.info(
            "app_probe_failed",
            project_id=release.project_id,
            failures=failures,
            tick=tick.number,
        )
        return None
    return None if release.health == DeployHealth.DOWN else DeployHealth.DOWN
