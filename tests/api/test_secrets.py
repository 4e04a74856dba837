"""Project secrets: sealed at rest with a Fernet key ring, names-only reads, owner-only
writes, the sealed form for service credentials only, key rotation, and the CLI."""

from __future__ import annotations

import asyncio
import json
import os
import stat
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import text
from typer.testing import CliRunner

from services.api.app import create_app
from services.api.auth.service import AuthService
from services.api.db import Database
from services.api.secrets.service import rotate_all
from services.cli.main import app
from shared.api_client import ApiClient, ForbiddenError, NotFoundError, ValidationError
from shared.api_client.schemas import ProjectCreateBody
from shared.secret_box import (
    EMBEDDED_KEY_FILE,
    SecretBox,
    SecretBoxError,
    load_key,
    secret_box_from_settings,
)
from shared.settings import SecretsSettings, Settings
from tests.api.process import ApiProcess
from tests.support.api import ApiHarness

PLANTED = "tok-PLANTED-5b8e21c0d7"


@pytest.fixture
def key() -> bytes:
    return Fernet.generate_key()


@pytest.fixture
async def api(database: Database, key: bytes) -> ApiHarness:
    """The app with a secret box, an admin key and a service key."""
    async with database.sessionmaker() as session:
        auth = AuthService(session)
        _, admin_key = await auth.create_key("admin", "admin", None)
        _, service_key = await auth.create_key("infra", "service", None)
        await session.commit()
    app_ = create_app(database, secret_box=SecretBox([key]))
    return ApiHarness(database, app_, admin_key, service_key)


# the key ring ------------------------------------------------------------------------------


def test_box_seals_opens_and_rotates() -> None:
    """Old keys still decrypt after a new one is put in front; `rotate` moves a token to the
    new key, after which the old key can be dropped."""
    old, new = Fernet.generate_key(), Fernet.generate_key()
    token = SecretBox([old]).seal(PLANTED)
    assert PLANTED not in token
    ring = SecretBox([new, old])
    assert ring.open(token) == PLANTED
    rotated = ring.rotate(token)
    assert SecretBox([new]).open(rotated) == PLANTED
    with pytest.raises(SecretBoxError, match="cannot be decrypted") as caught:
        SecretBox([new]).open(token, name="secret BOT_TOKEN")
    assert "BOT_TOKEN" in str(caught.value)
    with pytest.raises(SecretBoxError):
        SecretBox([old]).open(rotated)
    with pytest.raises(SecretBoxError, match="at least one key"):
        SecretBox([])


def test_key_references_fail_clearly(tmp_path: Path) -> None:
    """Bad references name the reference and never echo what they point at."""
    good = Fernet.generate_key()
    assert load_key("env:K", environ={"K": good.decode()}) == good
    (tmp_path / "k").write_text(good.decode() + "\n")
    assert load_key(f"file:{tmp_path / 'k'}") == good
    with pytest.raises(SecretBoxError, match=r"'env:MISSING'.*not set"):
        load_key("env:MISSING", environ={})
    with pytest.raises(SecretBoxError, match="not a Fernet key") as caught:
        load_key("env:K", environ={"K": "not-a-key-" + PLANTED})
    assert PLANTED not in str(caught.value)
    with pytest.raises(SecretBoxError, match="cannot be read"):
        load_key(f"file:{tmp_path / 'absent'}")
    with pytest.raises(SecretBoxError, match="unknown scheme"):
        load_key("vault:x")
    with pytest.raises(SecretBoxError, match="expected env:NAME"):
        load_key("K")


def test_embedded_key_is_generated_once_with_mode_0600(tmp_path: Path) -> None:
    """No key configured: one is generated under `<data_dir>/secrets` (0600) and reused."""
    settings = Settings(data_dir=tmp_path)
    token = secret_box_from_settings(settings).seal(PLANTED)
    path = tmp_path / "secrets" / EMBEDDED_KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert secret_box_from_settings(Settings(data_dir=tmp_path)).open(token) == PLANTED
    other = Settings(data_dir=tmp_path, secrets=SecretsSettings(keys=["env:K"]))
    with pytest.raises(SecretBoxError):
        secret_box_from_settings(other, environ={"K": Fernet.generate_key().decode()}).open(token)


# the routes --------------------------------------------------------------------------------


async def _project(client: ApiClient) -> str:
    return (await client.create_project(ProjectCreateBody(name="bot"))).id


