"""Glue shared by the CLI adapters: run the process, parse its stream, map the outcome."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

from services.worker_wrapper.agents.base import (
    ActivitySink,
    AgentActivity,
    AgentRequest,
    AgentResult,
    StreamParser,
)
from services.worker_wrapper.agents.process import run_cli

__all__ = ["run_stream_agent"]


async def _forward(queue: asyncio.Queue[AgentActivity | None], sink: ActivitySink) -> None:
    while (activity := await queue.get()) is not None:
        with contextlib.suppress(Exception):  # a lost progress event never fails a run
            await sink(activity)


async def run_stream_agent(
    argv: Sequence[str],
    request: AgentRequest,
    parser: StreamParser,
    on_activity: ActivitySink,
    *,
    stdin_text: str | None,
    kill_grace_s: float,
) -> AgentResult:
    """Run an agent CLI to completion: success, error (with stderr tail) or timeout."""
    queue: asyncio.Queue[AgentActivity | None] = asyncio.Queue()
    forwarder = asyncio.create_task(_forward(queue, on_activity))

    def on_line(line: str) -> None:
        for activity in parser.feed(line):
            queue.put_nowait(activity)

    try:
        outcome = await run_cli(
            argv,
            cwd=request.workspace,
            env=request.env,
            stdin_text=stdin_text,
            timeout_s=request.timeout_s,
            on_line=on_line,
            kill_grace_s=kill_grace_s,
        )
    except OSError as exc:
        return AgentResult(status="error", error=f"cannot start agent {argv[0]!r}: {exc}")
    finally:
        queue.put_nowait(None)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(forwarder, timeout=5)
    if outcome.timed_out:
        return AgentResult(
            status="timeout",
            response=parser.partial() or None,
            error=f"agent timed out after {request.timeout_s:g} s; its process group was killed",
        )
    return parser.finish(exit_code=outcome.exit_code or 0, stderr_tail=outcome.stderr_tail)
