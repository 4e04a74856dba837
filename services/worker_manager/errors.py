"""Errors of the worker-manager.

Tree::

    WorkerManagerError            base of every error raised by `services.worker_manager`
    ├── UnknownWorkerError        no worker with that id in the registry
    ├── WorkerUnavailableError    the worker exists but cannot take input (stopped, failed)
    ├── WorkerDiedError           the worker's process/container died (e.g. mid-request)
    ├── WorkerStartError          a worker could not be started or never became ready
    │   └── WorkerApiKeyError     its user-scoped API key could not be minted
    ├── InvalidWorkerConfigError  a create command whose configuration cannot be honoured
    └── RuntimeBackendError       the runtime backend (process table, Docker) failed
"""

from __future__ import annotations

__all__ = [
    "InvalidWorkerConfigError",
    "RuntimeBackendError",
    "UnknownWorkerError",
    "WorkerApiKeyError",
    "WorkerDiedError",
    "WorkerManagerError",
    "WorkerStartError",
    "WorkerUnavailableError",
]


class WorkerManagerError(Exception):
    """Base of every error raised by the worker-manager."""


class UnknownWorkerError(WorkerManagerError):
    """No worker with that id in the registry."""


class WorkerUnavailableError(WorkerManagerError):
    """The worker exists but cannot take input (stopped or failed)."""


class WorkerDiedError(WorkerManagerError):
    """The worker's process or container died."""


class WorkerStartError(WorkerManagerError):
    """A worker could not be started, or never became ready."""


class WorkerApiKeyError(WorkerStartError):
    """The worker's user-scoped API key could not be minted (no credential, API refusal)."""


class InvalidWorkerConfigError(WorkerManagerError):
    """A create command whose configuration cannot be honoured."""


class RuntimeBackendError(WorkerManagerError):
    """The runtime backend (process table, Docker engine) failed."""
