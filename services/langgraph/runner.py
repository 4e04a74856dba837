"""`FlowRunner`: starts flows, delivers answers, and resumes flows at their interrupts.

Thread id = task id. Every advance of a flow happens under the flow's lease (`FlowStore.lock`),
after reading its checkpoint: a redelivered start message finds the thread and starts
nothing; an answer is kept in the inbox first, then the flow is resumed if it waits for it
(else the flow finds it in the inbox when it gets there); a flow cut off mid-step by a crash
is continued from its last checkpoint.
"""

from __future__ import annotations

from typing import Any, Literal, cast

import structlog
from langchain_core.runnables import RunnableConfig
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Command

from services.langgraph.graphs.state import FlowState, Resume, initial_state, task_of
from services.langgraph.ports import FlowDeps
from services.langgraph.store import FlowKind, PendingWait
from shared.contracts import DeployMessage, EngineeringMessage

__all__ = ["CompiledFlow", "FlowRunner", "KickReason"]

log = structlog.get_logger("services.langgraph.runner")

CompiledFlow = CompiledStateGraph[FlowState, FlowDeps, FlowState, FlowState]
KickReason = Literal["answer", "sweep", "cancelled"]


def _config(task_id: str) -> RunnableConfig:
    return {"configurable": {"thread_id": task_id}}


class FlowRunner:
    """Advances flows of both graphs on one checkpointer."""

    def __init__(self, graphs: dict[FlowKind, CompiledFlow], deps: FlowDeps) -> None:
        self.graphs = graphs
        self.deps = deps
        self.store = deps.store

    async def start(self, kind: FlowKind, message: EngineeringMessage | DeployMessage) -> None:
        """Start the task's flow, unless it exists (then only continue a flow cut off)."""
        task_id = message.task_id
        graph = self.graphs[kind]
        async with self.store.lock(task_id):
            snapshot = await graph.aget_state(_config(task_id))
            if snapshot.values:
                log.info("flow_exists", task_id=task_id, next=list(snapshot.next))
                if snapshot.next and not snapshot.interrupts:
                    await self._run(kind, task_id, None)
                return
            await self.store.add_flow(task_id, kind)
            state = initial_state(
                task_id=task_id,
                project_id=message.project_id,
                user_id=message.user_id,
                request_id=message.request_id,
                correlation_id=message.correlation_id,
                callback_stream=message.callback_stream,
                flow=kind,
            )
            await self._run(kind, task_id, state)

    async def deliver(self, request_id: str, answer: dict[str, Any]) -> FlowState | None:
        """Keep an answer and resume its flow; the flow's state after (None: no such flow)."""
        task_id = task_of(request_id)
        if task_id is None:
            log.warning("answer_not_ours", request_id=request_id)
            return None
        await self.store.put_answer(request_id, answer)
        return await self.kick(task_id, reason="answer")

    async def state_of(self, task_id: str) -> FlowState:
        """The latest checkpointed state of a flow (empty when it never started); both graphs
        share one state schema, so either reads it."""
        snapshot = await self.graphs["engineering"].aget_state(_config(task_id))
        return cast(FlowState, snapshot.values)

    async def kick(self, task_id: str, *, reason: KickReason = "sweep") -> FlowState | None:
        """Advance the flow if it can: resume its wait with an answer, a timeout or a
        cancellation, or continue it after a crash. Returns its latest state (None: it ended
        before, or never existed)."""
        kind = await self.store.kind_of(task_id)
        if kind is None:
            return None
        graph = self.graphs[kind]
        async with self.store.lock(task_id):
            snapshot = await graph.aget_state(_config(task_id))
            if not snapshot.values or not snapshot.next:
                await self.store.finish_flow(task_id)
                return cast(FlowState, snapshot.values) if snapshot.values else None
            if not snapshot.interrupts:
                return await self._run(kind, task_id, None)
            resume = await self._resume_value(
                snapshot.interrupts[0].value, cast(FlowState, snapshot.values), reason
            )
            if resume is None:
                return cast(FlowState, snapshot.values)
            return await self._run(kind, task_id, Command(resume=resume))

    async def _resume_value(
        self, pending: object, values: FlowState, reason: KickReason
    ) -> Resume | None:
        wait = PendingWait.model_validate(pending)
        if await self.store.get_answer(wait.request_id) is not None:
            return Resume(kind="answer")
        if reason == "cancelled" and values.get("outcome", "running") == "running":
            return Resume(kind="cancelled")
        if self.deps.clock_s() >= wait.deadline_at:
            return Resume(kind="timeout")
        return None

    async def _run(
        self, kind: FlowKind, task_id: str, value: FlowState | Command[Any] | None
    ) -> FlowState:
        """Advance the flow; its state after, as checkpointed (the run's last values: no
        second read of the checkpoint)."""
        graph = self.graphs[kind]
        result = await graph.ainvoke(value, _config(task_id), context=self.deps, durability="sync")
        if "__interrupt__" not in result:
            await self.store.finish_flow(task_id)
            log.info("flow_ended", task_id=task_id, outcome=result.get("outcome"))
        return cast(FlowState, {k: v for k, v in result.items() if k != "__interrupt__"})
