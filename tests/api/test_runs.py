"""Agent run records, usage sums and monthly caps through the API (SQLite and PostgreSQL):
who may record and read runs, what the sums add up to, and the monthly cap refusing new
engineering tasks; the CLI's `task log`, `usage` and `admin budget` against a real API
process."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from services.cli.main import app
from shared.api_client import ApiClient, ConflictError, ForbiddenError, NotFoundError
from shared.api_client import ValidationError as ApiValidationError
from shared.api_client.schemas import AgentRunCreate, AgentToolCallBody, ProjectUpdate, TaskUpdate
from shared.contracts import ProjectCreate, TaskCreate, TaskStatus, TaskType
from tests.api.process import ApiProcess
from tests.support.api import ApiHarness


def _run(cost: float, *, step: str = "send_spec", tokens: int = 1000) -> AgentRunCreate:
    return AgentRunCreate(
        step=step,
        agent="claude-code",
        agent_version="2.0.0 (Claude Code)",
        model="claude-sonnet-4-5",
        status="success",
        prompt_chars=321,
        answer="Done: wrote app.py\nsha abc123",
        tools=[
            AgentToolCallBody(name="Write", target="app.py", outcome="ok"),
            AgentToolCallBody(name="Bash", target="git push", outcome="error: rejected"),
        ],
        input_tokens=tokens,
        output_tokens=tokens // 10,
        cost_usd=cost,
        duration_ms=1500,
        exit_code=0,
    )


async def _task(api: ApiHarness, token: str, name: str = "shop") -> tuple[str, str]:
    async with api.client(token) as owner:
        project = await owner.create_project(ProjectCreate(name=name))
        task = await owner.create_task(TaskCreate(project_id=project.id, type=TaskType.ENGINEERING))
        return project.id, task.id


async def test_runs_are_recorded_by_services_and_read_like_the_task(api: ApiHarness) -> None:
    """The service records; the owner reads them in order with every field; another user
    gets 404 (as for the task); a user cannot record (403); an unknown task is 404."""
    _, alice = await api.user(1)
    _, bob = await api.user(2)
    _, task_id = await _task(api, alice)
    async with (
        api.client(api.service_key) as service,
        api.client(alice) as a,
        api.client(bob) as b,
    ):
        first = await service.record_run(task_id, _run(0.25))
        await service.record_run(task_id, _run(0.5, step="fix_checks"))
        runs = await a.list_runs(task_id)
        with pytest.raises(NotFoundError):
            await b.list_runs(task_id)
        with pytest.raises(ForbiddenError):
            await a.record_run(task_id, _run(0.1))
        with pytest.raises(NotFoundError):
            await service.record_run("no-such-task", _run(0.1))
    assert [r.step for r in runs] == ["send_spec", "fix_checks"]
    assert runs[0].id == first.id
    assert runs[0].tools[1].outcome == "error: rejected"
    assert runs[0].answer == "Done: wrote app.py\nsha abc123"
    assert runs[0].cost_usd == pytest.approx(0.25)
    assert runs[0].agent_version == "2.0.0 (Claude Code)"
    assert runs[0].user_id is not None


async def test_bad_run_records_are_refused(api: ApiHarness) -> None:
    """A negative cost, an unknown status, a NaN cost are 422s naming the field."""
    _, alice = await api.user(1)
    _, task_id = await _task(api, alice)
    good = _run(0.1).model_dump(mode="json")
    async with api.http(api.service_key) as http:
        for field, value in (("cost_usd", -1), ("status", "maybe"), ("input_tokens", 2**40)):
            answer = await http.post(f"/api/tasks/{task_id}/runs", json={**good, field: value})
            assert answer.status_code == 422, (field, answer.text)
            assert field in answer.text
        nan = await http.post(
            f"/api/tasks/{task_id}/runs",
            content=json.dumps({**good, "cost_usd": float("nan")}),
            headers={"content-type": "application/json"},
        )
    assert nan.status_code == 422


async def test_usage_adds_up_per_task_project_and_user(api: ApiHarness) -> None:
    """Two projects of alice, one of bob: alice's usage sums her runs only, by project and
    task; admins ask for anyone or a project; alice asking for bob's is 403."""
    alice_id, alice = await api.user(1)
    bob_id, bob = await api.user(2)
    p1, t1 = await _task(api, alice, "one")
    p2, t2 = await _task(api, alice, "two")
    _, t3 = await _task(api, bob, "three")
    async with api.client(api.service_key) as service:
        await service.record_run(t1, _run(0.25, tokens=1000))
        await service.record_run(t1, _run(0.5, tokens=2000))
        await service.record_run(t2, _run(1.0, tokens=4000))
        await service.record_run(t3, _run(8.0, tokens=100))
    async with api.client(alice) as a, api.client(api.admin_key) as admin:
        mine = await a.usage()
        with pytest.raises(ForbiddenError):
            await a.usage(user_id=bob_id)
        with pytest.raises(NotFoundError):
            await a.usage(project_id=(await admin.list_tasks(owner_id=bob_id)).items[0].project_id)
        of_p1 = await a.usage(project_id=p1)
        bobs = await admin.usage(user_id=bob_id)
        everyone = await admin.usage()
    assert mine.user_id == alice_id
    assert mine.runs == 3
    assert mine.cost_usd == pytest.approx(1.75)
    assert mine.month_cost_usd == pytest.approx(1.75)
    assert mine.input_tokens == 7000
    assert {line.id: line.cost_usd for line in mine.by_project} == {
        p2: pytest.approx(1.0),
        p1: pytest.approx(0.75),
    }
    assert [line.id for line in mine.by_task] == [t2, t1]  # costliest first
    assert of_p1.cost_usd == pytest.approx(0.75)
    assert bobs.cost_usd == pytest.approx(8.0)
    assert everyone.cost_usd == pytest.approx(9.75)
    assert everyone.runs == 4


