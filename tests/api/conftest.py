"""Fixtures of the API tests: a migrated database on SQLite and on PostgreSQL, an app, keys.

PostgreSQL: `TEST_DATABASE_URL` (default the local server's `test` database) names a server;
each session creates a database of its own there and drops it at the end, so reruns start
clean. When no server answers, the PostgreSQL half is skipped, unless `REQUIRE_POSTGRES=1`
(CI), where that is a failure.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]  # asyncpg ships no type information
import pytest

from services.api.app import create_app
from services.api.auth.service import AuthService
from services.api.db import Database
from services.api.migrate import upgrade
from tests.support.api import (
    ApiHarness,
    _empty_tables,
    _pg_base_url,
    create_pg_database,
    drop_pg_database,
)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A migrated PostgreSQL database private to this session (dropped at its end)."""
    try:
        url = asyncio.run(create_pg_database())
    except (OSError, asyncpg.PostgresError, TimeoutError) as error:
        message = f"PostgreSQL at {_pg_base_url()} unreachable: {error!r}"
        if os.environ.get("REQUIRE_POSTGRES") == "1":
            pytest.fail(f"{message} (REQUIRE_POSTGRES=1)")
        pytest.skip(message)
    try:
        yield url
    finally:
        asyncio.run(drop_pg_database(url))


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


@pytest.fixture
async def api(database: Database) -> ApiHarness:
    """The app over the test database, with an admin key and a service key."""
    async with database.sessionmaker() as session:
        auth = AuthService(session)
        _, admin_key = await auth.create_key("admin", "admin", None)
        _, service_key = await auth.create_key("langgraph", "service", None)
        await session.commit()
    return ApiHarness(database, create_app(database), admin_key, service_key)
