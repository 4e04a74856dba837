"""Tasks: the outbox row in the same transaction, the lifecycle, cancellation, filters,
deadlines, re-drives."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest
from sqlalchemy import select

from services.api.app import create_app
from services.api.outbox.models import OutboxMessage
from services.api.tasks.models import Task
from shared.api_client import ApiClient, ConflictError, ForbiddenError, NotFoundError
from shared.api_client.schemas import TaskUpdate
from shared.contracts import (
    DeployMessage,
    EngineeringMessage,
    ProjectCreate,
    TaskCreate,
    TaskDTO,
    TaskStatus,
    TaskType,
)
from shared.settings import TaskDeadlines
from tests.support.api import ApiHarness


async def _outbox(api: ApiHarness) -> list[OutboxMessage]:
    async with api.database.sessionmaker() as session:
        return list((await session.scalars(select(OutboxMessage).order_by(OutboxMessage.id))).all())


async def test_engineering_and_deploy_tasks_write_their_message(api: ApiHarness) -> None:
    """The task row and its queue message (task, project, user, correlation id) are stored."""
    user_id, token = await api.user(1)
    async with api.client(token) as client:
        project = await client.create_project(ProjectCreate(name="shop"))
        engineering = await client.create_task(
            TaskCreate(project_id=project.id, type=TaskType.ENGINEERING, spec="add a cart")
        )
        deploy = await client.create_task(TaskCreate(project_id=project.id, type=TaskType.DEPLOY))
        await client.create_task(TaskCreate(project_id=project.id, type=TaskType.SCAFFOLDING))
    rows = await _outbox(api)
    assert [(r.stream, r.message_type) for r in rows] == [
        ("engineering:queue", "EngineeringMessage"),
        ("deploy:queue", "DeployMessage"),
    ]
    first = EngineeringMessage.model_validate_json(rows[0].payload)
    second = DeployMessage.model_validate_json(rows[1].payload)
    assert (first.task_id, first.project_id, first.user_id) == (engineering.id, project.id, user_id)
    assert first.correlation_id == rows[0].correlation_id == engineering.correlation_id
    assert (second.task_id, second.correlation_id) == (deploy.id, deploy.correlation_id)
    assert engineering.status == TaskStatus.QUEUED
    assert all(row.published_at is None for row in rows)


async def test_failed_create_leaves_neither_row_nor_message(api: ApiHarness) -> None:
    """A task for an unknown project writes nothing: no task, no outbox row."""
    async with api.client(api.admin_key) as admin:
        with pytest.raises(NotFoundError) as missing:
            await admin.create_task(TaskCreate(project_id="nope", type=TaskType.ENGINEERING))
    assert missing.value.fields[0].field == "project_id"
    assert await _outbox(api) == []
    async with api.database.sessionmaker() as session:
        assert (await session.scalars(select(Task))).all() == []


async def test_lifecycle_and_result(api: ApiHarness) -> None:
    """A service runs a task to completion with its result; jumps and reversals are refused."""
    _, token = await api.user(1)
    async with api.client(token) as user, api.client(api.service_key) as service:
        project = await user.create_project(ProjectCreate(name="p"))
        task = await user.create_task(TaskCreate(project_id=project.id, type=TaskType.ENGINEERING))
        with pytest.raises(ForbiddenError):
            await user.update_task(task.id, TaskUpdate(status=TaskStatus.RUNNING))
        with pytest.raises(ConflictError, match="from 'queued' to 'completed'"):
            await service.update_task(task.id, TaskUpdate(status=TaskStatus.COMPLETED))
        await service.update_task(task.id, TaskUpdate(status=TaskStatus.RUNNING))
        result = {"request_id": "r", "status": "success", "commit_sha": "abc"}
        done = await service.update_task(
            task.id, TaskUpdate(status=TaskStatus.COMPLETED, result=result)
        )
        assert (done.status, done.result) == (TaskStatus.COMPLETED, result)
        assert done.updated_at is not None
        with pytest.raises(ConflictError):
            await service.update_task(task.id, TaskUpdate(status=TaskStatus.RUNNING))
        assert (await user.get_task(task.id)).result == result


async def test_cancel_is_recorded_and_wins_over_the_flow(api: ApiHarness) -> None:
    """Cancelling a running task stamps it; the orchestrator's later updates get 409."""
    _, token = await api.user(1)
    async with api.client(token) as user, api.client(api.service_key) as service:
        project = await user.create_project(ProjectCreate(name="p"))
        task = await user.create_task(TaskCreate(project_id=project.id, type=TaskType.DEPLOY))
        await service.update_task(task.id, TaskUpdate(status=TaskStatus.RUNNING))
        cancelled = await user.cancel_task(task.id)
        assert cancelled.status == TaskStatus.CANCELLED
        with pytest.raises(ConflictError, match="cannot go from 'cancelled' to 'completed'"):
            await service.update_task(task.id, TaskUpdate(status=TaskStatus.COMPLETED))
        with pytest.raises(ConflictError, match="only a queued or running task"):
            await user.cancel_task(task.id)
        seen = await service.list_tasks(status=TaskStatus.CANCELLED)
        assert [t.id for t in seen.items] == [task.id]
    async with api.database.sessionmaker() as session:
        row = await session.get(Task, task.id)
        assert row is not None
        assert row.cancelled_at is not None


