"""The langgraph actor's message handlers, one per message family.

- `handle_engineering_message` / `handle_deploy_message`: start the task's flow (thread id =
  task id; a redelivery starts nothing).
- `handle_worker_response`: answers of the worker-manager on `worker:responses`.
- `handle_result`: results on langgraph's callback stream `results:langgraph`.

Answers are matched to their flow by request_id (`<task_id>~<step>`). A worker created for a
flow that no longer waits for it (timed out, cancelled) is deleted at once, so no worker is
left behind.
"""

from __future__ import annotations

from dataclasses import dataclass

import structlog

from services.langgraph.graphs.state import request_id_for, task_of
from services.langgraph.runner import FlowRunner
from shared import registry
from shared.contracts import (
    BaseResult,
    CreateWorkerResponse,
    DeleteWorkerCommand,
    DeleteWorkerResponse,
    DeployMessage,
    EngineeringMessage,
    SendMessageResponse,
)
from shared.messaging import MessageContext

__all__ = ["Handlers"]

log = structlog.get_logger("services.langgraph.handlers")

WorkerResponseMessage = CreateWorkerResponse | SendMessageResponse | DeleteWorkerResponse


@dataclass(frozen=True)
class Handlers:
    """The handlers, bound to one runner."""

    runner: FlowRunner

    async def handle_engineering_message(
        self, message: EngineeringMessage, ctx: MessageContext
    ) -> None:
        """Start the engineering flow of a task (nothing when it already exists)."""
        await self.runner.start("engineering", message)

    async def handle_deploy_message(self, message: DeployMessage, ctx: MessageContext) -> None:
        """Start the deploy flow of a task (nothing when it already exists)."""
        await self.runner.start("deploy", message)

    async def handle_worker_response(
        self, message: WorkerResponseMessage, ctx: MessageContext
    ) -> None:
        """Hand a worker-manager answer to the flow waiting for it. Answers to others'
        requests (the front doors', the scheduler's) are left alone: the front doors read
        them through their own observer group of the stream."""
        if task_of(message.request_id) is None:
            return
        state = await self.runner.deliver(message.request_id, message.model_dump(mode="json"))
        if isinstance(message, CreateWorkerResponse) and message.success and message.worker_id:
            taken = state is not None and state.get("worker_id") == message.worker_id
            if not taken:
                await self._delete_orphan(message.request_id, message.worker_id)

    async def handle_result(self, message: BaseResult, ctx: MessageContext) -> None:
        """Hand a result (scaffolder, infra-service) to the flow waiting for it."""
        await self.runner.deliver(message.request_id, message.model_dump(mode="json"))

    async def _delete_orphan(self, request_id: str, worker_id: str) -> None:
        task_id = task_of(request_id)
        if task_id is None:
            return
        log.info("orphan_worker_deleted", task_id=task_id, worker_id=worker_id)
        state = await self.runner.state_of(task_id)
        command = DeleteWorkerCommand(
            request_id=request_id_for(task_id, f"delete_orphan_{worker_id}"),
            worker_id=worker_id,
        )
        await self.runner.deps.bus.publish(
            registry.get("worker:commands").name,
            command,
            correlation_id=state.get("correlation_id"),
        )
