"""Glue shared by the CLI adapters: run the process, parse its stream, map the outcome.

Whatever leaves an adapter (activity, the answer, the error) has the values of the
environment's secret-looking variables (the agent's API keys) masked: a CLI that echoes its
key in an error message does not put it in a progress event or a task's error.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from services.worker_wrapper.agents.base import (
    ActivitySink,
    AgentActivity,
    AgentRequest,
    AgentResult,
    StreamParser,
)
from services.worker_wrapper.agents.pricing import Budget
from services.worker_wrapper.agents.process import run_cli
from services.worker_wrapper.agents.streams import mask_text, secret_values

__all__ = ["run_stream_agent", "write_prompt_file"]


async def _forward(
    queue: asyncio.Queue[AgentActivity | None], sink: ActivitySink, secrets: list[str]
) -> None:
    while (activity := await queue.get()) is not None:
        masked = AgentActivity(activity.kind, mask_text(activity.message, secrets))
        with contextlib.suppress(Exception):  # a lost progress event never fails a run
            await sink(masked)


def write_prompt_file(directory: Path, prompt: str, run_as: tuple[int, int] | None) -> Path:
    """The prompt as `prompt.md` in `directory` (private), readable by the `run_as` user."""
    path = directory / "prompt.md"
    path.write_text(prompt, encoding="utf-8")
    if run_as is not None:
        for target in (directory, path):
            os.chown(target, run_as[0], run_as[1])
    return path


def _masked(result: AgentResult, secrets: list[str]) -> AgentResult:
    return dataclasses.replace(
        result,
        response=mask_text(result.response, secrets) if result.response else result.response,
        error=mask_text(result.error, secrets) if result.error else result.error,
    )


async def run_stream_agent(
    argv: Sequence[str],
    request: AgentRequest,
    parser: StreamParser,
    on_activity: ActivitySink,
    *,
    stdin_text: str | None,
    kill_grace_s: float,
    extra_env: Mapping[str, str] | None = None,
    run_as: tuple[int, int] | None = None,
    budget: Budget | None = None,
    spent: Callable[[], float] | None = None,
) -> AgentResult:
    """Run an agent CLI to completion: success, error (with stderr tail) or timeout.

    `extra_env` are the adapter's own variables (defaults the request's environment
    overrides); `run_as` the (uid, gid) the CLI runs as (None: the wrapper's own). With a
    `budget`, `spent()` (the run's cost so far) is checked after every line, and the process
    tree is stopped once it reaches the cap: the run fails with "budget exceeded: ..."."""
    env = {**(extra_env or {}), **request.env}
    secrets = secret_values(env)
    queue: asyncio.Queue[AgentActivity | None] = asyncio.Queue()
    forwarder = asyncio.create_task(_forward(queue, on_activity, secrets))

    stop = asyncio.Event()
    exceeded: list[str] = []

    def on_line(line: str) -> None:
        for activity in parser.feed(line):
            queue.put_nowait(activity)
        if budget is not None and spent is not None and not stop.is_set():
            message = budget.exceeded(spent())
            if message is not None:
                exceeded.append(message)
                stop.set()

    try:
        outcome = await run_cli(
            argv,
            cwd=request.workspace,
            env=env,
            stdin_text=stdin_text,
            timeout_s=request.timeout_s,
            on_line=on_line,
            kill_grace_s=kill_grace_s,
            run_as=run_as,
            stop=stop,
        )
    except OSError as exc:
        error = f"cannot start agent {argv[0]!r}: {exc}"
        return AgentResult(status="error", error=mask_text(error, secrets))
    finally:
        queue.put_nowait(None)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(forwarder, timeout=5)
    if outcome.stopped and exceeded:
        result = AgentResult(
            status="error",
            response=parser.partial() or None,
            error=f"budget exceeded: {exceeded[0]}; the agent's process tree was stopped",
            session_id=getattr(parser, "session_id", None),
            cost_usd=spent() if spent is not None else None,
        )
    elif outcome.timed_out:
        result = AgentResult(
            status="timeout",
            response=parser.partial() or None,
            error=f"agent timed out after {request.timeout_s:g} s; its process group was killed",
        )
    else:
        result = parser.finish(exit_code=outcome.exit_code or 0, stderr_tail=outcome.stderr_tail)
    return _masked(result, secrets)
