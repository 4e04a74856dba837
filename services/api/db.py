"""Engine and sessions: PostgreSQL (asyncpg) in production, SQLite (aiosqlite) embedded."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

from sqlalchemy import DateTime, MetaData, event, exc
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase

from services.api.direct import DirectReads

__all__ = ["Base", "Database", "is_sqlite", "utc_now"]

SQLITE_BUSY_TIMEOUT_MS = 30_000
"""How long a SQLite writer waits for the write lock before giving up."""

_NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


POOL_SIZE = 32
"""Connections kept open per engine (and as many again in overflow). More than the requests a
process serves at once: a connection over the kept ones is opened for one request and closed
after it (on SQLite a new thread and connection, on PostgreSQL a login), which cost a loaded
API more than its queries."""


class Base(DeclarativeBase):
    """Declarative base of every ORM model; constraint names are deterministic."""

    metadata = MetaData(naming_convention=_NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: DateTime(timezone=True)}


def utc_now() -> datetime:
    """The current time, timezone-aware UTC (column defaults)."""
    return datetime.now(UTC)


def is_sqlite(url: str) -> bool:
    """True when a SQLAlchemy URL names a SQLite database."""
    return make_url(url).get_backend_name() == "sqlite"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """WAL for concurrent readers, foreign keys on, writers wait instead of failing."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


PING_AFTER_IDLE_S = 1.0
"""A pooled PostgreSQL connection idle for longer is pinged before a request gets it."""


def _note_checkin(_dbapi_connection: Any, record: Any) -> None:
    record.info["checked_in_at"] = time.monotonic()


def _ping_if_idle(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
    """Pessimistic disconnect handling, paid only by connections that sat idle: a connection
    the server closed (a restart, an operator, a network cut) while it waited in the pool
    is replaced before a request uses it. A connection back in the pool for less than
    PING_AFTER_IDLE_S is handed out as it is: pinging each checkout (`pool_pre_ping`) cost
    every transaction one more round trip. A connection lost within that second fails its
    one request, and the engine then replaces every connection of the pool."""
    idle_s = time.monotonic() - record.info.get("checked_in_at", 0.0)
    if idle_s < PING_AFTER_IDLE_S:
        return
    try:
        dbapi_connection.ping()
    except Exception as error:
        raise exc.DisconnectionError(f"idle connection lost: {type(error).__name__}") from error


class Database:
    """One engine and its session factory, built from a URL and disposed with `close()`."""

    def __init__(self, url: str, *, pool_size: int = POOL_SIZE) -> None:
        self.url = url
        if is_sqlite(url):
            database = make_url(url).database
            pool: dict[str, Any] = {}
            if database and database != ":memory:":
                Path(database).parent.mkdir(parents=True, exist_ok=True)
                pool = {"pool_size": pool_size, "max_overflow": pool_size}
            self.engine: AsyncEngine = create_async_engine(
                url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}, **pool
            )
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        else:
            self.engine = create_async_engine(url, pool_size=pool_size, max_overflow=pool_size)
            event.listen(self.engine.sync_engine.pool, "checkin", _note_checkin)
            event.listen(self.engine.sync_engine.pool, "checkout", _ping_if_idle)
        self.sessionmaker: async_sessionmaker[AsyncSession] = async_sessionmaker(
            self.engine, expire_on_commit=False
        )
        self.direct = DirectReads(url, self.engine.dialect, max_size=pool_size)
        """Single-row reads outside the session (`services/api/direct.py`)."""
        self.write_lock: asyncio.Lock | None = asyncio.Lock() if self.is_sqlite else None
        """SQLite has one writer at a time: writers of this process queue here, first come
        first served, instead of polling SQLite's lock (unfair and slow under load)."""

    @property
    def is_sqlite(self) -> bool:
        """True for the embedded SQLite backend."""
        return is_sqlite(self.url)

    async def close(self) -> None:
        """Close every pooled connection."""
        await self.direct.close()
        await self.engine.dispose()
