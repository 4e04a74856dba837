"""A real developer worker (wrapper process) answers the reserved directives itself: the
project's checks run in its workspace, with its limits, and never reach the agent."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from shared.git import LocalGitProvider
from tests.backend_template import backend_remote
from tests.support.workers import Client


async def test_a_developer_worker_runs_the_checks_itself(
    start_manager: Callable[..., Any], client: Client, tmp_path: Path
) -> None:
    """`@orchestrator checks` to a builtin-agent developer worker: a JSON report of the
    template's `make test` (passed), nothing recorded by the agent."""
    url = await backend_remote(LocalGitProvider(tmp_path / "repos"), "projects/shop")
    await start_manager(adapter="builtin")
    context = {"profile": "developer", "repo_url": url, "branch": "task/t", "base_branch": "main"}
    created = await client.create("dev", context=context)
    assert created.success, created.error
    answer = await client.send(created.worker_id, "@orchestrator checks", timeout_s=120)
    assert answer.success, answer.error
    report = json.loads(answer.response)
    assert report["passed"] is True, report
    assert report["checks"][0]["command"] == "make test"
    workspace = Path((await client.record(created.worker_id)).workspace)
    assert not (workspace / ".builtin-agent").exists()
    await client.delete(created.worker_id)


async def test_only_developer_workers_answer_directives(
    start_manager: Callable[..., Any], client: Client, tmp_path: Path
) -> None:
    """A PO worker hands an `@orchestrator` message to its agent like any other text: no
    checks report comes back."""
    await start_manager(adapter="builtin")
    created = await client.create("po", context={"profile": "po"})
    assert created.success, created.error
    answer = await client.send(created.worker_id, "@orchestrator checks", timeout_s=60)
    assert answer.success, answer.error
    assert '"checks"' not in (answer.response or "")
    await client.delete(created.worker_id)
