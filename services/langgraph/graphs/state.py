"""The state of a flow, as the checkpointer keeps it (plain JSON-able values only)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, TypedDict

from shared.steps import step_request_id, task_of_step

__all__ = [
    "FlowState",
    "Outcome",
    "Resume",
    "initial_state",
    "project_modules",
    "request_id_for",
    "task_of",
]

Outcome = Literal["running", "completed", "failed", "cancelled", "skipped"]
"""`skipped`: the task had already ended before this flow started (nothing to do)."""


class FlowState(TypedDict, total=False):
    """Everything a flow knows; every field but the first five is filled in by a step."""

    task_id: str
    project_id: str
    user_id: int
    request_id: str
    """The request id of the message that started the flow (its progress events carry it)."""
    correlation_id: str
    callback_stream: str | None
    flow: str
    """`engineering` or `deploy` (empty in flows checkpointed before it existed)."""
    step_started_at: float
    """Epoch seconds: when the step now awaited sent its request (its duration's start)."""
    outcome: Outcome
    error: str | None
    failed_step: str | None
    deadline_at: float
    """Epoch seconds: when the step now awaited times out."""
    warnings: list[str]
    spec: str | None
    status_read_at: float
    """Epoch seconds: when the flow last read its task's status (not cancelled then); a step
    within `status_fresh_s` of it does not ask again."""
    finished: bool
    """`finish` recorded the task's final status and result (cleanup may follow)."""
    # engineering
    project_name: str
    modules: list[str]
    repo_full_name: str
    needs_scaffold: bool
    branch: str
    base_branch: str
    base_sha: str | None
    worker_id: str | None
    worker_round: int
    """Which developer worker of the task this is (1 unless one died); rounds after the first
    use their own request ids."""
    worker_deleted: bool
    agent_response: str | None
    agent_cost_usd: float
    """What the task's agent runs cost so far (their records' `cost_usd`)."""
    agent_runs: int
    """The agent's last answer (the spec's, a fix's, a resolution's)."""
    pending_run: dict[str, Any] | None
    """The record of the spec's agent run, stored by the checks' request alongside its own
    call (else by the task's end; its `run_key` makes a second store a no-op)."""
    commit_sha: str
    files_changed: list[str]
    progress_pct: int
    """The highest percentage reported so far: progress never goes back in a loop."""
    task_head: str | None
    """The task branch's commit the agent's work ended on (verify)."""
    checked_head: str | None
    """The commit the last passing checks ran on (it is what gets integrated)."""
    checks_round: int
    """Runs of the checks so far (each run has its own request id)."""
    checks: list[dict[str, Any]]
    """Every run of the checks: round, why it ran, passed, note, each check's outcome."""
    checks_next: Literal["integrate", "fix"]
    checks_after: str
    """What the next checks run follows: `spec`, `fix` or `merge`."""
    result_branch: str
    """The branch `commit_sha` is on: the base branch once integrated (the task branch when
    the integration is a pull request left open)."""
    integration: str
    status_before: str
    """The project's status when the task began (put back when the task ends)."""
    project_status: str
    """The project's status as `prepare` (or `scaffold`) last read it."""
    fix_round: int
    """Fix prompts sent so far (at most `fix_rounds`)."""
    merge_round: int
    """Merges of the base branch into the task branch asked for so far."""
    merge_status: str
    """The last merge's answer: merged, up_to_date, conflict."""
    conflict_round: int
    conflict_files: list[str]
    integrated: bool
    integration_waiting: bool
    """Another task of the project holds the integration turn: this one polls for it."""
    turn_wait_since: float | None
    turn_holder: str | None
    merged_sha: str | None
    pull_request_url: str | None
    # deploy
    server_handle: str
    server_ip: str
    port: int
    deployed_url: str
    project_running: bool
    """Whether a release of the project may run on its port: the allocation existed before
    (allocate), a deploy was requested (deploy), infra-service's word after a cancel or a
    failed release."""
    deploy_sha: str
    """The commit the deploy ships, resolved once when it starts (the base branch's head, or
    the commit its spec names)."""
    deploy_kind: str
    """`deploy` (the base branch's head) or `rollback` (a commit its spec names)."""
    previous_serves: bool
    """After a failed release: infra-service put the previous release back and it serves."""
    project_deploying: bool
    """The flow moved the project to `deploying` (so it moves it on when it ends)."""


class Resume(TypedDict, total=False):
    """The value a waiting step is resumed with."""

    kind: Literal["answer", "timeout", "cancelled"]
    answer: dict[str, Any]


def initial_state(
    *,
    task_id: str,
    project_id: str,
    user_id: int,
    request_id: str,
    correlation_id: str,
    callback_stream: str | None,
    flow: str = "",
) -> FlowState:
    """The state a flow starts from."""
    return FlowState(
        flow=flow,
        task_id=task_id,
        project_id=project_id,
        user_id=user_id,
        request_id=request_id,
        correlation_id=correlation_id,
        callback_stream=callback_stream,
        outcome="running",
        error=None,
        warnings=[],
    )


def request_id_for(task_id: str, step: str) -> str:
    """The request id of a step's command: the same every time the step is replayed."""
    return step_request_id(task_id, step)


def task_of(request_id: str) -> str | None:
    """The task a request id of ours belongs to (None for someone else's request)."""
    return task_of_step(request_id)


def project_modules(project: object, default: Sequence[str]) -> list[str]:
    """The modules a project was created with (the API's `modules`), else `default`."""
    modules = getattr(project, "modules", None)
    if isinstance(modules, list) and modules:
        return [str(name) for name in modules]
    return list(default)
