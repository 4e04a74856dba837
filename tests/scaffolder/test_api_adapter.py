"""ApiProjectStatus against the real REST API (in process, SQLite): the scaffold lifecycle."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from services.api.app import create_app
from services.api.auth.service import AuthService
from services.api.db import Database
from services.api.migrate import upgrade
from services.scaffolder.handlers import ScaffolderDeps, handle_scaffolder_message
from services.scaffolder.main import ApiProjectStatus
from shared.api_client import ApiClient
from shared.api_client.schemas import ProjectUpdate, UserCreate
from shared.contracts import ProjectCreate, ProjectStatus
from tests.support.scaffolder import make_message


@pytest.fixture
async def service_client(tmp_path: Path) -> AsyncIterator[ApiClient]:
    """A client of the real API app with a service credential, on a fresh SQLite database,
    where user 1 exists."""
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'api.db'}")
    await upgrade(database)
    async with database.sessionmaker() as session:
        auth = AuthService(session)
        _, admin_key = await auth.create_key("admin", "admin", None)
        _, key = await auth.create_key("scaffolder", "service", None)
        await session.commit()
    transport = httpx.ASGITransport(app=create_app(database))
    async with ApiClient("http://api.test", key=admin_key, transport=transport) as admin:
        await admin.create_user(UserCreate(telegram_id=1001))
    client = ApiClient("http://api.test", key=key, transport=transport)
    try:
        yield client
    finally:
        await client.aclose()
        await database.close()


async def _project(client: ApiClient) -> str:
    user = await client.find_user(1001)
    assert user is not None
    project = await client.create_project(ProjectCreate(name="Demo Shop"), owner_id=user.id)
    return project.id


async def test_scaffold_moves_the_real_project_to_scaffolded(
    service_client: ApiClient, deps: ScaffolderDeps
) -> None:
    """Through the API: draft → scaffolding → scaffolded with the repository URL; a redelivery
    once the project is developing leaves it developing."""
    project_id = await _project(service_client)
    adapter = ApiProjectStatus(service_client)
    real = dataclasses.replace(deps, projects=adapter, project_reader=adapter)
    message = make_message(project_id=project_id)
    assert (await handle_scaffolder_message(message, real)).status == "success"
    after = await service_client.get_project(project_id)
    assert after.status == ProjectStatus.SCAFFOLDED
    assert after.repository_url is not None
    assert after.repository_url.startswith("file://")
    await service_client.update_project(project_id, ProjectUpdate(status=ProjectStatus.DEVELOPING))
    assert (await handle_scaffolder_message(message, real)).status == "success"
    assert (await service_client.get_project(project_id)).status == ProjectStatus.DEVELOPING


async def test_failure_fails_the_real_project(
    service_client: ApiClient, deps: ScaffolderDeps
) -> None:
    """An unknown module moves the project to failed; an unknown project reads as None."""
    project_id = await _project(service_client)
    adapter = ApiProjectStatus(service_client)
    real = dataclasses.replace(deps, projects=adapter, project_reader=adapter)
    result = await handle_scaffolder_message(
        make_message(project_id=project_id, modules=["nope"]), real
    )
    assert result.status == "failed"
    assert (await service_client.get_project(project_id)).status == ProjectStatus.FAILED
    assert await adapter.get_project_status("no-such-project") is None
