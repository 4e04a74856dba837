"""The scheduler's jobs, one module each; `build_jobs` binds them to their dependencies.

| job | does |
|---|---|
| `provision_servers` | `ProvisionerMessage` for servers waiting for setup |
| `check_server_health` | probe servers; mark unreachable ones, re-provision recovered ones |
| `check_app_health` | probe deployed releases; report them down / up, and their restarts |
| `stop_idle_workers` | `DeleteWorkerCommand` for workers idle past `worker_idle_s` |
| `enforce_task_deadlines` | re-drive tasks queued too long; fail tasks past their deadline |
| `report_dead_letters` | log and count new dead letters of every queue |
| `trim_streams` | trim acknowledged queue entries and expired dead letters |
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable

from services.scheduler.deps import SchedulerDeps
from services.scheduler.jobs.app_health import check_app_health
from services.scheduler.jobs.dead_letters import report_dead_letters
from services.scheduler.jobs.deadlines import enforce_task_deadlines
from services.scheduler.jobs.health import check_server_health
from services.scheduler.jobs.idle_workers import stop_idle_workers
from services.scheduler.jobs.provisioning import provision_servers
from services.scheduler.jobs.trim import trim_streams
from services.scheduler.loop import Job, Tick

__all__ = [
    "JOBS",
    "build_jobs",
    "check_app_health",
    "check_server_health",
    "enforce_task_deadlines",
    "provision_servers",
    "report_dead_letters",
    "stop_idle_workers",
    "trim_streams",
]

JobFunction = Callable[[SchedulerDeps, Tick], Awaitable[None]]

JOBS: dict[str, JobFunction] = {
    "provision_servers": provision_servers,
    "check_server_health": check_server_health,
    "check_app_health": check_app_health,
    "stop_idle_workers": stop_idle_workers,
    "enforce_task_deadlines": enforce_task_deadlines,
    "report_dead_letters": report_dead_letters,
    "trim_streams": trim_streams,
}
"""Every job by name (the names of `JobIntervals`' fields)."""


def build_jobs(deps: SchedulerDeps) -> list[Job]:
    """Every job, bound to `deps`, with its configured interval."""
    return [
        Job(
            name=name,
            interval_s=deps.settings.intervals_s.of(name),
            run=functools.partial(run, deps),
        )
        for name, run in JOBS.items()
    ]
