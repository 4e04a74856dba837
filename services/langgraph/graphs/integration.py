"""Integration of the engineering flow: the checked task branch onto the base branch.

One task of a project integrates at a time: its integration turn (`FlowStore.take_turn`)
is held from its first `integrate` until it lands or ends; others wait at
`integrate_turn`. The base branch moves only to a checked commit that contains it (a
compare-and-swap fast-forward; on GitHub a pull request merged at that commit). A base that
moved is merged into the task branch in the worker (`@orchestrator merge BASE`); a conflict
goes to the agent (`conflict_rounds`), then the checks run again.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

import structlog
from langgraph.runtime import Runtime
from langgraph.types import interrupt

from services.langgraph.errors import ApiCallError, StepFailedError
from services.langgraph.graphs.state import FlowState, Resume, request_id_for
from services.langgraph.graphs.steps import AwaitedStep, PlainStep, check_not_cancelled
from services.langgraph.graphs.worker_steps import (
    agent_answer,
    commands_stream,
    report_of,
    worker_of,
)
from services.langgraph.ports import FlowDeps
from services.langgraph.store import TURN_STEP, PendingWait
from shared.contracts import SendMessageCommand, TaskStatus

__all__ = ["INTEGRATE", "MERGE", "MERGE_DIRECTIVE", "RESOLVE", "resolve_prompt", "turn_wait"]

log = structlog.get_logger("services.langgraph.engineering")

MERGE_DIRECTIVE = "@orchestrator merge"
"""The reserved message (`@orchestrator merge BASE`) a developer worker answers by merging
the base branch into the task branch and pushing it."""


async def _integrate(state: FlowState, deps: FlowDeps) -> FlowState:
    """Move the base branch to the checked task branch, in the task's integration turn
    (one task of a project at a time, from its first integrate until it lands or ends)."""
    project_id, task_id = state["project_id"], state["task_id"]
    ttl_ms = int(deps.settings.timeouts.integration_turn_s * 1000)
    # the cancel check (every time: this step moves the base branch), the turn and the
    # base's head at once; a task polling for its turn reads the base once it has it
    polling = bool(state.get("integration_waiting"))
    read, holder, base_head = await asyncio.gather(
        check_not_cancelled(deps, state),
        deps.store.take_turn(project_id, task_id, ttl_ms=ttl_ms),
        _no_head() if polling else deps.git.head_of(state["repo_full_name"], state["base_branch"]),
    )
    if holder != task_id and await _ended(deps, holder):
        log.info("integration_turn_broken", project_id=project_id, holder=holder)
        await deps.store.release_turn(project_id, holder)
        holder = await deps.store.take_turn(project_id, task_id, ttl_ms=ttl_ms)
    if holder != task_id:
        now = deps.clock_s()
        since = state.get("turn_wait_since") or now
        await deps.store.queue_for_turn(project_id, task_id, since)
        if now - since > deps.settings.timeouts.integrate_wait_s:
            raise StepFailedError(
                "integrate",
                f"waited {now - since:.0f} s for task {holder} to integrate; "
                f"{state['base_branch']} is unchanged",
            )
        waiting = FlowState(integration_waiting=True, turn_wait_since=since, turn_holder=holder)
        return FlowState(**read, **waiting)
    if polling:
        base_head = await deps.git.head_of(state["repo_full_name"], state["base_branch"])
    update = await _integrate_in_turn(state, deps, base_head)
    if update.get("integrated"):
        await deps.store.release_turn(project_id, task_id)
    elif state.get("merge_round", 0) >= deps.settings.integrate_attempts:
        merges = state.get("merge_round", 0)
        raise StepFailedError(
            "integrate",
            f"{state['base_branch']} kept moving: merged it {merges} times; "
            f"{state['base_branch']} is unchanged",
        )
    return FlowState(**read, **update, integration_waiting=False, turn_wait_since=None)


async def _no_head() -> str | None:
    return None


async def _ended(deps: FlowDeps, task_id: str) -> bool:
    """True when the task holding a turn ended (or is unknown): its turn may be broken."""
    try:
        task = await deps.api.get_task(task_id)
    except ApiCallError as error:
        if error.is_not_found:
            return True
        raise
    return task.status in (TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED)


async def turn_wait(state: FlowState, *, runtime: Runtime[FlowDeps]) -> FlowState:
    """Wait (an interrupt the sweeper resumes) before asking for the turn again: resumed at
    once when the turn is given back while this task is first in line (an answer in the
    inbox), else after `turn_poll_s` (the turn of a task that ended elsewhere)."""
    deps = runtime.context
    task_id = state["task_id"]
    wait = PendingWait(
        request_id=request_id_for(task_id, TURN_STEP),
        step=TURN_STEP,
        deadline_at=deps.clock_s() + deps.settings.turn_poll_s,
    )
    await deps.store.set_wait(task_id, wait)
    resume = cast(Resume, interrupt(wait.model_dump()))
    await deps.store.clear_wait(task_id)
    await deps.store.drop_answer(wait.request_id)  # the next wait waits for the next one
    if resume.get("kind") == "cancelled":
        return FlowState(outcome="cancelled", failed_step="integrate", error="task cancelled")
    return FlowState()


async def _integrate_in_turn(state: FlowState, deps: FlowDeps, base_head: str | None) -> FlowState:
    """Land the checked head on the base, whose head was `base_head` when this task had
    its turn (read at once with taking it: a base moved meanwhile by the task that held
    the turn before is not an ancestor of the head either way, and the compare-and-swap
    refuses a stale `base_head`)."""
    git, full_name = deps.git, state["repo_full_name"]
    base, branch = state["base_branch"], state["branch"]
    head = state.get("checked_head")
    if not head:
        raise StepFailedError("integrate", "no checked commit to integrate")
    if base_head is None:
        raise StepFailedError("integrate", f"{full_name} has no branch {base}")
    title = f"Task {state['task_id']}: {_title(state.get('spec'))}"
    body = f"Checks passed on {head}.\n\n{state.get('spec') or ''}".strip()
    if state.get("integration") == "pull_request":
        pull = await git.pull_request(full_name, head=branch, base=base, title=title, body=body)
        files = await git.diff_files(full_name, state.get("base_sha") or base_head, head)
        return FlowState(
            integrated=True,
            pull_request_url=pull.url,
            merged_sha=pull.merge_commit_sha if pull.merged else None,
            commit_sha=head,
            result_branch=branch,
            files_changed=files,
        )
    # the usual case first (the base is behind the checked head): one question, not two
    if base_head == head or not await git.is_ancestor(full_name, base_head, head):
        if base_head == head or await git.is_ancestor(full_name, head, base_head):
            # landed already (a retry)
            files = await git.diff_files(full_name, state.get("base_sha") or base_head, head)
            return _landed(state, base_head, files, None)
        return FlowState(integrated=False)  # the base moved: merge it into the task branch
    if git.name == "github":
        files = await git.diff_files(full_name, base_head, head)
        pull = await git.pull_request(full_name, head=branch, base=base, title=title, body=body)
        merged = await git.merge_pull_request(full_name, pull.number, sha=head)
        new = merged.merge_commit_sha or await git.head_of(full_name, base) or head
        return _landed(state, new, files, pull.url)
    # what changed is read while the base moves (a compare-and-swap: both only read or
    # move it from `base_head`, so the answer is the same in either order)
    files, moved = await asyncio.gather(
        git.diff_files(full_name, base_head, head),
        git.fast_forward(full_name, base, expected=base_head, new=head),
    )
    if not moved:
        return FlowState(integrated=False)  # moved meanwhile
    return _landed(state, head, files, None)


def _landed(state: FlowState, sha: str, files: list[str], url: str | None) -> FlowState:
    return FlowState(
        integrated=True,
        merged_sha=sha,
        commit_sha=sha,
        result_branch=state["base_branch"],
        files_changed=files,
        pull_request_url=url,
    )


def _title(spec: str | None) -> str:
    first = (spec or "").strip().splitlines()[0] if (spec or "").strip() else "changes"
    return first[:72]


async def _merge_request(
    state: FlowState, deps: FlowDeps, request_id: str
) -> tuple[str, SendMessageCommand, FlowState]:
    base = state["base_branch"]
    command = SendMessageCommand(
        request_id=request_id,
        worker_id=worker_of(state, "merge"),
        message=f"{MERGE_DIRECTIVE} {base}\nMerge {base} into the task branch and push it.",
        timeout=max(int(deps.settings.timeouts.merge_s), 1),
    )
    return commands_stream(), command, FlowState()


async def _merge_answer(state: FlowState, deps: FlowDeps, answer: dict[str, Any]) -> FlowState:
    report = report_of("merge", answer)
    status = str(report.get("status"))
    merges = state.get("merge_round", 0) + 1
    base, branch = state["base_branch"], state["branch"]
    if status in ("merged", "up_to_date"):
        base_sha = await deps.git.head_of(state["repo_full_name"], base)
        return FlowState(
            merge_round=merges, merge_status=status, checks_after="merge", base_sha=base_sha
        )
    if status == "conflict":
        files = [str(f) for f in report.get("files", [])]
        if state.get("conflict_round", 0) < deps.settings.conflict_rounds:
            return FlowState(merge_round=merges, merge_status=status, conflict_files=files)
        return FlowState(
            merge_round=merges,
            merge_status=status,
            conflict_files=files,
            outcome="failed",
            failed_step="integrate",
            error=(
                f"integrate: merging {base} into {branch} conflicts in {', '.join(files)}; "
                f"{base} is unchanged"
            ),
        )
    raise StepFailedError("merge", str(report.get("error") or f"the merge answered {status}"))


def resolve_prompt(state: FlowState) -> str:
    """What the agent is asked when merging the base conflicted."""
    base, branch = state["base_branch"], state["branch"]
    files = ", ".join(state.get("conflict_files", []))
    return (
        f"Merging `{base}` into `{branch}` stopped on conflicts in: {files}.\n"
        "The merge is in progress in your workspace. Resolve the conflicts in these files so "
        f"that both `{base}`'s changes and yours are kept, `git add` them and commit the merge "
        f"(do not abort it), then push the branch `{branch}`."
    )


async def _resolve_request(
    state: FlowState, deps: FlowDeps, request_id: str
) -> tuple[str, SendMessageCommand, FlowState]:
    command = SendMessageCommand(
        request_id=request_id,
        worker_id=worker_of(state, "resolve"),
        message=resolve_prompt(state),
        timeout=int(deps.settings.timeouts.agent_s),
    )
    return commands_stream(), command, FlowState()


async def _resolve_answer(state: FlowState, deps: FlowDeps, answer: dict[str, Any]) -> FlowState:
    text, recorded = await agent_answer("resolve", answer, state, deps)
    return FlowState(
        **recorded, agent_response=text, conflict_round=state.get("conflict_round", 0) + 1
    )


INTEGRATE = PlainStep(
    "integrate", 80, "integrating into the base branch", _integrate,
    quiet_when="integration_waiting", asks_cancel=True,
)  # fmt: skip
MERGE = AwaitedStep(
    "merge", 70, "merging the base branch into the task branch",
    lambda t: t.merge_s + t.create_worker_s, _merge_request, _merge_answer, counter="merge_round",
)  # fmt: skip
RESOLVE = AwaitedStep(
    "resolve", 72, "the agent is resolving conflicts", lambda t: t.agent_s + t.create_worker_s,
    _resolve_request, _resolve_answer, counter="conflict_round",
)  # fmt: skip
