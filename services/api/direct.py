"""Direct reads: one statement on a connection of the driver, outside SQLAlchemy's session.

The hottest reads (a task by id, a credential by hash) are one indexed row each. Through a
session they also paid for the session, the pool's checkout (with its ping on PostgreSQL),
the transaction around the statement and its rollback, and on SQLite a hop to aiosqlite's
thread for each cursor call: several times the statement itself. Here:

- PostgreSQL: an asyncpg pool of its own (at most `max_size` connections beside the
  engine's), statements prepared once per connection, no transaction (one statement is
  atomic), no reset query on release (nothing but a single SELECT ever runs on it);
- SQLite: one connection of the standard `sqlite3` module used in the event loop's thread,
  `query_only`, without waiting for locks (`busy_timeout` 0). A primary-key read takes tens of
  microseconds, less than the hop to a thread; in WAL mode a reader is not blocked by writers.
  An in-memory database is private to its connection: there is no direct path for it.

The statements are SQLAlchemy Core `SELECT`s compiled once for the engine's dialect, and
their values go through the same result processors as the engine's (SQLite's datetimes and
JSON), so a row reads the same either way. Whenever the direct path cannot answer (no direct
path, a busy SQLite, a connection lost), `fetch_one` returns `UNAVAILABLE` and the caller
reads through its session instead: the direct path is only ever a shortcut.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import Select
from sqlalchemy.engine import Dialect, make_url

__all__ = ["UNAVAILABLE", "DirectReads", "Unavailable"]

log = logging.getLogger(__name__)


class Unavailable:
    """The direct path could not answer; read through a session."""

    def __repr__(self) -> str:
        return "UNAVAILABLE"


UNAVAILABLE: Final = Unavailable()


@dataclass(frozen=True)
class _Compiled:
    sql: str
    params: tuple[str, ...]
    names: tuple[str, ...]
    processors: tuple[Callable[[Any], Any] | None, ...]


async def _no_reset(_connection: object) -> None:
    """Nothing to reset: a direct connection runs single SELECTs only."""


async def _json_codecs(connection: Any) -> None:
    """JSON values decoded as the engine's connections decode them."""
    for name in ("json", "jsonb"):
        await connection.set_type_codec(
            name, encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
        )


class DirectReads:
    """Single-row reads of one database on the driver's own connections."""

    def __init__(self, url: str, dialect: Dialect, *, max_size: int) -> None:
        parsed = make_url(url)
        self.dialect = dialect
        self.max_size = max_size
        self.backend = parsed.get_backend_name()
        self._compiled: dict[Select[Any], _Compiled] = {}
        self._sqlite_path: str | None = None
        self._sqlite: sqlite3.Connection | None = None
        self._pg_dsn: str | None = None
        self._pg_pool: Any = None
        self._pg_lock = asyncio.Lock()
        self.listeners: list[Callable[[str], None]] = []
        """Called with each statement's SQL before it runs (tests count statements)."""
        self.fallbacks = 0
        """How often the direct path could not answer and the caller used its session."""
        if self.backend == "sqlite":
            database = parsed.database
            if database and database != ":memory:" and not database.startswith("file:"):
                self._sqlite_path = database
        elif self.backend == "postgresql":
            self._pg_dsn = parsed.set(drivername="postgresql").render_as_string(hide_password=False)

    @property
    def enabled(self) -> bool:
        """False when this database has no direct path (in-memory SQLite, other backends)."""
        return self._sqlite_path is not None or self._pg_dsn is not None

    def _compile(self, statement: Select[Any]) -> _Compiled:
        found = self._compiled.get(statement)
        if found is None:
            compiled = statement.compile(dialect=self.dialect)
            columns = list(statement.selected_columns)
            found = _Compiled(
                sql=str(compiled),
                params=tuple(compiled.positiontup or ()),
                names=tuple(str(column.key) for column in columns),
                processors=tuple(
                    column.type.dialect_impl(self.dialect).result_processor(self.dialect, None)
                    for column in columns
                ),
            )
            self._compiled[statement] = found
        return found

    async def fetch_one(
        self, statement: Select[Any], params: Mapping[str, Any]
    ) -> dict[str, Any] | Unavailable | None:
        """The first row of `statement` as a dict by column key, None when there is none,
        `UNAVAILABLE` when the direct path cannot answer (read through a session then)."""
        if not self.enabled:
            return UNAVAILABLE
        compiled = self._compile(statement)
        values = tuple(params[name] for name in compiled.params)
        for listener in self.listeners:
            listener(compiled.sql)
        try:
            if self._sqlite_path is not None:
                row = self._sqlite_row(compiled.sql, values)
            else:
                row = await self._pg_row(compiled.sql, values)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # noqa: BLE001 - any failure: the session path answers
            self.fallbacks += 1
            log.warning("direct read unavailable (%s); reading through a session", error)
            self._discard_sqlite()
            return UNAVAILABLE
        if row is None:
            return None
        return {
            name: value if process is None or value is None else process(value)
            for name, value, process in zip(compiled.names, row, compiled.processors, strict=True)
        }

    def _sqlite_row(self, sql: str, values: tuple[Any, ...]) -> tuple[Any, ...] | None:
        if self._sqlite is None:
            assert self._sqlite_path is not None
            connection = sqlite3.connect(
                self._sqlite_path, isolation_level=None, check_same_thread=False, timeout=0
            )
            connection.execute("PRAGMA query_only=ON")
            self._sqlite = connection
        found: tuple[Any, ...] | None = self._sqlite.execute(sql, values).fetchone()
        return found

    def _discard_sqlite(self) -> None:
        if self._sqlite is not None:
            self._sqlite.close()
            self._sqlite = None

    async def _pg_row(self, sql: str, values: tuple[Any, ...]) -> tuple[Any, ...] | None:
        pool = self._pg_pool or await self._open_pool()
        async with pool.acquire() as connection:
            record = await connection.fetchrow(sql, *values)
        return None if record is None else tuple(record.values())

    async def _open_pool(self) -> Any:
        import asyncpg  # type: ignore[import-untyped]  # asyncpg ships no type information

        async with self._pg_lock:
            if self._pg_pool is None:
                self._pg_pool = await asyncpg.create_pool(
                    self._pg_dsn,
                    min_size=1,
                    max_size=self.max_size,
                    reset=_no_reset,
                    init=_json_codecs,
                )
        return self._pg_pool

    async def close(self) -> None:
        """Close the direct connections (opened again if used after)."""
        self._discard_sqlite()
        pool, self._pg_pool = self._pg_pool, None
        if pool is not None:
            await pool.close()