async def test_a_user_over_the_monthly_cap_gets_no_new_engineering_task(
    api: ApiHarness,
) -> None:
    """An admin sets alice's cap at $1; at $1.20 spent, her next engineering task is refused
    (409 budget_exceeded naming spent/cap); a deploy task still goes; raising the cap lets
    tasks in again; only admins set caps."""
    alice_id, alice = await api.user(1)
    project_id, task_id = await _task(api, alice)
    async with api.client(api.admin_key) as admin, api.client(alice) as a:
        with pytest.raises(ForbiddenError):
            await a.set_budget(alice_id, 100.0)
        budget = await admin.set_budget(alice_id, 1.0)
        assert budget.monthly_cap_usd == 1.0
        await admin.record_run(task_id, _run(1.2))
        with pytest.raises(ConflictError) as refused:
            await a.create_task(TaskCreate(project_id=project_id, type=TaskType.ENGINEERING))
        assert (await a.usage()).monthly_cap_usd == 1.0
        assert (await a.get_budget(alice_id)).month_cost_usd == pytest.approx(1.2)
        await admin.set_budget(alice_id, 5.0)
        again = await a.create_task(TaskCreate(project_id=project_id, type=TaskType.ENGINEERING))
        with pytest.raises(ApiValidationError):
            await admin.set_budget(alice_id, -1.0)
    assert refused.value.code == "budget_exceeded"
    assert f"budget exceeded: user {alice_id} month 1.2000/1.0000 USD" in refused.value.body.message
    assert again.id


