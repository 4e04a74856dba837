"""Errors of the worker-wrapper.

Tree::

    WorkerWrapperError          base of every error raised by `services.worker_wrapper`
    ├── AgentConfigError        an agent adapter cannot be built from the settings given
    └── WrapperStoppingError    a request arrived while the wrapper is shutting down
"""

from __future__ import annotations

__all__ = ["AgentConfigError", "WorkerWrapperError", "WrapperStoppingError"]


class WorkerWrapperError(Exception):
    """Base of every error raised by the worker-wrapper."""


class AgentConfigError(WorkerWrapperError):
    """An agent adapter cannot be built from the settings given (unknown name, no binary)."""


class WrapperStoppingError(WorkerWrapperError):
    """A request arrived after SIGTERM; it stays pending for the next wrapper of the worker."""
