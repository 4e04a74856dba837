"""`PATCH /api/tasks/{id}` with `project_status`: the end of an engineering task gives its
project back in the same transaction (the flow's `finish` needs no project reads or PATCH),
under the same lifecycle rules as `PATCH /api/projects/{id}`."""

from __future__ import annotations

import pytest

from shared.api_client import ApiClient, ConflictError, ForbiddenError, ValidationError
from shared.api_client.schemas import ProjectUpdate, TaskUpdate
from shared.contracts import (
    ProjectCreate,
    ProjectDTO,
    ProjectStatus,
    TaskCreate,
    TaskDTO,
    TaskStatus,
    TaskType,
)
from tests.support.api import ApiHarness

P = ProjectStatus


async def _project_at(service: ApiClient, user: ApiClient, *path: ProjectStatus) -> ProjectDTO:
    """A new project of `user`, moved by the service along `path`."""
    project = await user.create_project(ProjectCreate(name="shop"))
    for status in path:
        project = await service.update_project(project.id, ProjectUpdate(status=status))
    return project


async def _running(service: ApiClient, user: ApiClient, project_id: str) -> TaskDTO:
    task = await user.create_task(TaskCreate(project_id=project_id, type=TaskType.ENGINEERING))
    return await service.update_task(task.id, TaskUpdate(status=TaskStatus.RUNNING))


WORK = (P.SCAFFOLDING, P.SCAFFOLDED, P.DEVELOPING)


@pytest.mark.parametrize(
    ("in_work", "back"),
    [
        (P.DEVELOPING, P.SCAFFOLDED),
        (P.TESTING, P.SCAFFOLDED),  # through developing, as the lifecycle wants
        (P.DEVELOPING, P.ACTIVE),
        (P.TESTING, P.FAILED),
    ],
)
async def test_the_end_of_the_task_gives_the_project_back(
    api: ApiHarness, in_work: ProjectStatus, back: ProjectStatus
) -> None:
    """The task's final status, its result and its project's status in one request."""
    _, token = await api.user(1)
    async with api.client(token) as user, api.client(api.service_key) as service:
        path = (*WORK, P.TESTING) if in_work == P.TESTING else WORK
        project = await _project_at(service, user, *path)
        task = await _running(service, user, project.id)
        done = await service.update_task(
            task.id,
            TaskUpdate(status=TaskStatus.COMPLETED, result={"ok": True}, project_status=back),
        )
        assert (done.status, done.result) == (TaskStatus.COMPLETED, {"ok": True})
        assert (await user.get_project(project.id)).status == back


async def test_another_open_task_keeps_the_project_in_work(api: ApiHarness) -> None:
    """While another engineering task of the project is queued (waiting for its turn) or
    running, the project stays in work; the last one to end gives it back."""
    _, token = await api.user(1)
    async with api.client(token) as user, api.client(api.service_key) as service:
        project = await _project_at(service, user, *WORK)
        first = await _running(service, user, project.id)
        second = await user.create_task(
            TaskCreate(project_id=project.id, type=TaskType.ENGINEERING)
        )
        assert second.status == TaskStatus.QUEUED
        await service.update_task(
            first.id, TaskUpdate(status=TaskStatus.FAILED, project_status=P.SCAFFOLDED)
        )
        assert (await user.get_project(project.id)).status == P.DEVELOPING
        await service.update_task(second.id, TaskUpdate(status=TaskStatus.RUNNING))
        await service.update_task(
            second.id, TaskUpdate(status=TaskStatus.COMPLETED, project_status=P.SCAFFOLDED)
        )
        assert (await user.get_project(project.id)).status == P.SCAFFOLDED


async def test_a_project_that_left_its_work_keeps_its_status(api: ApiHarness) -> None:
    """A project deploying (or failed, archived) meanwhile is not taken back; the task's
    own change is still made."""
    _, token = await api.user(1)
    async with api.client(token) as user, api.client(api.service_key) as service:
        project = await _project_at(service, user, *WORK)
        task = await _running(service, user, project.id)
        await service.update_project(project.id, ProjectUpdate(status=P.DEPLOYING))
        done = await service.update_task(
            task.id, TaskUpdate(status=TaskStatus.COMPLETED, project_status=P.SCAFFOLDED)
        )
        assert done.status == TaskStatus.COMPLETED
        assert (await user.get_project(project.id)).status == P.DEPLOYING


