"""The checks of the engineering flow and the fix rounds: the worker runs the project's
checks (`@orchestrator checks`); failing ones go back to the agent with their output, at
most `fix_rounds` times; still failing, the task fails and nothing is integrated."""

from __future__ import annotations

import asyncio
from typing import Any

from services.langgraph.graphs.state import FlowState
from services.langgraph.graphs.steps import AwaitedStep
from services.langgraph.graphs.worker_steps import (
    agent_answer,
    commands_stream,
    report_of,
    set_project_status,
    store_pending_run,
    worker_of,
)
from services.langgraph.ports import FlowDeps
from shared.contracts import ProjectStatus, SendMessageCommand

__all__ = ["CHECKS", "CHECKS_DIRECTIVE", "FIX", "failure_text", "fix_prompt"]

CHECKS_DIRECTIVE = "@orchestrator checks"
"""The reserved message a developer worker answers with the report of the project's checks
(`services.worker_wrapper.directives`)."""


async def _checks_request(
    state: FlowState, deps: FlowDeps, request_id: str
) -> tuple[str, SendMessageCommand, FlowState]:
    # the spec's run record (kept by `send_spec`) is stored alongside: off the agent's path
    await asyncio.gather(
        set_project_status(deps, state, ProjectStatus.TESTING), store_pending_run(state, deps)
    )
    command = SendMessageCommand(
        request_id=request_id,
        worker_id=worker_of(state, "checks"),
        message=f"{CHECKS_DIRECTIVE}\nRun the project's checks in this workspace.",
        timeout=max(int(deps.settings.timeouts.checks_s), 1),
    )
    return commands_stream(), command, FlowState(pending_run=None)


async def _checks_answer(state: FlowState, deps: FlowDeps, answer: dict[str, Any]) -> FlowState:
    report = report_of("checks", answer)
    remote = await deps.git.head_of(state["repo_full_name"], state["branch"])
    round_ = state.get("checks_round", 0) + 1
    head = report.get("head")
    problems: list[str] = []
    if report.get("clean") is False:
        problems.append("the workspace holds uncommitted changes: commit them")
    if not isinstance(head, str):
        problems.append("the workspace has no commit checked out")
    elif remote != head:
        problems.append(
            f"commit {head[:12]} is not on the remote branch {state['branch']}: push it"
        )
    passed = bool(report.get("passed")) and not problems
    run = {
        "round": round_,
        "after": state.get("checks_after", "spec"),
        "passed": passed,
        "note": str(report.get("note") or ""),
        "source": str(report.get("source") or ""),
        "head": head,
        "problems": problems,
        "checks": [c for c in report.get("checks", []) if isinstance(c, dict)],
    }
    update = FlowState(checks_round=round_, checks=[*state.get("checks", []), run])
    if passed:
        return FlowState(**update, checked_head=head, checks_next="integrate")
    # passed (or failed for good), the project stays `testing` through the integration: the
    # task's end gives it back (through `developing`); a fix round is development again
    fixes = state.get("fix_round", 0)
    if fixes < deps.settings.fix_rounds:
        await set_project_status(deps, state, ProjectStatus.DEVELOPING)
        return FlowState(**update, checks_next="fix")
    error = f"checks: still failing after {fixes} fix rounds; nothing was integrated\n"
    return FlowState(
        **update,
        outcome="failed",
        failed_step="checks",
        error=error + failure_text(run),
    )


def failure_text(run: dict[str, Any]) -> str:
    """What failed in a run of the checks: each failing check with its output's tail."""
    parts = [f"- {problem}" for problem in run.get("problems", [])]
    for check in run.get("checks", []):
        if check.get("passed"):
            continue
        where = f" (in {check.get('cwd')})" if check.get("cwd") not in (None, ".") else ""
        parts.append(
            f"$ {check.get('command')}{where} → exit {check.get('exit_code')}\n"
            f"{str(check.get('output_tail') or '').strip()}"
        )
    return "\n\n".join(parts) or str(run.get("note") or "the checks failed")


def fix_prompt(state: FlowState, settings_rounds: int) -> str:
    """What the agent is asked after failing checks: the failing output, fix, commit, push."""
    runs = state.get("checks", [])
    last = runs[-1] if runs else {}
    round_ = state.get("fix_round", 0) + 1
    return (
        f"The project's checks failed on your work (fix round {round_} of {settings_rounds}). "
        f"Fix the code so that they pass, commit, and push the branch `{state['branch']}`.\n\n"
        f"Failing checks:\n{failure_text(last)}"
    )


async def _fix_request(
    state: FlowState, deps: FlowDeps, request_id: str
) -> tuple[str, SendMessageCommand, FlowState]:
    command = SendMessageCommand(
        request_id=request_id,
        worker_id=worker_of(state, "fix"),
        message=fix_prompt(state, deps.settings.fix_rounds),
        timeout=int(deps.settings.timeouts.agent_s),
    )
    return commands_stream(), command, FlowState()


async def _fix_answer(state: FlowState, deps: FlowDeps, answer: dict[str, Any]) -> FlowState:
    text, recorded = await agent_answer("fix", answer, state, deps)
    return FlowState(
        **recorded,
        agent_response=text,
        fix_round=state.get("fix_round", 0) + 1,
        checks_after="fix",
    )


CHECKS = AwaitedStep(
    "checks", 55, "running the project's checks", lambda t: t.checks_s + t.create_worker_s,
    _checks_request, _checks_answer, counter="checks_round",
)  # fmt: skip
FIX = AwaitedStep(
    "fix", 60, "the agent is fixing the failing checks", lambda t: t.agent_s + t.create_worker_s,
    _fix_request, _fix_answer, counter="fix_round",
)  # fmt: skip
