"""Storage: one set of migrations gives the models' schema on SQLite and PostgreSQL."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import Connection

from services.api.db import Database
from services.api.migrate import upgrade
from services.api.models import Base


async def test_migrations_match_models(database: Database) -> None:
    """After `upgrade head` the database has exactly the tables and columns of the models."""

    def diff(connection: Connection) -> list[object]:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))

    async with database.engine.connect() as connection:
        assert await connection.run_sync(diff) == []


async def test_upgrade_is_idempotent(database: Database) -> None:
    """Running the migrations again on a migrated database changes nothing and fails not."""
    await upgrade(database)
    async with database.engine.connect() as connection:
        names = await connection.run_sync(lambda sync: set(sync.dialect.get_table_names(sync)))
    assert {"users", "projects", "tasks", "servers", "port_allocations", "outbox"} <= names
