"""The engineering loop on the real backend template: a fake agent CLI edits the code for
real, the template's own tests run as the checks, failing checks go back to the agent, and
checked work lands on `main` (merging a base that moved, resolving conflicts)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from shared.api_client.schemas import ProjectUpdate
from shared.contracts import ProgressEvent, ProjectCreate, ProjectDTO, ProjectStatus, TaskStatus
from shared.git import GitHubProvider, run_git
from shared.git.naming import repo_full_name
from shared.messaging import Bus
from shared.registry import Actor
from tests.backend_template import backend_remote
from tests.git.fake_github import FakeGitHub
from tests.support.langgraph import GraphSystem, langgraph

GITHUB_TOKEN = "ghp_TestToken0123456789abcdef"
FAKE_AGENT = [sys.executable, str(Path(__file__).resolve().parents[1] / "fake_dev_agent.py")]


async def backend_project(graph_system: GraphSystem, name: str) -> tuple[ProjectDTO, str]:
    """A scaffolded project whose repository holds the backend template; its full name. Its
    engineering tasks may run at once (these tests race tasks on purpose; task order has its
    own tests)."""
    project = await graph_system.admin.create_project(
        ProjectCreate(name=name), owner_id=graph_system.user_id
    )
    full_name = repo_full_name("projects", project.id, project.name)
    url = await backend_remote(graph_system.git, full_name)
    await graph_system.admin.update_project(
        project.id, ProjectUpdate(status=ProjectStatus.SCAFFOLDING)
    )
    project = await graph_system.admin.update_project(
        project.id,
        ProjectUpdate(status=ProjectStatus.SCAFFOLDED, repository_url=url, parallel_tasks=100),
    )
    graph_system.workers.agent_command = FAKE_AGENT
    return project, full_name


async def show(graph_system: GraphSystem, full_name: str, path: str, rev: str = "main") -> str:
    """A file of the remote repository at a revision."""
    _, out, _ = await run_git("show", f"{rev}:{path}", cwd=graph_system.git.path_of(full_name))
    return out


async def test_an_endpoint_task_passes_its_checks_and_lands_on_main(
    graph_system: GraphSystem,
) -> None:
    """The agent adds /hello; the template's `make test` runs in the workspace (the project
    is `testing` meanwhile) and passes; main fast-forwards to the task's commit; the next
    task's worker starts from that work and lands its own endpoint beside it."""
    project, full_name = await backend_project(graph_system, "Hello")
    before = await graph_system.git.head_of(full_name, "main")
    graph_system.workers.directive_hold = asyncio.Event()
    async with langgraph(graph_system):
        first_id = await graph_system.task(project.id, "add a /hello endpoint that returns world")
        await asyncio.wait_for(graph_system.workers.directive_started.wait(), 30)
        during = await graph_system.admin.get_project(project.id)
        graph_system.workers.directive_hold.set()
        first = await graph_system.wait_final(first_id, timeout_s=60)
        second_id = await graph_system.task(project.id, "add /bye that returns ciao")
        second = await graph_system.wait_final(second_id, timeout_s=60)
        await graph_system.wait_idle()
    assert during.status == ProjectStatus.TESTING
    assert first.status == TaskStatus.COMPLETED, first.result
    assert first.result is not None
    assert first.result["branch"] == "main"
    sha = first.result["commit_sha"]
    assert sha != before
    assert await graph_system.git.is_ancestor(full_name, before or "", sha)
    assert first.result["files_changed"] == ["backend/app/main.py", "backend/tests/test_hello.py"]
    [run] = first.result["checks"]["runs"]
    [check] = run["checks"]
    assert (run["passed"], run["after"], check["command"], check["cwd"]) == (
        True, "spec", "make test", "backend",
    )  # fmt: skip
    assert check["exit_code"] == 0
    assert "5 passed" in check["output_tail"]
    assert first.result["agent_answer"].startswith("Implemented it.")

    assert second.status == TaskStatus.COMPLETED, second.result
    assert second.result is not None
    main = await graph_system.git.head_of(full_name, "main")
    assert second.result["commit_sha"] == main
    assert await graph_system.git.is_ancestor(full_name, sha, main or "")  # started from /hello
    assert second.result["checks"]["rounds"] == 1  # no merge was needed
    source = await show(graph_system, full_name, "backend/app/main.py")
    assert source.count('@app.get("/hello")') == 1
    assert source.count('@app.get("/bye")') == 1
    assert (await graph_system.admin.get_project(project.id)).status == ProjectStatus.SCAFFOLDED


