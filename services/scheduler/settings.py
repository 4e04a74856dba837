"""Settings of the scheduler: the tree's `scheduler` section (`ORCHESTRATOR_SCHEDULER__*`).

Read once by `run_scheduler` (`SchedulerSettings.of(settings)`, or passed in) and handed
down; tests construct them directly. Each job's interval is its own field of `intervals_s`, e.g.
`ORCHESTRATOR_SCHEDULER__INTERVALS_S__PROVISION_SERVERS=10`.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field

from shared.settings import Section

__all__ = ["JobIntervals", "SchedulerSettings"]


class JobIntervals(BaseModel):
    """Seconds between two ticks of each job (one field per job name)."""

    provision_servers: float = Field(default=30.0, gt=0)
    check_server_health: float = Field(default=60.0, gt=0)
    check_app_health: float = Field(default=30.0, gt=0)
    stop_idle_workers: float = Field(default=60.0, gt=0)
    enforce_task_deadlines: float = Field(default=30.0, gt=0)
    report_dead_letters: float = Field(default=30.0, gt=0)
    trim_streams: float = Field(default=300.0, gt=0)

    def of(self, job_name: str) -> float:
        """The interval of a job by name (`KeyError` for an unknown job)."""
        if job_name not in type(self).model_fields:
            raise KeyError(job_name)
        value: float = getattr(self, job_name)
        return value


class SchedulerSettings(Section):
    """Everything the scheduler's loop and jobs need; every field has a default."""

    section = "scheduler"

    intervals_s: JobIntervals = Field(default_factory=JobIntervals)
    jitter_ratio: float = Field(default=0.1, ge=0, lt=0.5)
    """Each replica wakes up to `jitter_ratio × interval` after a tick boundary (random)."""
    jitter_max_s: float = Field(default=2.0, ge=0)
    """Upper bound of that random delay, whatever the interval."""
    lease_ttl_s: float = Field(default=60.0, gt=0)
    """TTL of a job's run lease (renewed every third of it while the job runs), so a long
    run is never overlapped by the next tick's run on another replica."""

    # provisioning
    provision_retry_s: float = Field(default=600.0, gt=0)
    """A server still waiting for setup is triggered again only after this long."""

    # health
    health_port: int = Field(default=22, ge=1, le=65_535)
    """TCP port probed on each server (SSH) unless its address says `host:port`."""
    health_timeout_s: float = Field(default=3.0, gt=0)
    health_banner: str = "SSH-"
    """What a healthy server sends first on that port; empty: an open connection suffices."""
    health_concurrency: int = Field(default=16, ge=1)
    unreachable_after_failures: int = Field(default=2, ge=1)
    """Consecutive failed probes before a ready server is marked unreachable."""
    local_addresses: frozenset[str] = frozenset({"localhost", "127.0.0.1", "::1", "local"})
    """Addresses served through Ansible's local connection: always reachable, never probed."""
    recovery_retry_s: float = Field(default=600.0, gt=0)
    """An unreachable server that answers again is re-provisioned (`is_recovery`) at most
    once per this many seconds."""

    # deployed apps
    app_health_path: str = "/health"
    """Path probed on each running release's URL (GET; any 2xx is healthy)."""
    app_health_timeout_s: float = Field(default=5.0, gt=0)
    app_down_after_failures: int = Field(default=2, ge=1)
    """Consecutive failed probes before a release is reported down (and its owner told)."""
    local_apps_dir: Path | None = None
    """`apps/` of the local server's base directory, where the supervisor counts each
    release's restarts; `run_scheduler` defaults it to infra-service's local base dir."""

    # idle workers
    worker_idle_s: float = Field(default=1800.0, gt=0)
    """A worker with no activity for this long is stopped."""
    worker_delete_retry_s: float = Field(default=300.0, gt=0)
    """A delete command for the same worker is sent again only after this long."""

    # task deadlines and re-drives (each task's deadline itself comes from the API:
    # `ORCHESTRATOR_API__TASK_DEADLINES__*`)
    redrive_after_s: float = Field(default=120.0, gt=0)
    """A task still `queued` this long after its creation (or its last re-drive) has its
    queue message published again, once the queue's consumer has read every entry."""
    max_redrives: int = Field(default=3, ge=0)
    """A task still `queued` `redrive_after_s` after its last allowed re-drive is failed."""

    # dead letters and trimming
    dead_letter_batch: int = Field(default=500, ge=1)
    dead_letter_retention_s: float = Field(default=14 * 86_400.0, gt=0)
    """Dead letters older than this are trimmed (they were reported long before)."""