async def test_a_cancelled_task_gives_its_project_back_with_its_result(api: ApiHarness) -> None:
    """A task cancelled through the API keeps its status; the flow's later result-only
    PATCH gives the project back. A final status refused (409) changes nothing."""
    _, token = await api.user(1)
    async with api.client(token) as user, api.client(api.service_key) as service:
        project = await _project_at(service, user, *WORK)
        task = await _running(service, user, project.id)
        await user.cancel_task(task.id)
        with pytest.raises(ConflictError):
            await service.update_task(
                task.id, TaskUpdate(status=TaskStatus.COMPLETED, project_status=P.SCAFFOLDED)
            )
        assert (await user.get_project(project.id)).status == P.DEVELOPING  # rolled back
        kept = await service.update_task(
            task.id, TaskUpdate(result={"error": "task cancelled"}, project_status=P.SCAFFOLDED)
        )
        assert kept.status == TaskStatus.CANCELLED
        assert (await user.get_project(project.id)).status == P.SCAFFOLDED


async def test_only_services_and_admins_give_a_project_back(api: ApiHarness) -> None:
    """A user may not PATCH tasks, project_status included; an admin may."""
    _, token = await api.user(1)
    async with (
        api.client(token) as user,
        api.client(api.service_key) as service,
        api.client(api.admin_key) as admin,
    ):
        project = await _project_at(service, user, *WORK)
        task = await _running(service, user, project.id)
        with pytest.raises(ForbiddenError):
            await user.update_task(task.id, TaskUpdate(project_status=P.SCAFFOLDED))
        with pytest.raises(ForbiddenError):
            await user.update_task(
                task.id, TaskUpdate(status=TaskStatus.FAILED, project_status=P.SCAFFOLDED)
            )
        assert (await user.get_task(task.id)).status == TaskStatus.RUNNING
        assert (await user.get_project(project.id)).status == P.DEVELOPING
        await admin.update_task(
            task.id, TaskUpdate(status=TaskStatus.FAILED, project_status=P.ACTIVE)
        )
        assert (await user.get_project(project.id)).status == P.ACTIVE


@pytest.mark.parametrize("value", ["developing", "testing", "draft", "archived", "flying", 3])
async def test_a_bad_project_status_is_a_clear_422(api: ApiHarness, value: object) -> None:
    """Only scaffolded, active or failed are statuses a project goes back to; anything else
    is refused naming the field, and nothing changes."""
    _, token = await api.user(1)
    async with api.client(token) as user, api.client(api.service_key) as service:
        project = await _project_at(service, user, *WORK)
        task = await _running(service, user, project.id)
    async with api.http(api.service_key) as http:
        answer = await http.patch(
            f"/api/tasks/{task.id}", json={"status": "completed", "project_status": value}
        )
    assert answer.status_code == 422
    body = answer.json()
    assert body["code"] == "validation_error"
    assert [problem["field"] for problem in body["fields"]] == ["body.project_status"]
    async with api.client(token) as user:
        assert (await user.get_task(task.id)).status == TaskStatus.RUNNING
        assert (await user.get_project(project.id)).status == P.DEVELOPING


async def test_project_status_only_with_the_end_of_the_task(api: ApiHarness) -> None:
    """A task still running gives no project back: 422 on `project_status`, and the rest
    of the change is not made either."""
    _, token = await api.user(1)
    async with api.client(token) as user, api.client(api.service_key) as service:
        project = await _project_at(service, user, *WORK)
        task = await _running(service, user, project.id)
        with pytest.raises(ValidationError, match="the task is running") as running:
            await service.update_task(
                task.id, TaskUpdate(result={"partial": 1}, project_status=P.SCAFFOLDED)
            )
        assert running.value.fields[0].field == "project_status"
        assert (await user.get_task(task.id)).result is None
        assert (await user.get_project(project.id)).status == P.DEVELOPING
