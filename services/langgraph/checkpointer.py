"""The LangGraph checkpointer: SQLite in the embedded mode, PostgreSQL in production.

`open_checkpointer(settings)` is an async context manager yielding a ready saver (tables
created). With `checkpoint_url` set to a `postgresql://` URL it is langgraph's
`AsyncPostgresSaver`; otherwise `AsyncSqliteSaver` on `<data_dir>/langgraph/checkpoints.sqlite`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiosqlite
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

from services.langgraph.errors import CheckpointerConfigError
from services.langgraph.settings import LanggraphSettings

__all__ = ["open_checkpointer", "postgres_conninfo"]


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
            await postgres.setup()
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
