"""`project:ID` secrets: stored through the API (sealed), opened by infra-service with the
key ring for a deploy, and found in no argv, log, progress event or result."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from cryptography.fernet import Fernet

from services.api.app import create_app
from services.api.auth.service import AuthService
from services.api.db import Database
from services.api.migrate import upgrade
from services.infra_service.errors import SecretError
from services.infra_service.handlers import handle_ansible_deploy_message
from services.infra_service.secrets import SchemeSecretsProvider
from services.infra_service.settings import InfraSettings
from shared.api_client import ApiClient
from shared.api_client.schemas import ProjectCreateBody, UserCreate
from shared.contracts import AnsibleDeployMessage, ProvisionerResult
from shared.redis_server import free_port
from shared.secret_box import SecretBox
from tests.infra_service.test_secrets_deploy import (
    FASTAPI_MAIN,
    PYPROJECT,
    scan_process_table,
)
from tests.support.infra_service import make_deps, make_repo

PLANTED = "stored-PLANTED-93d1a6f0"


@dataclasses.dataclass
class StoredApi:
    owner: ApiClient
    service: ApiClient
    project_id: str
    box: SecretBox


@pytest.fixture
async def stored(tmp_path: Path) -> AsyncIterator[StoredApi]:
    """An API (in process, real SQLite) with a project owned by a user, and the box."""
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'api.db'}")
    await upgrade(database)
    box = SecretBox([Fernet.generate_key()])
    app = create_app(database, secret_box=box)
    async with database.sessionmaker() as session:
        auth = AuthService(session)
        _, admin_key = await auth.create_key("admin", "admin", None)
        _, service_key = await auth.create_key("infra", "service", None)
        await session.commit()

    def client(key: str) -> ApiClient:
        return ApiClient("http://api.test", key=key, transport=httpx.ASGITransport(app=app))

    async with client(admin_key) as admin:
        user = await admin.create_user(UserCreate(telegram_id=77))
    async with database.sessionmaker() as session:
        _, token = await AuthService(session).create_key("t", "user", user.id)
        await session.commit()
    async with client(token) as owner, client(service_key) as service:
        project = await owner.create_project(ProjectCreateBody(name="vault"))
        yield StoredApi(owner, service, project.id, box)
    await database.close()


async def test_project_reference_resolves_stored_over_legacy_file(
    stored: StoredApi, tmp_path: Path
) -> None:
    """Stored secrets win over the legacy `<id>.env` file; no secrets at all is ''."""
    provider = SchemeSecretsProvider.default(tmp_path, api=stored.service, box=stored.box)
    ref = f"project:{stored.project_id}"
    assert await provider.resolve(ref) == ""
    (tmp_path / f"{stored.project_id}.env").write_text("GREETING=hello\nAPI_SECRET=old\n")
    await stored.owner.put_secret(stored.project_id, "API_SECRET", PLANTED)
    resolved = await provider.resolve(ref)
    assert json.loads(resolved) == {"GREETING": "hello", "API_SECRET": PLANTED}


async def test_project_reference_failures_name_the_reference_not_the_value(
    stored: StoredApi, tmp_path: Path
) -> None:
    """No key, a wrong key, a project the API does not know, a bad id: `SecretError`s."""
    await stored.owner.put_secret(stored.project_id, "API_SECRET", PLANTED)
    ref = f"project:{stored.project_id}"
    keyless = SchemeSecretsProvider.default(tmp_path, api=stored.service, box=None)
    with pytest.raises(SecretError, match="no key to open"):
        await keyless.resolve(ref)
    wrong = SchemeSecretsProvider.default(
        tmp_path, api=stored.service, box=SecretBox([Fernet.generate_key()])
    )
    with pytest.raises(SecretError, match="secret API_SECRET: cannot be decrypted") as caught:
        await wrong.resolve(ref)
    assert PLANTED not in str(caught.value)
    right = SchemeSecretsProvider.default(tmp_path, api=stored.service, box=stored.box)
    with pytest.raises(SecretError, match="the API refused"):
        await right.resolve("project:0000-unknown")
    with pytest.raises(SecretError, match="not a project id"):
        await right.resolve("project:../etc")
    user_side = SchemeSecretsProvider.default(tmp_path, api=stored.owner, box=stored.box)
    with pytest.raises(SecretError, match="the API refused"):
        await user_side.resolve(ref)


@pytest.mark.slow
async def test_stored_secret_reaches_the_deployed_app_and_leaks_nowhere(
    stored: StoredApi,
    infra_settings: InfraSettings,
    provisioned: ProvisionerResult,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A secret set through the API reaches the app's environment on deploy; the planted
    value is in no process's argv, log line, progress event or result."""
    caplog.set_level(logging.DEBUG)
    await stored.owner.put_secret(stored.project_id, "API_SECRET", PLANTED)
    await stored.owner.put_secret(stored.project_id, "GREETING", "hi")
    make_repo(
        infra_settings,
        "acme/stored",
        {
            "backend/app/__init__.py": "",
            "backend/app/main.py": FASTAPI_MAIN,
            "backend/pyproject.toml": PYPROJECT,
        },
    )
    deps, progress = make_deps(infra_settings)
    secrets = SchemeSecretsProvider.default(
        infra_settings.effective_secrets_dir, api=stored.service, box=stored.box
    )
    deps = dataclasses.replace(deps, secrets=secrets)
    message = AnsibleDeployMessage(
        project_id=stored.project_id,
        project_name="Stored",
        repo_full_name="acme/stored",
        server_ip="127.0.0.1",
        port=free_port(),
        modules=["backend"],
        github_token_ref="env:GITHUB_TOKEN",
        secrets_ref=f"project:{stored.project_id}",
    )
    found: list[str] = []
    stop = asyncio.Event()
    scanner = asyncio.create_task(scan_process_table(found, stop, PLANTED))
    try:
        result = await handle_ansible_deploy_message(message, deps)
    finally:
        stop.set()
        await scanner
    assert result.status == "success", result.error
    assert result.deployed_url is not None
    answer = await asyncio.to_thread(httpx.get, f"{result.deployed_url}/health", timeout=5)
    assert answer.json() == {"status": "ok", "secret_length": len(PLANTED), "greeting": "hi"}
    assert found == []
    assert PLANTED not in result.model_dump_json()
    assert all(PLANTED not in event.model_dump_json() for event in progress.events)
    captured = capfd.readouterr()
    assert PLANTED not in captured.out + captured.err
    assert PLANTED not in caplog.text
