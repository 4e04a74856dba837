"""Task order: a project's engineering tasks get their queue message one at a time, in
creation order; an ended task (completed, failed, cancelled) releases the next, in the same
transaction, so a crash of the API between the two loses no task."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis
from sqlalchemy import select

from services.api.db import Database
from services.api.outbox.models import OutboxMessage
from shared import registry
from shared.api_client import ConflictError, ValidationError
from shared.api_client.schemas import ProjectUpdate, TaskUpdate
from shared.contracts import EngineeringMessage, ProjectCreate, TaskCreate, TaskStatus, TaskType
from tests.api.process import ApiProcess
from tests.api.test_outbox import has_entries, stream_messages
from tests.support.api import ApiHarness
from tests.support.waiting import eventually

STREAM = registry.get("engineering:queue").name
_START_S = 240.0
"""An API process starting on a machine busy with other test runs can take a minute."""


async def _released(api: ApiHarness) -> list[str]:
    """The task ids of the engineering messages in the outbox, in the order written."""
    async with api.database.sessionmaker() as session:
        query = select(OutboxMessage).order_by(OutboxMessage.id)
        rows = (await session.scalars(query)).all()
    return [
        EngineeringMessage.model_validate_json(r.payload).task_id
        for r in rows
        if r.stream == STREAM
    ]


async def _project_with_tasks(api: ApiHarness, count: int) -> tuple[str, list[str], str]:
    """A user's project and `count` engineering tasks created one after the other."""
    _, token = await api.user(7)
    async with api.client(token) as user:
        project = await user.create_project(ProjectCreate(name="shop"))
        ids = [
            (
                await user.create_task(
                    TaskCreate(project_id=project.id, type=TaskType.ENGINEERING, spec=f"step {n}")
                )
            ).id
            for n in range(count)
        ]
    return project.id, ids, token


async def test_tasks_are_released_one_at_a_time_in_creation_order(api: ApiHarness) -> None:
    """Only the first of three gets its message; each end (completed, failed, cancelled)
    releases exactly the next; waiting tasks are not re-driven; deploys never wait."""
    project_id, (a, b, c), token = await _project_with_tasks(api, 3)
    assert await _released(api) == [a]
    async with api.client(api.service_key) as service, api.client(token) as user:
        held = await service.get_task_schedule(b)
        assert held.released_at is None
        assert held.status == TaskStatus.QUEUED
        with pytest.raises(ConflictError, match="waits for its turn"):
            await service.redrive_task(b)
        deploy = await user.create_task(TaskCreate(project_id=project_id, type=TaskType.DEPLOY))
        assert (await service.get_task_schedule(deploy.id)).released_at is not None
        await service.update_task(a, TaskUpdate(status=TaskStatus.RUNNING))
        assert await _released(api) == [a]  # running still holds the turn
        await service.update_task(a, TaskUpdate(status=TaskStatus.COMPLETED, result={"x": 1}))
        assert await _released(api) == [a, b]
        released_b = await service.get_task_schedule(b)
        assert released_b.released_at is not None
        assert released_b.deadline_at > held.deadline_at  # its deadline counts from release
        await service.update_task(b, TaskUpdate(status=TaskStatus.FAILED))
        assert await _released(api) == [a, b, c]
        await user.cancel_task(c)
        assert await _released(api) == [a, b, c]  # nothing left to release


async def test_a_cancelled_waiting_task_is_skipped_and_a_cancelled_running_one_releases(
    api: ApiHarness,
) -> None:
    """Cancel the second while the first runs: the third is next; cancel the first: the
    third starts."""
    _, (a, b, c), token = await _project_with_tasks(api, 3)
    async with api.client(token) as user:
        await user.cancel_task(b)
        assert await _released(api) == [a]
        await user.cancel_task(a)
        assert await _released(api) == [a, c]


async def test_the_project_setting_allows_more_in_parallel(api: ApiHarness) -> None:
    """parallel_tasks=2 releases the second waiting task at once, in order; a bad value is
    refused with the field named."""
    project_id, (a, b, c, d), token = await _project_with_tasks(api, 4)
    async with api.client(token) as user:
        with pytest.raises(ValidationError) as bad:
            await user.update_project(project_id, ProjectUpdate.model_construct(parallel_tasks=0))
        assert "parallel_tasks" in str(bad.value)
        await user.update_project(project_id, ProjectUpdate(parallel_tasks=2))
        assert await _released(api) == [a, b]
        await user.cancel_task(a)
        assert await _released(api) == [a, b, c]
        await user.update_project(project_id, ProjectUpdate(parallel_tasks=1))
        await user.cancel_task(b)  # c is still open: one at a time again, d waits
        assert await _released(api) == [a, b, c]
        await user.cancel_task(c)
        assert await _released(api) == [a, b, c, d]


