"""`handle_<command>`: one per `WorkerCommand`, each answering its `WorkerResponse`.

A `WorkerManagerError` becomes an unsuccessful response with its message; any other error
is retried by the consumer, and answered as an error on the last attempt, so a requester
always hears back.
"""

from __future__ import annotations

from pydantic import BaseModel
from redis.exceptions import RedisError

from services.worker_manager.errors import WorkerManagerError
from services.worker_manager.manager import WorkerManager
from shared import registry
from shared.contracts import (
    CreateWorkerCommand,
    CreateWorkerResponse,
    DeleteWorkerCommand,
    DeleteWorkerResponse,
    SendMessageCommand,
    SendMessageResponse,
    WorkerOutputMessage,
)
from shared.messaging import MessageContext
from shared.observability.metrics import SystemMetrics

__all__ = ["CommandHandlers"]

Command = CreateWorkerCommand | SendMessageCommand | DeleteWorkerCommand


class CommandHandlers:
    """The consumer's handler of `worker:commands`, answering on `worker:responses`."""

    def __init__(self, manager: WorkerManager) -> None:
        self.manager = manager
        self.responses = registry.get("worker:responses").name

    async def handle_create(self, command: CreateWorkerCommand) -> CreateWorkerResponse:
        """Create a worker; answer its id once it takes input."""
        try:
            worker_id = await self.manager.create(command)
        except WorkerManagerError as exc:
            return CreateWorkerResponse(
                request_id=command.request_id, success=False, error=str(exc)
            )
        return CreateWorkerResponse(
            request_id=command.request_id, success=True, worker_id=worker_id
        )

    async def handle_send_message(self, command: SendMessageCommand) -> SendMessageResponse:
        """Relay a message; answer the agent's reply, its failure, or the worker's death."""
        try:
            output = await self.manager.send(command)
        except WorkerManagerError as exc:
            return SendMessageResponse(request_id=command.request_id, success=False, error=str(exc))
        await self._observe(command.worker_id, output)
        if output.status == "success":
            return SendMessageResponse(
                request_id=command.request_id,
                success=True,
                response=output.response,
                run=output.run,
            )
        return SendMessageResponse(
            request_id=command.request_id,
            success=False,
            response=output.response,
            error=f"agent {output.status}: {output.error or 'no detail'}",
            run=output.run,
        )

    async def _observe(self, worker_id: str, output: WorkerOutputMessage) -> None:
        """The run in the metrics: `orchestrator_agent_runs_total{agent,status}`, its
        duration, and from its record its tokens and cost. Counted here, not in langgraph's
        record step: every agent run passes this relay exactly once (whoever asked for it,
        and a retried command is a new run), while a flow step may replay after a restart."""
        try:
            record = await self.manager.registry.get(worker_id)
        except RedisError:
            record = None
        adapter = record.adapter if record is not None else None
        SystemMetrics.default().observe_agent_run(
            adapter, output.status, output.duration_ms, output.run
        )

    async def handle_delete(self, command: DeleteWorkerCommand) -> DeleteWorkerResponse:
        """Delete a worker."""
        try:
            await self.manager.delete(command.worker_id)
        except WorkerManagerError as exc:
            return DeleteWorkerResponse(
                request_id=command.request_id, success=False, error=str(exc)
            )
        return DeleteWorkerResponse(request_id=command.request_id, success=True)

    async def _dispatch(self, command: Command) -> BaseModel:
        if isinstance(command, CreateWorkerCommand):
            return await self.handle_create(command)
        if isinstance(command, SendMessageCommand):
            return await self.handle_send_message(command)
        return await self.handle_delete(command)

    async def __call__(self, command: Command, ctx: MessageContext) -> None:
        """Handle one command and publish its response."""
        try:
            response = await self._dispatch(command)
        except Exception as exc:
            if not ctx.is_last_attempt:
                raise
            response = _failure(command, f"internal error after {ctx.attempt} attempts: {exc}")
        await self.manager.bus.publish(self.responses, response)


def _failure(command: Command, error: str) -> BaseModel:
    if isinstance(command, CreateWorkerCommand):
        return CreateWorkerResponse(request_id=command.request_id, success=False, error=error)
    if isinstance(command, SendMessageCommand):
        return SendMessageResponse(request_id=command.request_id, success=False, error=error)
    return DeleteWorkerResponse(request_id=command.request_id, success=False, error=error)
