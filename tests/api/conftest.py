"""Fixtures of the API tests: a migrated database on SQLite and on PostgreSQL, an app, keys.

PostgreSQL: `TEST_DATABASE_URL` (default the local server's `test` database) names a server;
each session creates a database of its own there and drops it at the end, so reruns start
clean. When no server answers, the PostgreSQL half is skipped, unless `REQUIRE_POSTGRES=1`
(CI), where that is a failure.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]  # asyncpg ships no type information
import httpx
import pytest
from sqlalchemy.engine import make_url

from services.api.app import create_app
from services.api.auth.service import AuthService
from services.api.db import Database
from services.api.migrate import upgrade
from services.api.models import Base
from shared.api_client import ApiClient
from shared.api_client.schemas import UserCreate

DEFAULT_PG_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"


def _pg_base_url() -> str:
    return os.environ.get("TEST_DATABASE_URL", DEFAULT_PG_URL)


def _plain_dsn(url: str) -> str:
    """The asyncpg DSN of a SQLAlchemy URL."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def _create_pg_database() -> str:
    base = make_url(_pg_base_url())
    name = f"api_test_{uuid.uuid4().hex[:12]}"
    connection = await asyncpg.connect(_plain_dsn(str(base)), timeout=3)
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
    url = base.set(database=name).render_as_string(hide_password=False)
    database = Database(url)
    try:
        await upgrade(database)
    finally:
        await database.close()
    return url


async def _drop_pg_database(url: str) -> None:
    name = make_url(url).database
    connection = await asyncpg.connect(_plain_dsn(_pg_base_url()), timeout=3)
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A migrated PostgreSQL database private to this session (dropped at its end)."""
    try:
        url = asyncio.run(_create_pg_database())
    except (OSError, asyncpg.PostgresError, TimeoutError) as error:
        message = f"PostgreSQL at {_pg_base_url()} unreachable: {error!r}"
        if os.environ.get("REQUIRE_POSTGRES") == "1":
            pytest.fail(f"{message} (REQUIRE_POSTGRES=1)")
        pytest.skip(message)
    try:
        yield url
    finally:
        asyncio.run(_drop_pg_database(url))


async def _empty_tables(database: Database) -> None:
    async with database.engine.begin() as connection:
        for table in reversed(Base.metadata.sorted_tables):
            await connection.execute(table.delete())


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of a migrated database: a fresh SQLite file, or the session's PostgreSQL."""
    if request.param == "postgres":
        url: str = request.getfixturevalue("postgres_url")
        return url
    return f"sqlite+aiosqlite:///{tmp_path / 'api.db'}"


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    """The database, migrated and empty."""
    db = Database(database_url)
    await upgrade(db)
    if not db.is_sqlite:
        await _empty_tables(db)
    try:
        yield db
    finally:
        await db.close()


@dataclass
class ApiHarness:
    """An app on the test database, with keys and clients for its callers."""

    database: Database
    app: object
    admin_key: str
    service_key: str

    def client(self, key: str | None) -> ApiClient:
        """A typed client in process (ASGI) with this credential."""
        transport = httpx.ASGITransport(app=self.app)  # type: ignore[arg-type]
        return ApiClient("http://api.test", key=key, transport=transport)

    def http(self, key: str | None = None) -> httpx.AsyncClient:
        """A raw httpx client in process (ASGI) with this credential."""
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        transport = httpx.ASGITransport(app=self.app)  # type: ignore[arg-type]
        return httpx.AsyncClient(transport=transport, base_url="http://api.test", headers=headers)

    async def user(self, telegram_id: int, *, is_admin: bool = False) -> tuple[int, str]:
        """A new user and a user token for it: (user id, token)."""
        async with self.client(self.admin_key) as api:
            user = await api.create_user(UserCreate(telegram_id=telegram_id, is_admin=is_admin))
        async with self.database.sessionmaker() as session:
            _, token = await AuthService(session).create_key("token", "user", user.id)
            await session.commit()
        return user.id, token


@pytest.fixture
async def api(database: Database) -> ApiHarness:
    """The app over the test database, with an admin key and a service key."""
    async with database.sessionmaker() as session:
        auth = AuthService(session)
        _, admin_key = await auth.create_key("admin", "admin", None)
        _, service_key = await auth.create_key("langgraph", "service", None)
        await session.commit()
    return ApiHarness(database, create_app(database), admin_key, service_key)
