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
import subprocess
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TypedDict

from services.worker_wrapper.agents.base import (
    ActivitySink,
    AgentActivity,
    AgentRequest,
    AgentResult,
    StreamParser,
)
from services.worker_wrapper.agents.pricing import Budget, PriceTable
from services.worker_wrapper.agents.process import CliOutcome, run_cli
from services.worker_wrapper.agents.stream_json import StreamJsonParser
from services.worker_wrapper.agents.streams import mask_text, secret_values

__all__ = ["CliAgent", "run_stream_agent", "write_prompt_file"]


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
    `budget`, `spent()` (the run's cost so far) is checked after every line and whenever a
    metering relay hands the parser a response's usage, and the process tree is stopped
    once it reaches the cap: the run fails with "budget exceeded: ..."."""
    env = {**(extra_env or {}), **request.env}
    secrets = secret_values(env)
    queue: asyncio.Queue[AgentActivity | None] = asyncio.Queue()
    forwarder = asyncio.create_task(_forward(queue, on_activity, secrets))

    stop = asyncio.Event()
    exceeded: list[str] = []

    def check_budget() -> None:
        if budget is not None and spent is not None and not stop.is_set():
            message = budget.exceeded(spent())
            if message is not None:
                exceeded.append(message)
                if isinstance(parser, StreamJsonParser):
                    parser.over_budget = True  # its metering relay closes at once
                stop.set()

    def on_line(line: str) -> None:
        for activity in parser.feed(line):
            queue.put_nowait(activity)
        check_budget()

    if isinstance(parser, StreamJsonParser):
        parser.usage_listener = check_budget  # usage a metering relay sees

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
    result = _outcome(outcome, exceeded, parser, request)
    if isinstance(parser, StreamJsonParser):
        result = parser.record(result)
    return _masked(result, secrets)


def _outcome(
    outcome: CliOutcome,
    exceeded: list[str],
    parser: StreamParser,
    request: AgentRequest,
) -> AgentResult:
    if outcome.stopped and exceeded:
        result = AgentResult(
            status="error",
            response=parser.partial() or None,
            error=f"budget exceeded: {exceeded[0]}; the agent's process tree was stopped",
            session_id=getattr(parser, "session_id", None),
        )
    elif outcome.timed_out:
        result = AgentResult(
            status="timeout",
            response=parser.partial() or None,
            error=f"agent timed out after {request.timeout_s:g} s; its process group was killed",
        )
    else:
        result = parser.finish(exit_code=outcome.exit_code or 0, stderr_tail=outcome.stderr_tail)
    return result


class CliOptions(TypedDict, total=False):
    """What every CLI adapter takes beside its own settings (passed on to `CliAgent`)."""

    kill_grace_s: float
    run_as: tuple[int, int] | None
    budget_usd: float | None
    budgets: Sequence[Budget]
    prices: PriceTable | None


class CliAgent:
    """What the stream-json CLI adapters share: the command, the user it runs as, the
    per-task budget and what the worker's runs spent (by the price table), the CLI's
    version. A subclass builds its argv, environment and parser."""

    name = "cli"
    supports_sessions = True

    def __init__(
        self,
        command: Sequence[str],
        *,
        kill_grace_s: float = 2.0,
        run_as: tuple[int, int] | None = None,
        budget_usd: float | None = None,
        budgets: Sequence[Budget] = (),
        prices: PriceTable | None = None,
    ) -> None:
        self.command = list(command)
        self.kill_grace_s = kill_grace_s
        self.run_as = run_as
        self.budget_usd = budget_usd
        self.budgets = list(budgets)
        """Further caps beside the task's (e.g. the user's month); their `spent_usd` is what
        was spent before this worker, this worker's spend is added as it streams."""
        self.prices = prices or PriceTable.load()
        self.spent_usd = 0.0
        """What this agent's runs cost so far (the worker's task), by the price table."""
        self._version: str | None = None

    def version(self) -> str | None:
        """The CLI's `--version` (first line; asked once), None when it does not answer."""
        if self._version is None:
            try:
                done = subprocess.run(
                    [*self.command, "--version"],
                    capture_output=True,
                    text=True,
                    timeout=20,
                    check=False,
                    stdin=subprocess.DEVNULL,
                )
            except (OSError, subprocess.SubprocessError):
                return None
            lines = done.stdout.strip().splitlines()
            if done.returncode != 0 or not lines:
                return None
            self._version = lines[0][:80]
        return self._version

    def _budgets(self) -> list[Budget]:
        found = [Budget(b.cap_usd, b.spent_usd + self.spent_usd, b.what) for b in self.budgets]
        if self.budget_usd is not None:
            found.insert(0, Budget(self.budget_usd, spent_usd=self.spent_usd))
        return found

    async def run_parsed(
        self,
        argv: Sequence[str],
        request: AgentRequest,
        parser: StreamJsonParser,
        on_activity: ActivitySink,
        *,
        stdin_text: str | None,
        extra_env: Mapping[str, str] | None = None,
    ) -> AgentResult:
        """Run the CLI under the caps (a cap already reached starts nothing); the result's
        `cost_usd` is this run's cost by the price table."""
        budgets = self._budgets()
        for budget in budgets:
            message = budget.exceeded(0.0)
            if message is not None:
                return AgentResult(
                    status="error",
                    error=f"budget exceeded: {message}; the agent was not started",
                    cost_usd=0.0,
                )
        result = await run_stream_agent(
            argv,
            request,
            parser,
            on_activity,
            stdin_text=stdin_text,
            kill_grace_s=self.kill_grace_s,
            extra_env=extra_env,
            run_as=self.run_as,
            budget=_first_of(budgets) if budgets else None,
            spent=lambda: parser.spent_usd(self.prices),
        )
        run_cost = parser.spent_usd(self.prices)
        self.spent_usd += run_cost
        if result.cost_usd is not None and "reported_cost_usd" not in result.usage:
            result.usage = {**result.usage, "reported_cost_usd": result.cost_usd}
        result.cost_usd = run_cost
        return result


@dataclasses.dataclass
class _FirstOf(Budget):
    """Several caps as one: the first one reached is the one reported."""

    parts: tuple[Budget, ...] = ()

    def exceeded(self, run_usd: float) -> str | None:
        """The first part reached, else None."""
        for part in self.parts:
            message = part.exceeded(run_usd)
            if message is not None:
                return message
        return None


def _first_of(budgets: Sequence[Budget]) -> Budget:
    return budgets[0] if len(budgets) == 1 else _FirstOf(0.0, parts=tuple(budgets))