async def test_failing_checks_go_back_to_the_agent_and_are_fixed(graph_system: GraphSystem) -> None:
    """The agent's change breaks the tests; round 1 fails with pytest's output, the agent
    gets it and fixes it, round 2 passes and the fix lands; progress only moves forward."""
    project, full_name = await backend_project(graph_system, "Fixme")
    async with langgraph(graph_system):
        task_id = await graph_system.task(project.id, "add /hi BREAK-ONCE")
        task = await graph_system.wait_final(task_id, timeout_s=60)
        await graph_system.wait_idle()
    assert task.status == TaskStatus.COMPLETED, task.result.get("error") if task.result else None
    assert task.result is not None
    first, second = task.result["checks"]["runs"]
    assert first["passed"] is False
    assert "broken on purpose" in first["checks"][0]["output_tail"]
    assert first["checks"][0]["exit_code"] not in (0, None)
    assert (second["passed"], second["after"]) == (True, "fix")
    assert task.result["checks"]["fix_rounds"] == 1
    assert task.result["agent_answer"].startswith("Fixed the failing test.")
    fix = [
        c for c in graph_system.workers.commands if getattr(c, "request_id", "").endswith("~fix#1")
    ]
    assert len(fix) == 1
    assert "broken on purpose" in getattr(fix[0], "message", "")
    files = await run_git(
        "ls-tree", "-r", "--name-only", "main", cwd=graph_system.git.path_of(full_name)
    )
    assert "backend/tests/test_broken.py" not in files[1]
    assert "backend/tests/test_hi.py" in files[1]
    bus = Bus(graph_system.redis, actor=Actor.TELEGRAM_BOT)
    events: list[ProgressEvent] = [e async for e in bus.follow_progress(task_id)]
    pcts = [e.progress_pct for e in events if e.progress_pct is not None]
    assert pcts == sorted(pcts)
    assert pcts.count(100) == 1
    assert events[-1].progress_pct == 100


async def test_checks_never_fixed_fail_the_task_and_main_is_unchanged(
    graph_system: GraphSystem,
) -> None:
    """The agent never fixes the tests: after `fix_rounds` (2) the task fails with the
    failing output, and main still points where it did."""
    project, full_name = await backend_project(graph_system, "Broken")
    before = await graph_system.git.head_of(full_name, "main")
    async with langgraph(graph_system):
        task = await graph_system.wait_final(
            await graph_system.task(project.id, "add /hi BREAK-ALWAYS"), timeout_s=90
        )
        await graph_system.wait_idle()
    assert task.status == TaskStatus.FAILED
    assert task.result is not None
    assert task.result["error"].startswith("checks: still failing after 2 fix rounds")
    assert "broken on purpose" in task.result["error"]
    assert task.result["checks"]["rounds"] == 3
    assert await graph_system.git.head_of(full_name, "main") == before
    assert (await graph_system.admin.get_project(project.id)).status == ProjectStatus.SCAFFOLDED
    assert graph_system.workers.live == {}


async def test_two_tasks_on_the_same_lines_both_land(
    graph_system: GraphSystem, tmp_path: Path
) -> None:
    """Two tasks from the same base insert routes at the same place: the first lands, the
    second merges main, gets the conflict, resolves it, passes the checks and lands; main
    holds each change once and the template's tests pass there."""
    project, full_name = await backend_project(graph_system, "Race")
    gate = tmp_path / "gate"
    async with langgraph(graph_system):
        first_id = await graph_system.task(project.id, f"add /alpha BARRIER:{gate}:2")
        second_id = await graph_system.task(project.id, f"add /beta BARRIER:{gate}:2 SLOW")
        first, second = await graph_system.wait_all_final([first_id, second_id], timeout_s=120)
        await graph_system.wait_idle()
    assert first.status == TaskStatus.COMPLETED, first.result
    assert second.status == TaskStatus.COMPLETED, second.result
    assert second.result is not None
    assert second.result["conflict_files"] == ["backend/app/main.py"]
    afters = [run["after"] for run in second.result["checks"]["runs"]]
    assert afters == ["spec", "merge"]
    assert second.result["checks"]["passed"] is True
    main = await graph_system.git.head_of(full_name, "main")
    assert second.result["commit_sha"] == main
    source = await show(graph_system, full_name, "backend/app/main.py")
    assert source.count('@app.get("/alpha")') == 1
    assert source.count('@app.get("/beta")') == 1
    assert "<<<<<<<" not in source


