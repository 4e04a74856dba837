"""The API tests' harness: the app on SQLite or a PostgreSQL database of its own."""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass

import asyncpg  # type: ignore[import-untyped]  # asyncpg ships no type information
import httpx
from sqlalchemy.engine import make_url

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


async def create_pg_database() -> str:
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


async def drop_pg_database(url: str) -> None:
    name = make_url(url).database
    connection = await asyncpg.connect(_plain_dsn(_pg_base_url()), timeout=3)
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()


async def _empty_tables(database: Database) -> None:
    async with database.engine.begin() as connection:
        for table in reversed(Base.metadata.sorted_tables):
            await connection.execute(table.delete())


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