async def test_projects_do_not_wait_for_each_other(api: ApiHarness) -> None:
    """The order is per project: a task of another project starts at once."""
    _, (a, _b), token = await _project_with_tasks(api, 2)
    async with api.client(token) as user:
        other = await user.create_project(ProjectCreate(name="other"))
        x = await user.create_task(TaskCreate(project_id=other.id, type=TaskType.ENGINEERING))
    assert await _released(api) == [a, x.id]


@pytest.mark.slow
@pytest.mark.timeout(600)  # two API processes start on a machine busy with other runs
async def test_an_api_killed_after_a_task_ended_still_starts_the_next(
    api: ApiHarness,
    database: Database,
    redis_url: str,
    redis_client: aioredis.Redis,
    tmp_path: Path,
) -> None:
    """SIGKILL right after the first task completed, before its relay ran: the restarted API
    publishes the second task's message; the third still waits."""
    first = ApiProcess(
        database_url=database.url,
        redis_url=redis_url,
        relay_enabled=False,
        log_path=tmp_path / "first.log",
    ).start(timeout_s=_START_S)
    try:
        headers = {"Authorization": f"Bearer {api.admin_key}"}
        async with httpx.AsyncClient(base_url=first.url, headers=headers) as http:
            user = (await http.post("/api/users", json={"telegram_id": 4711})).json()
            project = (
                await http.post(
                    "/api/projects", params={"owner_id": user["id"]}, json={"name": "p"}
                )
            ).json()
            ids = []
            for n in range(3):
                body = {"project_id": project["id"], "type": "engineering", "spec": f"step {n}"}
                response = await http.post("/api/tasks", json=body)
                assert response.status_code == 201, response.text
                ids.append(response.json()["id"])
            a, b, c = ids
            for status in ("running", "completed"):
                response = await http.patch(f"/api/tasks/{a}", json={"status": status})
                assert response.status_code == 200, response.text
    finally:
        first.kill()
    assert await redis_client.xlen(STREAM) == 0
    second = ApiProcess(
        database_url=database.url, redis_url=redis_url, log_path=tmp_path / "second.log"
    ).start(timeout_s=_START_S)
    try:
        await eventually(lambda: has_entries(redis_client, STREAM, 2), timeout_s=20)
        await asyncio.sleep(0.5)  # a third message would show up by now
        sent = await stream_messages(redis_client, STREAM)
        assert [m.task_id for _, m in sent] == [a, b]  # type: ignore[attr-defined]
        assert c not in await _released(api)
    finally:
        assert second.terminate() == 0


async def test_a_callers_correlation_id_is_kept_and_a_bad_one_refused(api: ApiHarness) -> None:
    """`X-Correlation-ID` is stored on the task and carried by its queue message; a value
    that is not a plain identifier is refused naming the header; without one, a new id."""
    _, token = await api.user(8)
    async with api.client(token) as user, api.client(api.service_key) as service:
        project = await user.create_project(ProjectCreate(name="p"))
        body = TaskCreate(project_id=project.id, type=TaskType.ENGINEERING)
        task = await user.create_task(body, correlation_id="tg-42-1001")
        assert task.correlation_id == "tg-42-1001"
        assert (await service.get_task_schedule(task.id)).correlation_id == "tg-42-1001"
        for bad in ("has space", "x" * 65, "-lead"):
            with pytest.raises(ValidationError) as refused:
                await user.create_task(body, correlation_id=bad)
            assert "X-Correlation-ID" in str(refused.value)
        other = await user.create_task(TaskCreate(project_id=project.id, type=TaskType.DEPLOY))
        assert other.correlation_id not in ("", "tg-42-1001")
    async with api.database.sessionmaker() as session:
        rows = (await session.scalars(select(OutboxMessage).order_by(OutboxMessage.id))).all()
    message = EngineeringMessage.model_validate_json(rows[0].payload)
    assert (message.task_id, message.correlation_id, rows[0].correlation_id) == (
        task.id,
        "tg-42-1001",
        "tg-42-1001",
    )


async def test_concurrent_creates_of_one_project_all_succeed(api: ApiHarness) -> None:
    """Creates of one project at the same time all succeed and still release one task: each
    inserts its task (on PostgreSQL a foreign-key lock on the project) and then locks the
    project, a lock that must not conflict with the other's foreign-key lock (`FOR UPDATE`
    did: the creates deadlocked)."""
    _, token = await api.user(7)
    async with api.client(token) as user:
        project = await user.create_project(ProjectCreate(name="shop"))
        created = await asyncio.gather(
            *(
                user.create_task(
                    TaskCreate(project_id=project.id, type=TaskType.ENGINEERING, spec=f"step {n}")
                )
                for n in range(8)
            )
        )
    assert len({task.id for task in created}) == 8
    assert len(await _released(api)) == 1