async def test_an_unresolvable_conflict_fails_only_that_task(
    graph_system: GraphSystem, tmp_path: Path
) -> None:
    """The agent will not resolve the conflict: that task fails naming the file, main keeps
    the other task's work only."""
    project, full_name = await backend_project(graph_system, "Stubborn")
    gate = tmp_path / "gate"
    async with langgraph(graph_system):
        good_id = await graph_system.task(project.id, f"add /alpha BARRIER:{gate}:2")
        bad_id = await graph_system.task(project.id, f"add /beta BARRIER:{gate}:2 SLOW NO-RESOLVE")
        good, bad = await graph_system.wait_all_final([good_id, bad_id], timeout_s=120)
        await graph_system.wait_idle()
    assert good.status == TaskStatus.COMPLETED, good.result
    assert bad.status == TaskStatus.FAILED, bad.result
    assert bad.result is not None
    assert bad.result["error"] == (
        f"integrate: merging main into task/{bad_id} conflicts in backend/app/main.py; "
        "main is unchanged"
    )
    assert good.result is not None
    assert await graph_system.git.head_of(full_name, "main") == good.result["commit_sha"]
    source = await show(graph_system, full_name, "backend/app/main.py")
    assert '@app.get("/beta")' not in source
    assert graph_system.workers.live == {}


async def test_pull_requests_need_a_provider_that_has_them(graph_system: GraphSystem) -> None:
    """`integration = pull_request` on local repositories fails the task with a clear error,
    the base untouched."""
    project, full_name = await backend_project(graph_system, "Local PR")
    before = await graph_system.git.head_of(full_name, "main")
    async with langgraph(graph_system, integration="pull_request"):
        task = await graph_system.wait_final(
            await graph_system.task(project.id, "add /x"), timeout_s=60
        )
        await graph_system.wait_idle()
    assert task.status == TaskStatus.FAILED
    assert task.result is not None
    assert "has no pull requests" in task.result["error"]
    assert await graph_system.git.head_of(full_name, "main") == before


@pytest.fixture
async def github(graph_system: GraphSystem) -> AsyncIterator[tuple[GitHubProvider, FakeGitHub]]:
    """A GitHub provider on the fake GitHub, whose repositories are the system's bare ones."""
    fake = FakeGitHub(graph_system.git.root, GITHUB_TOKEN, git_url=graph_system.git.root.as_uri())
    provider = GitHubProvider(
        SecretStr(GITHUB_TOKEN), api_url="https://api.github.example", transport=fake.transport()
    )
    try:
        yield provider, fake
    finally:
        await provider.aclose()


async def test_on_github_a_pull_request_is_opened_and_merged(
    graph_system: GraphSystem, github: tuple[GitHubProvider, FakeGitHub]
) -> None:
    """With the GitHub provider the checked task branch lands through a pull request merged
    by the REST API: main is its merge commit; the result names the pull request."""
    provider, fake = github
    project, full_name = await backend_project(graph_system, "Hub")
    before = await graph_system.git.head_of(full_name, "main")
    async with langgraph(graph_system, git=provider):
        task_id = await graph_system.task(project.id, "add /hello that returns world")
        task = await graph_system.wait_final(task_id, timeout_s=60)
        await graph_system.wait_idle()
    assert task.status == TaskStatus.COMPLETED, task.result.get("error") if task.result else None
    assert task.result is not None
    [pull] = fake.pulls[full_name]
    assert (pull["head"], pull["base"], pull["merged"]) == (f"task/{task_id}", "main", True)
    main = await graph_system.git.head_of(full_name, "main")
    assert task.result["commit_sha"] == main == pull["merge_commit_sha"]
    assert task.result["pull_request_url"] == f"https://github.example/{full_name}/pull/1"
    head = await graph_system.git.head_of(full_name, f"task/{task_id}")
    assert await graph_system.git.is_ancestor(full_name, head or "", main or "")
    assert await graph_system.git.is_ancestor(full_name, before or "", main or "")
    assert task.result["files_changed"] == ["backend/app/main.py", "backend/tests/test_hello.py"]


async def test_integration_pull_request_leaves_the_merge_to_a_person(
    graph_system: GraphSystem, github: tuple[GitHubProvider, FakeGitHub]
) -> None:
    """`integration = pull_request`: the pull request is opened, the task completes with its
    URL, and main is untouched."""
    provider, fake = github
    project, full_name = await backend_project(graph_system, "Review")
    before = await graph_system.git.head_of(full_name, "main")
    async with langgraph(graph_system, git=provider, integration="pull_request"):
        task_id = await graph_system.task(project.id, "add /hello")
        task = await graph_system.wait_final(task_id, timeout_s=60)
        await graph_system.wait_idle()
    assert task.status == TaskStatus.COMPLETED, task.result.get("error") if task.result else None
    assert task.result is not None
    [pull] = fake.pulls[full_name]
    assert (pull["state"], pull["merged"]) == ("open", False)
    assert task.result["pull_request_url"] == f"https://github.example/{full_name}/pull/1"
    assert task.result["branch"] == f"task/{task_id}"
    assert task.result["commit_sha"] == await graph_system.git.head_of(full_name, f"task/{task_id}")
    assert await graph_system.git.head_of(full_name, "main") == before