async def test_owner_sets_lists_and_removes_secrets(api: ApiHarness, key: bytes) -> None:
    """A value is stored sealed (not in the database in the clear), lists show names only,
    a second PUT replaces it, DELETE removes it."""
    _, token = await api.user(501)
    async with api.client(token) as owner, api.http(token) as http:
        project_id = await _project(owner)
        info = await owner.put_secret(project_id, "BOT_TOKEN", PLANTED)
        assert info.name == "BOT_TOKEN"
        await owner.put_secret(project_id, "OTHER", "x")
        await owner.put_secret(project_id, "BOT_TOKEN", PLANTED + "-2")
        listed = await http.get(f"/api/projects/{project_id}/secrets")
        assert listed.status_code == 200
        assert [item["name"] for item in listed.json()] == ["BOT_TOKEN", "OTHER"]
        assert PLANTED not in listed.text
        shown = await http.get(f"/api/projects/{project_id}")
        assert PLANTED not in shown.text
        await owner.delete_secret(project_id, "OTHER")
        assert [s.name for s in await owner.list_secrets(project_id)] == ["BOT_TOKEN"]
        with pytest.raises(NotFoundError, match="no secret 'OTHER'"):
            await owner.delete_secret(project_id, "OTHER")
    async with api.database.engine.connect() as connection:
        rows = (await connection.execute(text("SELECT name, sealed FROM project_secrets"))).all()
    assert len(rows) == 1
    assert PLANTED not in rows[0].sealed
    assert SecretBox([key]).open(rows[0].sealed) == PLANTED + "-2"


async def test_bad_names_and_values_are_refused_without_echo(api: ApiHarness) -> None:
    """A name that is no variable name, a multi-line or blank value: 422 naming the field,
    never repeating the value."""
    _, token = await api.user(502)
    async with api.client(token) as owner, api.http(token) as http:
        project_id = await _project(owner)
        bad_name = await http.put(f"/api/projects/{project_id}/secrets/1BAD", json={"value": "v"})
        assert bad_name.status_code == 422
        assert "name" in bad_name.text
        for value in (f"{PLANTED}\nEVIL=1", "   ", ""):
            bad = await http.put(f"/api/projects/{project_id}/secrets/OK", json={"value": value})
            assert bad.status_code == 422, value
            assert "value" in bad.json()["fields"][0]["field"]
            assert PLANTED not in bad.text
        too_long = await http.put(
            f"/api/projects/{project_id}/secrets/OK", json={"value": "x" * 9000}
        )
        assert too_long.status_code == 422
        assert await owner.list_secrets(project_id) == []
        with pytest.raises(ValidationError):
            await owner.put_secret(project_id, "OK", "two\nlines")


async def test_only_the_owner_sees_and_only_services_get_the_sealed_form(
    api: ApiHarness,
) -> None:
    """Another user finds no project; the sealed form is refused to users and admins and
    given to service credentials; a missing project is 404."""
    _, token = await api.user(503)
    _, stranger = await api.user(504)
    async with api.client(token) as owner:
        project_id = await _project(owner)
        await owner.put_secret(project_id, "BOT_TOKEN", PLANTED)
        with pytest.raises(ForbiddenError):
            await owner.sealed_secrets(project_id)
    async with api.client(stranger) as other:
        with pytest.raises(NotFoundError):
            await other.list_secrets(project_id)
        with pytest.raises(NotFoundError):
            await other.put_secret(project_id, "BOT_TOKEN", "hijack")
        with pytest.raises(NotFoundError):
            await other.delete_secret(project_id, "BOT_TOKEN")
    async with api.client(api.admin_key) as admin:
        with pytest.raises(ForbiddenError, match="scope service"):
            await admin.sealed_secrets(project_id)
        assert [s.name for s in await admin.list_secrets(project_id)] == ["BOT_TOKEN"]
    async with api.client(api.service_key) as service:
        sealed = await service.sealed_secrets(project_id)
        assert set(sealed.sealed) == {"BOT_TOKEN"}
        assert PLANTED not in sealed.sealed["BOT_TOKEN"]
        with pytest.raises(NotFoundError):
            await service.sealed_secrets("no-such-project")


async def test_without_a_box_setting_a_secret_answers_503(database: Database) -> None:
    async with database.sessionmaker() as session:
        _, admin_key = await AuthService(session).create_key("admin", "admin", None)
        await session.commit()
    harness = ApiHarness(database, create_app(database), admin_key, admin_key)
    _, token = await harness.user(505)
    async with harness.http(token) as http, harness.client(token) as owner:
        project_id = await _project(owner)
        answer = await http.put(f"/api/projects/{project_id}/secrets/A", json={"value": "v"})
    assert answer.status_code == 503
    assert answer.json()["code"] == "secrets_unavailable"