async def test_filters_and_pages(api: ApiHarness) -> None:
    """Tasks filter by project, type, status and owner and page newest first."""
    alice_id, alice = await api.user(1)
    _, bob = await api.user(2)
    async with api.client(alice) as a, api.client(bob) as b, api.client(api.admin_key) as admin:
        first = await a.create_project(ProjectCreate(name="a1"))
        second = await a.create_project(ProjectCreate(name="a2"))
        bobs = await b.create_project(ProjectCreate(name="b"))
        created = [
            await a.create_task(TaskCreate(project_id=first.id, type=TaskType.ENGINEERING)),
            await a.create_task(TaskCreate(project_id=first.id, type=TaskType.DEPLOY)),
            await a.create_task(TaskCreate(project_id=second.id, type=TaskType.ENGINEERING)),
            await b.create_task(TaskCreate(project_id=bobs.id, type=TaskType.ENGINEERING)),
        ]
        assert (await a.list_tasks(project_id=first.id)).total == 2
        assert (await a.list_tasks(task_type=TaskType.ENGINEERING)).total == 2
        assert (await admin.list_tasks(task_type=TaskType.ENGINEERING)).total == 3
        assert (await admin.list_tasks(owner_id=alice_id)).total == 3
        page = await admin.list_tasks(limit=2)
        assert [t.id for t in page.items] == [created[3].id, created[2].id]
        assert page.total == 4


# deadlines and re-drives ----------------------------------------------------------------------


def _client(app: object, key: str) -> ApiClient:
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    return ApiClient("http://api.test", key=key, transport=transport)


async def test_each_task_gets_its_types_deadline_visible_to_services_and_admins(
    api: ApiHarness,
) -> None:
    """deadline_at = creation + the type's configured allowance; users see the plain TaskDTO."""
    deadlines = TaskDeadlines(engineering_s=7200, deploy_s=600, scaffolding_s=60)
    app = create_app(api.database, task_deadlines=deadlines)
    _, token = await api.user(1)
    async with _client(app, token) as user, _client(app, api.admin_key) as admin:
        project = await user.create_project(ProjectCreate(name="p"))
        created = {
            kind: await user.create_task(TaskCreate(project_id=project.id, type=kind))
            for kind in (TaskType.ENGINEERING, TaskType.DEPLOY, TaskType.SCAFFOLDING)
        }
        for kind, allowance_s in [
            (TaskType.ENGINEERING, 7200),
            (TaskType.DEPLOY, 600),
            (TaskType.SCAFFOLDING, 60),
        ]:
            task = created[kind]
            schedule = await admin.get_task_schedule(task.id)
            assert schedule.deadline_at == task.created_at + timedelta(seconds=allowance_s)
            assert (schedule.correlation_id, schedule.redrive_count) == (task.correlation_id, 0)
            assert schedule.redriven_at is None
        with pytest.raises(ForbiddenError):
            await user.get_task_schedule(created[TaskType.DEPLOY].id)
        with pytest.raises(ForbiddenError):
            await user.list_task_schedules()
    async with api.http(token) as http:
        plain = (await http.get(f"/api/tasks/{created[TaskType.DEPLOY].id}")).json()
    assert set(plain) == set(TaskDTO.model_fields)


async def test_schedules_list_filters_by_status_and_type(api: ApiHarness) -> None:
    """The schedule list pages every user's tasks with the same filters as the task list."""
    user_id, _ = await api.user(1)
    async with api.client(api.service_key) as service:
        project = await service.create_project(ProjectCreate(name="p"), owner_id=user_id)
        queued = await service.create_task(
            TaskCreate(project_id=project.id, type=TaskType.ENGINEERING)
        )
        running = await service.create_task(TaskCreate(project_id=project.id, type=TaskType.DEPLOY))
        await service.update_task(running.id, TaskUpdate(status=TaskStatus.RUNNING))
        page = await service.list_task_schedules(status=TaskStatus.QUEUED)
        assert [t.id for t in page.items] == [queued.id]
        page = await service.list_task_schedules(task_type=TaskType.DEPLOY)
        assert [(t.id, t.status) for t in page.items] == [(running.id, TaskStatus.RUNNING)]
        assert (await service.list_task_schedules()).total == 2


