"""The console's rules without a browser: the real application on a SQLite file, requests
through httpx's ASGI transport (bad input, one-time links, expiry, CSRF, redirects)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy import update

from services.api.app import create_app
from services.api.auth.models import ApiKey
from services.api.auth.service import AuthService
from services.api.console.router import COOKIE
from services.api.console.sessions import LINK_NAME, SESSION_NAME
from services.api.db import Database
from services.api.migrate import upgrade
from services.api.users.models import User


@dataclass
class Console:
    client: httpx.AsyncClient
    database: Database
    user_key: str
    admin_key: str

    async def sign_in(self, key: str) -> httpx.Response:
        return await self.client.post("/console/login", data={"api_key": key})

    async def age(self, name: str) -> None:
        """Make every live key called `name` years old."""
        async with self.database.sessionmaker() as session:
            await session.execute(
                update(ApiKey)
                .where(ApiKey.name == name, ApiKey.revoked_at.is_(None))
                .values(created_at=datetime(2020, 1, 1, tzinfo=UTC))
            )
            await session.commit()


@pytest.fixture
async def console(tmp_path: Path) -> AsyncIterator[Console]:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'console.db'}")
    await upgrade(database)
    async with database.sessionmaker() as session:
        user = User(telegram_id=7, is_admin=False)
        session.add(user)
        await session.flush()
        _, user_key = await AuthService(session).create_key("u", "user", user.id)
        _, admin_key = await AuthService(session).create_key("a", "admin", None)
        await session.commit()
    app = create_app(database)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://console") as client:
        yield Console(client, database, user_key, admin_key)
    await database.close()


async def test_sign_in_sets_a_strict_http_only_cookie(console: Console) -> None:
    answer = await console.sign_in(console.user_key)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/console/"
    cookie = answer.headers["set-cookie"].lower()
    assert "httponly" in cookie
    assert "samesite=strict" in cookie
    assert "path=/console" in cookie
    assert console.user_key not in answer.headers["set-cookie"]  # a session key, not the key
    page = await console.client.get("/console/")
    assert page.status_code == 200
    assert "No project yet" in page.text


async def test_bad_keys_and_console_secrets_do_not_sign_in(console: Console) -> None:
    for key in ("", "orc_unknown", "x" * 300):
        answer = await console.sign_in(key)
        assert answer.status_code == 401, key
        assert "set-cookie" not in answer.headers
    await console.sign_in(console.user_key)
    session_secret = console.client.cookies[COOKIE]
    console.client.cookies.clear()
    refused = await console.sign_in(session_secret)
    assert refused.status_code == 401
    assert "not a console credential" in refused.text


async def test_next_is_only_a_console_path(console: Console) -> None:
    for target, expected in (
        ("/console/admin", "/console/admin"),
        ("//evil.example/console/", "/console/"),
        ("https://evil.example/", "/console/"),
        ("/console/\\\\evil", "/console/"),
    ):
        answer = await console.client.post(
            "/console/login", data={"api_key": console.user_key, "next": target}
        )
        assert answer.headers["location"] == expected, target


async def test_a_link_works_once_and_expires(console: Console) -> None:
    bearer = {"Authorization": f"Bearer {console.user_key}"}
    made = await console.client.post("/console/links", headers=bearer)
    assert made.status_code == 201
    path = made.json()["path"]
    first = await console.client.get(path)
    assert first.status_code == 303
    assert COOKIE in first.cookies
    console.client.cookies.clear()
    again = await console.client.get(path)
    assert again.status_code == 401
    assert "used already" in again.text

    late = (await console.client.post("/console/links", headers=bearer)).json()["path"]
    await console.age(LINK_NAME)
    expired = await console.client.get(late)
    assert expired.status_code == 401
    assert "expired" in expired.text


async def test_a_session_cannot_ask_for_links(console: Console) -> None:
    await console.sign_in(console.user_key)
    secret = console.client.cookies[COOKIE]
    refused = await console.client.post(
        "/console/links", headers={"Authorization": f"Bearer {secret}"}
    )
    assert refused.status_code == 401
    missing = await console.client.post("/console/links", headers={"Authorization": "Basic x"})
    assert missing.status_code == 401


async def test_expired_and_signed_out_sessions_are_refused(console: Console) -> None:
    await console.sign_in(console.user_key)
    await console.age(SESSION_NAME)
    expired = await console.client.get("/console/")
    assert expired.status_code == 303
    assert expired.headers["location"].startswith("/console/login")
    posted = await console.client.post("/console/projects", data={"name": "x"})
    assert posted.status_code == 401

    await console.sign_in(console.user_key)
    page = await console.client.get("/console/")
    token = page.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    secret = console.client.cookies[COOKIE]
    assert (await console.client.post("/console/logout", data={"csrf": token})).status_code == 303
    console.client.cookies.set(COOKIE, secret)
    after = await console.client.get("/console/")
    assert after.status_code == 303


async def test_forms_need_their_csrf_token_and_valid_input(console: Console) -> None:
    await console.sign_in(console.user_key)
    page = await console.client.get("/console/")
    token = page.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    refused = await console.client.post("/console/projects", data={"name": "a"})
    assert refused.status_code == 403
    assert "CSRF" in refused.text
    blank = await console.client.post("/console/projects", data={"name": " ", "csrf": token})
    assert blank.status_code == 422
    made = await console.client.post("/console/projects", data={"name": "shop", "csrf": token})
    assert made.status_code == 303
    project_path = made.headers["location"]
    no_spec = await console.client.post(
        f"{project_path}/tasks",
        data={"spec": "", "csrf": token},
    )
    assert no_spec.status_code == 422
    bad_offset = await console.client.get("/console/?offset=abc")
    assert bad_offset.status_code == 422
    assert "offset must be a whole number" in bad_offset.text
    negative = await console.client.get("/console/?offset=-1")
    assert negative.status_code == 422
    bad_sha = await console.client.post(
        f"{project_path}/rollback", data={"sha": "zz", "csrf": token}
    )
    assert bad_sha.status_code == 422
    unknown = await console.client.get("/console/tasks/nope")
    assert unknown.status_code == 404


async def test_admin_pages(console: Console) -> None:
    await console.sign_in(console.user_key)
    assert (await console.client.get("/console/admin/users")).status_code == 403
    console.client.cookies.clear()
    await console.sign_in(console.admin_key)
    users = await console.client.get("/console/admin/users")
    assert users.status_code == 200
    token = users.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    created = await console.client.post(
        "/console/admin/keys", data={"name": "ci", "scope": "service", "csrf": token}
    )
    assert created.status_code == 200
    assert 'id="new-secret">orc_' in created.text
    bad_scope = await console.client.post(
        "/console/admin/keys", data={"name": "x", "scope": "root", "csrf": token}
    )
    assert bad_scope.status_code == 422
    no_redis = await console.client.get("/console/admin")
    assert no_redis.status_code == 503
    assert "without Redis" in no_redis.text