@pytest.mark.slow
def test_cli_task_log_usage_and_a_refused_task(tmp_path: Path) -> None:
    """`task log ID` prints the tool calls, the answer and the cost (`--json` the records);
    `usage` the sums; `admin budget` sets a cap, after which `task create` exits 1 with the
    budget error."""
    db_env = {"ORCHESTRATOR_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'api.db'}"}
    created = CliRunner().invoke(app, ["admin", "create-admin", "--telegram-id", "7"], env=db_env)
    assert created.exit_code == 0, created.output
    key = created.stdout.strip().splitlines()[-1]
    process = ApiProcess(
        database_url=db_env["ORCHESTRATOR_DATABASE_URL"], redis_url=None, relay_enabled=False
    ).start()
    env = {**db_env, "ORCHESTRATOR_API__URL": process.url, "ORCHESTRATOR_API__KEY": key}

    async def record(task_id: str) -> int:
        async with ApiClient(process.url, key=key) as admin:
            await admin.record_run(task_id, _run(0.75))
            me = await admin.me()
            return me.id

    try:
        made = CliRunner().invoke(app, ["project", "create", "shop", "--json"], env=env)
        project_id = json.loads(made.stdout)["id"]
        task = CliRunner().invoke(app, ["task", "create", project_id, "--json"], env=env)
        task_id = json.loads(task.stdout)["id"]
        user_id = asyncio.run(record(task_id))
        readable = CliRunner().invoke(app, ["task", "log", task_id], env=env)
        as_json = CliRunner().invoke(app, ["task", "log", task_id, "--json"], env=env)
        usage = CliRunner().invoke(app, ["usage", "--json"], env=env)
        capped = CliRunner().invoke(app, ["admin", "budget", str(user_id), "0.5"], env=env)
        refused = CliRunner().invoke(app, ["task", "create", project_id], env=env)
        missing = CliRunner().invoke(app, ["task", "log", "no-such-task"], env=env)
    finally:
        process.terminate()
    assert readable.exit_code == 0, readable.output
    text = readable.stdout
    assert "run 1 [send_spec] claude-code 2.0.0 (Claude Code)" in text
    assert "- Write app.py -> ok" in text
    assert "- Bash git push -> error: rejected" in text
    assert "    Done: wrote app.py" in text
    assert "cost $0.7500" in text
    assert "total: 1 run(s), $0.7500" in text
    assert json.loads(as_json.stdout)[0]["tools"][0] == {
        "name": "Write",
        "target": "app.py",
        "outcome": "ok",
    }
    assert json.loads(usage.stdout)["cost_usd"] == pytest.approx(0.75)
    assert capped.exit_code == 0, capped.output
    assert refused.exit_code == 1
    assert "budget_exceeded" in refused.stderr
    assert "month 0.7500/0.5000 USD" in refused.stderr
    assert missing.exit_code == 1
    assert "not found" in missing.stderr


async def test_a_replayed_run_record_is_stored_once(api: ApiHarness) -> None:
    """The same record posted twice (a flow's answer handled again after a crash) keeps one
    row: the second POST answers 200 with the first run; usage counts it once. Another key,
    or no key, is another run; the same key on another task is that task's own run."""
    _, alice = await api.user(1)
    _, task_id = await _task(api, alice)
    _, other_task = await _task(api, alice, name="blog")
    keyed = _run(0.25).model_copy(update={"run_key": f"{task_id}~send_spec"})
    async with api.client(api.service_key) as service, api.http(api.service_key) as http:
        first = await service.record_run(task_id, keyed)
        raw = await http.post(f"/api/tasks/{task_id}/runs", json=keyed.model_dump(mode="json"))
        again = await service.record_run(task_id, keyed)
        fix = await service.record_run(
            task_id, _run(0.5).model_copy(update={"run_key": f"{task_id}~fix#1"})
        )
        await service.record_run(task_id, _run(0.1))
        await service.record_run(task_id, _run(0.1))
        elsewhere = await service.record_run(other_task, keyed)
        runs = await service.list_runs(task_id)
        usage = await service.usage(project_id=first.project_id)
    assert raw.status_code == 200, raw.text
    assert raw.json()["id"] == first.id
    assert again.id == first.id
    assert first.run_key == f"{task_id}~send_spec"
    assert [r.id for r in runs].count(first.id) == 1
    assert len(runs) == 4
    assert fix.id != first.id
    assert elsewhere.id != first.id
    assert elsewhere.task_id == other_task
    assert usage.runs == 4
    assert usage.cost_usd == pytest.approx(0.25 + 0.5 + 0.1 + 0.1)


async def test_concurrent_copies_of_one_run_record_keep_one_row(api: ApiHarness) -> None:
    """Copies of one keyed record posted at once (a redelivered answer racing the first):
    every POST answers the same run and one row is stored."""
    _, alice = await api.user(1)
    _, task_id = await _task(api, alice)
    keyed = _run(0.3).model_copy(update={"run_key": f"{task_id}~resolve#2"})
    async with api.client(api.service_key) as service:
        answers = await asyncio.gather(*(service.record_run(task_id, keyed) for _ in range(6)))
        runs = await service.list_runs(task_id)
    assert {a.id for a in answers} == {runs[0].id}
    assert len(runs) == 1


