"""Storage: one set of migrations gives the models' schema on SQLite and PostgreSQL."""

from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.engine import Connection

from services.api.db import Database, is_sqlite
from services.api.migrate import alembic_config, upgrade
from services.api.models import Base
from shared.api_client.schemas import TaskCreated
from shared.contracts import TaskCreate, TaskType
from tests.api.test_direct_create import ADMIN, directly, new_project, new_user
from tests.support.api import create_pg_database, drop_pg_database


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


async def downgrade(database: Database, revision: str) -> None:
    """Take the database back to `revision`."""
    config = alembic_config()

    def _downgrade(connection: Connection) -> None:
        config.attributes["connection"] = connection
        command.downgrade(config, revision)

    async with database.engine.begin() as connection:
        await connection.run_sync(_downgrade)


async def create_function(database: Database) -> bool:
    """Whether the database has the function of migration 0015 (PostgreSQL only)."""
    if database.is_sqlite:
        return False
    async with database.engine.connect() as connection:
        found = await connection.scalar(
            text("SELECT count(*) FROM pg_proc WHERE proname = 'create_engineering_task'")
        )
    return bool(found)


async def test_the_create_function_comes_and_goes_with_its_migration(database_url: str) -> None:
    """Migration 0015 adds `create_engineering_task` on PostgreSQL (nothing on SQLite), its
    downgrade drops it, the upgrade after adds it again. Without it an engineering create
    of the direct path is refused by the server and left to the session path (`UNAVAILABLE`),
    with it the create is direct again. PostgreSQL: on a database of its own."""
    sqlite = is_sqlite(database_url)
    url = database_url if sqlite else await create_pg_database()
    database = Database(url)
    try:
        await upgrade(database)
        assert await create_function(database) is not sqlite
        project = await new_project(database, await new_user(database), parallel_tasks=9)
        body = TaskCreate(project_id=project, type=TaskType.ENGINEERING)
        await downgrade(database, "0014")
        assert not await create_function(database)
        created = await directly(database, ADMIN, body)
        assert isinstance(created, TaskCreated) is sqlite
        await upgrade(database)
        assert await create_function(database) is not sqlite
        assert isinstance(await directly(database, ADMIN, body), TaskCreated)
    finally:
        await database.close()
        if not sqlite:
            await drop_pg_database(url)
