"""`deploy:queue`: PO-Worker → langgraph. Start a deploy task."""

from __future__ import annotations

from shared.contracts.base import BaseMessage, BaseResult

__all__ = ["DeployMessage", "DeployResult"]


class DeployMessage(BaseMessage):
    """Start deploy task."""

    task_id: str
    project_id: str
    user_id: int


class DeployResult(BaseResult):
    """Deploy task result."""

    deployed_url: str | None = None
    server_ip: str | None = None
    port: int | None = None