async def test_two_tasks_started_together_cannot_pass_the_monthly_cap(api: ApiHarness) -> None:
    """Alice has spent $0.90 of a $1 cap and has two tasks created before either runs. Their
    agents start together (two holds at once): one holds the $0.10 left, the other is
    refused with the budget error naming the hold; a third task is refused at creation.
    Once the first task ended having spent $0.04, its hold is gone and the next holds the
    $0.06 left. Users cannot hold (403)."""
    alice_id, alice = await api.user(1)
    project_id, earlier = await _task(api, alice)
    async with api.client(api.admin_key) as admin, api.client(alice) as a:
        await admin.update_project(project_id, ProjectUpdate(parallel_tasks=3))
        await admin.set_budget(alice_id, 1.0)
        await admin.record_run(earlier, _run(0.9))
        await admin.update_task(earlier, TaskUpdate(status=TaskStatus.RUNNING))
        await admin.update_task(earlier, TaskUpdate(status=TaskStatus.COMPLETED))
        first, second = [
            (await a.create_task(TaskCreate(project_id=project_id, type=TaskType.ENGINEERING))).id
            for _ in range(2)
        ]
        with pytest.raises(ForbiddenError):
            await a.hold_budget(first)
    async with api.client(api.service_key) as s1, api.client(api.service_key) as s2:
        answers = await asyncio.gather(
            s1.hold_budget(first), s2.hold_budget(second), return_exceptions=True
        )
    holds = [answer for answer in answers if not isinstance(answer, BaseException)]
    refusals = [answer for answer in answers if isinstance(answer, ConflictError)]
    assert (len(holds), len(refusals)) == (1, 1), answers
    assert holds[0].hold_usd == pytest.approx(0.1)
    assert holds[0].monthly_cap_usd == 1.0
    assert holds[0].month_cost_usd == pytest.approx(0.9)
    assert refusals[0].code == "budget_exceeded"
    assert refusals[0].body.message.startswith(
        f"budget exceeded: user {alice_id} month 1.0000/1.0000 USD "
        "(0.1000 of it held by the user's running tasks)"
    )
    holder = holds[0].task_id
    async with api.client(api.admin_key) as admin, api.client(alice) as a:
        with pytest.raises(ConflictError) as at_creation:
            await a.create_task(TaskCreate(project_id=project_id, type=TaskType.ENGINEERING))
        await admin.record_run(holder, _run(0.04))
        await admin.update_task(holder, TaskUpdate(status=TaskStatus.RUNNING))
        await admin.update_task(holder, TaskUpdate(status=TaskStatus.COMPLETED))
        other = second if holder == first else first
        again = await admin.hold_budget(other)
    assert at_creation.value.code == "budget_exceeded"
    assert again.hold_usd == pytest.approx(0.06)
    assert again.held_by_others_usd == 0.0


async def test_a_fixed_hold_per_task_lets_tasks_run_side_by_side(api: ApiHarness) -> None:
    """With a hold of $0.30 per task and a $1 cap: three tasks hold $0.30 each, the fourth
    the $0.10 left, the fifth is refused; what a holder has spent counts once (its hold
    less its runs); holding again replaces a task's hold; without a cap nothing is held."""
    api.app.state.task_hold_usd = 0.3  # type: ignore[attr-defined]
    alice_id, alice = await api.user(1)
    bob_id, bob = await api.user(2)
    project_id, _ = await _task(api, alice)
    _, bobs = await _task(api, bob, "bobs")
    async with api.client(api.admin_key) as admin, api.client(alice) as a:
        await admin.update_project(project_id, ProjectUpdate(parallel_tasks=6))
        await admin.set_budget(alice_id, 1.0)
        tasks = [
            (await a.create_task(TaskCreate(project_id=project_id, type=TaskType.ENGINEERING))).id
            for _ in range(5)
        ]
        holds = [await admin.hold_budget(task) for task in tasks[:4]]
        with pytest.raises(ConflictError):
            await admin.hold_budget(tasks[4])
        await admin.record_run(tasks[0], _run(0.1))  # spent 0.1 of its 0.3: 0.2 still held
        replaced = await admin.hold_budget(tasks[3])
        free = await admin.hold_budget(bobs)
    assert [h.hold_usd for h in holds] == pytest.approx([0.3, 0.3, 0.3, 0.1])
    assert replaced.held_by_others_usd == pytest.approx(0.2 + 0.3 + 0.3)
    assert replaced.hold_usd == pytest.approx(1.0 - 0.1 - 0.8)
    assert (free.user_id, free.monthly_cap_usd, free.hold_usd) == (bob_id, None, None)
