"""The LangGraph checkpointer: SQLite in the embedded mode, PostgreSQL in production.

`open_checkpointer(settings)` is an async context manager yielding a ready saver (tables
created). With `checkpoint_url` set to a `postgresql://` URL it is langgraph's
`AsyncPostgresSaver`; otherwise `AsyncSqliteSaver` on `<data_dir>/langgraph/checkpoints.sqlite`.

Replicas share the PostgreSQL checkpointer and start together: its setup (langgraph's
migrations, each recorded once in `checkpoint_migrations`) runs under a PostgreSQL advisory
lock, so a second replica waits for the first's tables instead of failing on a duplicate
migration row.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiosqlite
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

from services.langgraph.errors import CheckpointerConfigError
from services.langgraph.settings import LanggraphSettings

__all__ = ["SETUP_LOCK_KEY", "open_checkpointer", "postgres_conninfo"]

SETUP_LOCK_KEY = 0x6C616E6767726170
"""The advisory lock (`pg_advisory_lock`) held while the checkpointer's tables are set up."""
_SETUP_POLL_S = 0.2


def postgres_conninfo(url: str) -> str:
    """A libpq URL from an SQLAlchemy-style one (`postgresql+asyncpg://` → `postgresql://`)."""
    scheme, sep, rest = url.partition("://")
    if not sep or not scheme.startswith("postgres"):
        raise CheckpointerConfigError("the checkpoint URL must be a postgresql:// URL")
    return f"postgresql://{rest}"


@asynccontextmanager
async def open_checkpointer(settings: LanggraphSettings) -> AsyncIterator[BaseCheckpointSaver[str]]:
    """The configured checkpointer, set up, closed on exit."""
    if settings.checkpoint_url:
        from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

        conninfo = postgres_conninfo(settings.checkpoint_url)
        async with AsyncPostgresSaver.from_conn_string(conninfo) as postgres:
            await _setup_locked(conninfo, postgres)
            yield postgres
        return
    path = settings.checkpoint_path
    path.parent.mkdir(parents=True, exist_ok=True)
    connection = await aiosqlite.connect(str(path))
    try:
        # WAL with synchronous=NORMAL: a killed process loses nothing committed; only a
        # power loss may lose the last transactions. Far fewer fsyncs than the default.
        await connection.execute("PRAGMA journal_mode=WAL")
        await connection.execute("PRAGMA synchronous=NORMAL")
        sqlite = AsyncSqliteSaver(connection)
        await sqlite.setup()
        yield sqlite
    finally:
        await connection.close()


async def _setup_locked(conninfo: str, saver: BaseCheckpointSaver[str]) -> None:
    """`saver.setup()` under the setup advisory lock (one replica at a time); the lock is
    the session's, so it goes with the connection should this process die holding it.
    Waiters poll `pg_try_advisory_lock` from an idle session rather than block in
    `pg_advisory_lock`: a blocked statement holds a snapshot, and the migrations' `CREATE
    INDEX CONCURRENTLY` waits for every such snapshot, which would wait forever."""
    import psycopg

    async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as lock:
        while True:
            cursor = await lock.execute("SELECT pg_try_advisory_lock(%s)", (SETUP_LOCK_KEY,))
            row = await cursor.fetchone()
            if row is not None and row[0]:
                break
            await asyncio.sleep(_SETUP_POLL_S)
        try:
            await saver.setup()  # type: ignore[attr-defined]
        finally:
            await lock.execute("SELECT pg_advisory_unlock(%s)", (SETUP_LOCK_KEY,))