async def test_rotation_reencrypts_every_secret(api: ApiHarness, key: bytes) -> None:
    """After `rotate_all` under [new, old], every value opens with the new key alone."""
    _, token = await api.user(506)
    async with api.client(token) as owner:
        for index in range(3):
            project_id = await _project(owner)
            await owner.put_secret(project_id, "TOKEN", f"{PLANTED}-{index}")
    new = Fernet.generate_key()
    async with api.database.sessionmaker() as session:
        assert await rotate_all(session, SecretBox([new, key])) == 3
        await session.commit()
    async with api.database.engine.connect() as connection:
        rows = (await connection.execute(text("SELECT sealed FROM project_secrets"))).all()
    assert sorted(SecretBox([new]).open(row.sealed) for row in rows) == [
        f"{PLANTED}-{index}" for index in range(3)
    ]
    async with api.database.sessionmaker() as session:
        with pytest.raises(SecretBoxError, match="secret TOKEN of project"):
            await rotate_all(session, SecretBox([Fernet.generate_key()]))


@pytest.mark.slow
def test_cli_sets_from_stdin_lists_rotates_and_removes(tmp_path: Path) -> None:
    """`project secret set ID NAME` reads stdin (the value is never an argument),
    `list` shows names only, `admin rotate-secrets` re-encrypts, `rm` removes; a create
    with `--modules backend,telegram` records both modules and an unknown one exits 2."""
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    db_env = {
        "ORCHESTRATOR_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'api.db'}",
        "ORCHESTRATOR_DATA_DIR": str(tmp_path),
        "OLD_KEY": old,
        "NEW_KEY": new,
        "ORCHESTRATOR_SECRETS__KEYS": '["env:OLD_KEY"]',
    }
    created = CliRunner().invoke(app, ["admin", "create-admin", "--telegram-id", "7"], env=db_env)
    assert created.exit_code == 0, created.output
    admin_key = created.stdout.strip().splitlines()[-1]
    process = ApiProcess(
        database_url=db_env["ORCHESTRATOR_DATABASE_URL"],
        redis_url=None,
        relay_enabled=False,
        log_path=tmp_path / "api.log",
    )
    process.env.update(db_env)
    process.start(timeout_s=240)
    env = {**db_env, "ORCHESTRATOR_API__URL": process.url, "ORCHESTRATOR_API__KEY": admin_key}
    try:
        made = CliRunner().invoke(
            app, ["project", "create", "bot", "--modules", "backend,telegram", "--json"], env=env
        )
        assert made.exit_code == 0, made.output
        project = json.loads(made.stdout)
        assert project["modules"] == ["backend", "telegram"]
        unknown = CliRunner().invoke(app, ["project", "create", "x", "--modules", "web"], env=env)
        assert unknown.exit_code == 2
        assert "unknown module(s) web" in unknown.stderr
        no_module = ["project", "import", "x", "--repo", "/nowhere", "--modules", " , "]
        unknown = CliRunner().invoke(app, no_module, env=env)
        assert unknown.exit_code == 2
        assert "unknown module(s) (none given)" in unknown.stderr
        secret = ["project", "secret"]
        set_ = CliRunner().invoke(
            app, [*secret, "set", project["id"], "BOT_TOKEN"], input=PLANTED + "\n", env=env
        )
        assert set_.exit_code == 0, set_.output
        assert PLANTED not in set_.output
        blank = CliRunner().invoke(app, [*secret, "set", project["id"], "B"], input="\n", env=env)
        assert blank.exit_code == 2
        listed = CliRunner().invoke(app, [*secret, "list", project["id"], "--json"], env=env)
        assert [item["name"] for item in json.loads(listed.stdout)] == ["BOT_TOKEN"]
        assert PLANTED not in listed.stdout

        rotate_env = {**env, "ORCHESTRATOR_SECRETS__KEYS": '["env:NEW_KEY", "env:OLD_KEY"]'}
        rotated = CliRunner().invoke(app, ["admin", "rotate-secrets"], env=rotate_env)
        assert rotated.exit_code == 0, rotated.output
        assert "1 secret(s) re-encrypted" in rotated.stderr
        wrong = CliRunner().invoke(
            app, ["admin", "rotate-secrets"], env={**env, "ORCHESTRATOR_SECRETS__KEYS": "[]"}
        )
        assert wrong.exit_code == 1
        assert "nothing was changed" in wrong.stderr

        async def sealed() -> str:
            database = Database(db_env["ORCHESTRATOR_DATABASE_URL"])
            try:
                async with database.engine.connect() as connection:
                    row = (
                        await connection.execute(text("SELECT sealed FROM project_secrets"))
                    ).one()
                    return str(row.sealed)
            finally:
                await database.close()

        assert SecretBox([new.encode()]).open(asyncio.run(sealed())) == PLANTED
        removed = CliRunner().invoke(app, [*secret, "rm", project["id"], "BOT_TOKEN"], env=env)
        assert removed.exit_code == 0, removed.output
        again = CliRunner().invoke(app, [*secret, "rm", project["id"], "BOT_TOKEN"], env=env)
        assert again.exit_code == 1
        assert "no secret 'BOT_TOKEN'" in " ".join(again.stderr.split())
    finally:
        process.terminate()
    assert os.environ.get("ORCHESTRATOR_SECRETS__KEYS") is None
