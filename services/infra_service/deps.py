"""What the handlers are given: the frozen `InfraDeps`, the progress Protocol, and the small
types around them."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from services.infra_service.ansible import PlaybookRunner
from services.infra_service.cancellation import CancellationSource, NeverCancelled
from services.infra_service.errors import InfraError
from services.infra_service.secrets import SecretsProvider
from services.infra_service.servers import ServerLookup, ServerTarget
from services.infra_service.settings import InfraSettings
from shared.app_layout import app_dir_name
from shared.contracts import BaseResult
from shared.steps import ProgressReporter

__all__ = [
    "InfraDeps",
    "KeyedLocks",
    "ProgressReporter",
    "RemoveProjectResult",
    "app_lock_key",
    "app_name_of",
]


class KeyedLocks:
    """One asyncio lock per key: jobs on the same project (or server) run one at a time."""

    def __init__(self) -> None:
        self._locks: dict[str, asyncio.Lock] = {}

    def __call__(self, key: str) -> asyncio.Lock:
        """The lock of `key`."""
        return self._locks.setdefault(key, asyncio.Lock())

    def held(self, key: str) -> bool:
        """True while a job holds the lock of `key`."""
        lock = self._locks.get(key)
        return lock is not None and lock.locked()


@dataclass(frozen=True)
class InfraDeps:
    """Everything a handler uses."""

    settings: InfraSettings
    runner: PlaybookRunner
    secrets: SecretsProvider
    servers: ServerLookup
    progress: ProgressReporter
    locks: KeyedLocks = field(default_factory=KeyedLocks)
    cancellations: CancellationSource = field(default_factory=NeverCancelled)
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep


class RemoveProjectResult(BaseResult):
    """Outcome of removing a deployed project from a server (not a queue message)."""

    project_id: str
    server_ip: str
    stopped: bool = False
    exit_code: int | None = None


def app_name_of(project_id: str) -> str:
    """The directory name of a project on a server (stable across deploys)."""
    try:
        return app_dir_name(project_id)
    except ValueError as error:
        raise InfraError(str(error)) from None


def app_lock_key(target: ServerTarget, project_id: str) -> str:
    """The key of the lock that serialises deploys and removals of a project on a server."""
    return f"app:{target.handle}:{app_name_of(project_id)}"