async def test_a_task_without_a_stored_deadline_reports_creation_plus_allowance(
    api: ApiHarness,
) -> None:
    """Tasks created before deadlines existed (NULL) get creation + their type's allowance."""
    _, token = await api.user(1)
    async with api.client(token) as user:
        project = await user.create_project(ProjectCreate(name="p"))
        task = await user.create_task(TaskCreate(project_id=project.id, type=TaskType.DEPLOY))
    async with api.database.sessionmaker() as session:
        row = await session.get(Task, task.id)
        assert row is not None
        row.deadline_at = None
        await session.commit()
    async with api.client(api.admin_key) as admin:
        schedule = await admin.get_task_schedule(task.id)
    assert schedule.deadline_at == task.created_at + timedelta(seconds=TaskDeadlines().deploy_s)


async def test_redrive_writes_the_same_message_again_and_counts(api: ApiHarness) -> None:
    """A queued task's message joins the outbox again: same task, project, user, correlation."""
    user_id, token = await api.user(1)
    async with api.client(token) as user, api.client(api.service_key) as service:
        project = await user.create_project(ProjectCreate(name="p"))
        task = await user.create_task(TaskCreate(project_id=project.id, type=TaskType.DEPLOY))
        first = await service.redrive_task(task.id)
        second = await service.redrive_task(task.id)
        assert (first.redrive_count, second.redrive_count) == (1, 2)
        assert first.redriven_at is not None
        assert second.redriven_at is not None
        assert second.redriven_at >= first.redriven_at
        assert second.status == TaskStatus.QUEUED
        assert (await user.get_task(task.id)).updated_at is None
    rows = await _outbox(api)
    assert [(r.stream, r.message_type, r.correlation_id) for r in rows] == [
        ("deploy:queue", "DeployMessage", task.correlation_id)
    ] * 3
    messages = [DeployMessage.model_validate_json(r.payload) for r in rows]
    assert {(m.task_id, m.project_id, m.user_id, m.correlation_id) for m in messages} == {
        (task.id, project.id, user_id, task.correlation_id)
    }


async def test_redrive_is_refused_unless_a_queued_flow_task_and_a_service(
    api: ApiHarness,
) -> None:
    """Users get 403, unknown tasks 404; running, final and scaffolding tasks 409, no row."""
    _, token = await api.user(1)
    async with api.client(token) as user, api.client(api.admin_key) as admin:
        project = await user.create_project(ProjectCreate(name="p"))
        queued = await user.create_task(TaskCreate(project_id=project.id, type=TaskType.DEPLOY))
        running = await user.create_task(
            TaskCreate(project_id=project.id, type=TaskType.ENGINEERING)
        )
        await admin.update_task(running.id, TaskUpdate(status=TaskStatus.RUNNING))
        cancelled = await user.create_task(
            TaskCreate(project_id=project.id, type=TaskType.ENGINEERING)
        )
        await user.cancel_task(cancelled.id)
        scaffolding = await user.create_task(
            TaskCreate(project_id=project.id, type=TaskType.SCAFFOLDING)
        )
        before = len(await _outbox(api))
        with pytest.raises(ForbiddenError):
            await user.redrive_task(queued.id)
        with pytest.raises(NotFoundError):
            await admin.redrive_task("no-such-task")
        for task, problem in [
            (running, "task is running; only a queued task"),
            (cancelled, "task is cancelled; only a queued task"),
            (scaffolding, "a scaffolding task has no queue message"),
        ]:
            with pytest.raises(ConflictError, match=problem):
                await admin.redrive_task(task.id)
        assert len(await _outbox(api)) == before
        assert (await admin.get_task_schedule(running.id)).redrive_count == 0


async def test_a_final_result_is_not_overwritten(api: ApiHarness) -> None:
    """Failed/completed: a different result gets 409 (the same one is a no-op); a cancelled
    task still records why its flow stopped."""
    _, token = await api.user(1)
    async with api.client(token) as user, api.client(api.service_key) as service:
        project = await user.create_project(ProjectCreate(name="p"))
        task = await user.create_task(TaskCreate(project_id=project.id, type=TaskType.DEPLOY))
        reason = {"error": "deadline exceeded"}
        await service.update_task(task.id, TaskUpdate(status=TaskStatus.FAILED, result=reason))
        late = TaskUpdate(status=TaskStatus.FAILED, result={"error": "deploy: no answer"})
        with pytest.raises(ConflictError, match="task is failed; its result is final"):
            await service.update_task(task.id, late)
        again = await service.update_task(
            task.id, TaskUpdate(status=TaskStatus.FAILED, result=reason)
        )
        assert again.result == reason
        other = await user.create_task(TaskCreate(project_id=project.id, type=TaskType.DEPLOY))
        await user.cancel_task(other.id)
        noted = await service.update_task(other.id, TaskUpdate(result={"error": "task cancelled"}))
        assert noted.result == {"error": "task cancelled"}
    assert (await _task_row(api, task.id)).result == reason


async def _task_row(api: ApiHarness, task_id: str) -> Task:
    async with api.database.sessionmaker() as session:
        row = await session.get(Task, task_id)
        assert row is not None
        return row
