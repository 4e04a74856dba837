"""Direct reads: one statement on a connection of the driver, outside SQLAlchemy's session.

The hottest reads (a task by id, a credential by hash) are one indexed row each. Through a
session they also paid for the session, the pool's checkout (with its ping on PostgreSQL),
the transaction around the statement and its rollback, and on SQLite a hop to aiosqlite's
thread for each cursor call: several times the statement itself. Here:

- PostgreSQL: an asyncpg pool of its own (at most `max_size` connections beside the
  engine's), statements prepared once per connection, no transaction (one statement is
  atomic), no reset query on release (a single SELECT, or a write's transaction ended
  before the release);
- SQLite: one connection of the standard `sqlite3` module used in the event loop's thread,
  `query_only`, without waiting for locks (`busy_timeout` 0). A primary-key read takes tens of
  microseconds, less than the hop to a thread; in WAL mode a reader is not blocked by writers.
  An in-memory database is private to its connection: there is no direct path for it.

The statements are SQLAlchemy Core `SELECT`s compiled once for the engine's dialect, and
their values go through the same result processors as the engine's (SQLite's datetimes and
JSON), so a row reads the same either way. Whenever the direct path cannot answer (no direct
path, a busy SQLite, a connection lost), `fetch_one` returns `UNAVAILABLE` and the caller
reads through its session instead: the direct path is only ever a shortcut.

Direct writes (`write`): one short transaction of a few statements (the task create), on
SQLite a second connection of the event loop's thread (`BEGIN IMMEDIATE`, without waiting
for another process's lock, under the application's write lock), on PostgreSQL a connection
of the same asyncpg pool. `write` returns `UNAVAILABLE` when the direct path could not
answer before the commit (a busy SQLite, a driver error, a connection lost) or when the work
itself asked for the session path (a rare case it does not handle): the transaction is
rolled back and the caller does the whole work again through its session. Any other error
of the work (a refusal of the request) rolls back and propagates; a failed COMMIT
propagates too (its outcome may be unknown: never done twice).

A write in one statement (`write_one`, PostgreSQL: a call of a function that writes, the
engineering task create): no BEGIN and no COMMIT, the statement is its own transaction, one
round trip. `UNAVAILABLE` when no connection could be had (nothing was sent) or the server
refused the statement (an error it raised: its transaction was rolled back), so the caller
does the work through its session and answers with its errors. A lost connection or a
cancellation while the statement runs propagates, the connection closed: the statement may
have committed all the same, so it is never done again (the request fails; a client that
retries a cancelled create may create a second task, as with any write whose answer it
lost).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from sqlalchemy import Select
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.sql.dml import UpdateBase

__all__ = ["UNAVAILABLE", "DirectReads", "DirectTransaction", "Unavailable"]

log = logging.getLogger(__name__)
T = TypeVar("T")


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
    binds: tuple[Callable[[Any], Any] | None, ...] = ()
    """The dialect's bind processors of `params` (a write's values: SQLite's datetimes)."""
    fixed: Mapping[str, Any] | None = None
    """The values the statement holds itself (its constants), by name (no `IN` of a list:
    its parameters would be expanded at execution)."""

    def values(self, params: Mapping[str, Any]) -> tuple[Any, ...]:
        """The statement's positional values from `params`, processed as the engine would."""
        if self.fixed:
            params = {**self.fixed, **params}
        if not self.binds:
            return tuple(params[name] for name in self.params)
        return tuple(
            params[name] if process is None or params[name] is None else process(params[name])
            for name, process in zip(self.params, self.binds, strict=True)
        )

    def row(self, row: tuple[Any, ...]) -> dict[str, Any]:
        """A fetched row as a dict by column key, its values processed as the engine's."""
        return {
            name: value if process is None or value is None else process(value)
            for name, value, process in zip(self.names, row, self.processors, strict=True)
        }


class _DriverError(Exception):
    """A statement of a direct write failed in the driver (the session path answers)."""


class DirectTransaction:
    """The statements of one direct write (`DirectReads.write`), on its connection."""

    def __init__(self, reads: DirectReads, connection: Any) -> None:
        self._reads = reads
        self._connection = connection

    async def fetch_one(
        self, statement: Select[Any], params: Mapping[str, Any]
    ) -> dict[str, Any] | None:
        """The first row of `statement` as a dict by column key, None when there is none."""
        compiled = self._reads._compile(statement)
        rows = await self._run(compiled, [params], "one")
        return compiled.row(rows[0]) if rows else None

    async def fetch_all(
        self, statement: Select[Any], params: Mapping[str, Any]
    ) -> list[dict[str, Any]]:
        """Every row of `statement`, as dicts by column key."""
        compiled = self._reads._compile(statement)
        return [compiled.row(row) for row in await self._run(compiled, [params], "all")]

    async def execute(self, statement: UpdateBase, params: Mapping[str, Any]) -> None:
        """Run a write statement (its values bound as the engine binds them)."""
        await self._run(self._reads._compile_write(statement), [params], "none")

    async def execute_many(
        self, statement: UpdateBase, params: Sequence[Mapping[str, Any]]
    ) -> None:
        """Run a write statement once per set of values, in one round trip."""
        if params:
            await self._run(self._reads._compile_write(statement), params, "many")

    async def _run(
        self, compiled: _Compiled, params: Sequence[Mapping[str, Any]], mode: str
    ) -> list[tuple[Any, ...]]:
        values = [compiled.values(one) for one in params]
        for listener in self._reads.listeners:
            listener(compiled.sql)
        connection = self._connection
        try:
            if isinstance(connection, sqlite3.Connection):
                if mode == "many":
                    connection.executemany(compiled.sql, values)
                    return []
                cursor = connection.execute(compiled.sql, values[0])
                if mode == "one":
                    found = cursor.fetchone()
                    return [] if found is None else [found]
                return list(cursor.fetchall()) if mode == "all" else []
            if mode == "many":
                await connection.executemany(compiled.sql, values)
                return []
            if mode == "none":
                await connection.execute(compiled.sql, *values[0])
                return []
            if mode == "one":
                record = await connection.fetchrow(compiled.sql, *values[0])
                return [] if record is None else [tuple(record.values())]
            return [
                tuple(record.values())
                for record in await connection.fetch(compiled.sql, *values[0])
            ]
        except asyncio.CancelledError:
            raise
        except Exception as error:
            raise _DriverError(f"{type(error).__name__}: {error}") from error


async def _no_reset(_connection: object) -> None:
    """Nothing to reset: a direct connection runs single SELECTs, or a write's transaction
    that ended (committed or rolled back) before its release, or was terminated."""


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
        self._compiled_writes: dict[UpdateBase, _Compiled] = {}
        self._sqlite_path: str | None = None
        self._sqlite: sqlite3.Connection | None = None
        self._sqlite_writer: sqlite3.Connection | None = None
        self._pg_dsn: str | None = None
        self._pg_pool: Any = None
        self._pg_lock = asyncio.Lock()
        self.listeners: list[Callable[[str], None]] = []
        """Called with each statement's SQL before it runs (tests count statements)."""
        self.commits = 0
        """Direct writes committed so far."""
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
            params = tuple(compiled.positiontup or ())
            found = _Compiled(
                sql=str(compiled),
                params=params,
                fixed={name: value for name, value in compiled.params.items() if value is not None},
                names=tuple(str(column.key) for column in columns),
                processors=tuple(
                    column.type.dialect_impl(self.dialect).result_processor(self.dialect, None)
                    for column in columns
                ),
                binds=self._binds(compiled, params),
            )
            self._compiled[statement] = found
        return found

    def _compile_write(self, statement: UpdateBase) -> _Compiled:
        found = self._compiled_writes.get(statement)
        if found is None:
            compiled = statement.compile(dialect=self.dialect)
            params = tuple(compiled.positiontup or ())
            found = _Compiled(
                sql=str(compiled),
                params=params,
                fixed={name: value for name, value in compiled.params.items() if value is not None},
                names=(),
                processors=(),
                binds=self._binds(compiled, params),
            )
            self._compiled_writes[statement] = found
        return found

    def _binds(
        self, compiled: Any, params: tuple[str, ...]
    ) -> tuple[Callable[[Any], Any] | None, ...]:
        """The dialect's bind processors of a statement's `params` (a SELECT's too: one
        that writes in a `WITH` binds a write's values; `()` when none has one)."""
        binds = tuple(
            compiled.binds[name].type.dialect_impl(self.dialect).bind_processor(self.dialect)
            for name in params
        )
        return binds if any(bind is not None for bind in binds) else ()

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
        return compiled.row(row)

    async def fetch_all(
        self, statement: Select[Any], params: Mapping[str, Any]
    ) -> list[dict[str, Any]] | Unavailable:
        """Every row of `statement` as dicts by column key, `UNAVAILABLE` when the direct
        path cannot answer (read through a session then)."""
        if not self.enabled:
            return UNAVAILABLE
        compiled = self._compile(statement)
        values = compiled.values(params)
        for listener in self.listeners:
            listener(compiled.sql)
        try:
            if self._sqlite_path is not None:
                rows = self._sqlite_rows(compiled.sql, values)
            else:
                pool = self._pg_pool or await self._open_pool()
                async with pool.acquire() as connection:
                    records = await connection.fetch(compiled.sql, *values)
                rows = [tuple(record.values()) for record in records]
        except asyncio.CancelledError:
            raise
        except Exception as error:  # noqa: BLE001 - any failure: the session path answers
            self.fallbacks += 1
            log.warning("direct read unavailable (%s); reading through a session", error)
            self._discard_sqlite()
            return UNAVAILABLE
        return [compiled.row(row) for row in rows]

    async def write(
        self,
        work: Callable[[DirectTransaction], Awaitable[T | Unavailable]],
        *,
        lock: asyncio.Lock | None = None,
    ) -> T | Unavailable:
        """`work` in one transaction on a direct connection, committed when it returned;
        `UNAVAILABLE` (rolled back) when the direct path could not answer before the commit
        or `work` returned `UNAVAILABLE`: the caller does the work through its session then.
        `lock`: held for the whole transaction (SQLite's writers of this process)."""
        if not self.enabled:
            return UNAVAILABLE
        if self._sqlite_path is not None:
            async with lock or contextlib.nullcontext():
                return await self._sqlite_write(work)
        return await self._pg_write(work)

    async def write_one(
        self, statement: Select[Any], params: Mapping[str, Any], *, wrote: str
    ) -> dict[str, Any] | Unavailable:
        """PostgreSQL: run `statement`, which writes, in a transaction of its own (one round
        trip); its (one) row as a dict by column key, whose column `wrote` tells whether it
        wrote anything (counted in `commits`). `UNAVAILABLE` (nothing committed) on SQLite,
        without a connection, or when the server refused the statement; a lost connection
        or a cancellation propagates (the outcome is unknown: it may have committed)."""
        import asyncpg  # type: ignore[import-untyped]  # asyncpg ships no type information

        if self._pg_dsn is None:
            return UNAVAILABLE
        compiled = self._compile(statement)
        values = compiled.values(params)
        try:
            pool = self._pg_pool or await self._open_pool()
            connection = await pool.acquire()
        except asyncio.CancelledError:
            raise
        except Exception as error:  # noqa: BLE001 - no connection: the session path answers
            return self._unavailable(error)
        for listener in self.listeners:
            listener(compiled.sql)
        idle = False
        """Set once the statement ended on a connection still usable, outside a
        transaction: otherwise it is closed, never handed back to the pool."""
        try:
            record = await connection.fetchrow(compiled.sql, *values)
            idle = True
        except asyncpg.PostgresError as error:
            if isinstance(error, asyncpg.PostgresConnectionError):
                raise  # lost on the way: the outcome is unknown
            idle = True
            return self._unavailable(error)  # refused: rolled back with its statement
        finally:
            with contextlib.suppress(asyncpg.InterfaceError):  # lost: the pool took it back
                if not idle or connection.is_in_transaction():
                    connection.terminate()
            await pool.release(connection)
        row = compiled.row(tuple(record.values()))
        if row[wrote]:
            self.commits += 1
        return row

    def _unavailable(self, error: BaseException) -> Unavailable:
        self.fallbacks += 1
        log.warning("direct write unavailable (%s); writing through a session", error)
        return UNAVAILABLE

    async def _sqlite_write(
        self, work: Callable[[DirectTransaction], Awaitable[T | Unavailable]]
    ) -> T | Unavailable:
        try:
            connection = self._sqlite_writer or self._open_sqlite_writer()
            connection.execute("BEGIN IMMEDIATE")  # fails at once while another process writes
        except sqlite3.Error as error:
            self._discard_sqlite_writer()
            return self._unavailable(error)
        try:
            result = await work(DirectTransaction(self, connection))
        except BaseException as error:
            self._rollback_sqlite(connection)
            if isinstance(error, _DriverError):
                return self._unavailable(error)
            raise
        if isinstance(result, Unavailable):
            self._rollback_sqlite(connection)
            return result
        try:
            connection.execute("COMMIT")
        except BaseException:
            self._rollback_sqlite(connection)
            raise
        self.commits += 1
        return result

    def _open_sqlite_writer(self) -> sqlite3.Connection:
        assert self._sqlite_path is not None
        connection = sqlite3.connect(
            self._sqlite_path, isolation_level=None, check_same_thread=False, timeout=0
        )
        connection.execute("PRAGMA foreign_keys=ON")
        connection.execute("PRAGMA synchronous=NORMAL")
        self._sqlite_writer = connection
        return connection

    def _rollback_sqlite(self, connection: sqlite3.Connection) -> None:
        if connection.in_transaction:
            try:
                connection.execute("ROLLBACK")
            except sqlite3.Error:
                self._discard_sqlite_writer()

    def _discard_sqlite_writer(self) -> None:
        if self._sqlite_writer is not None:
            self._sqlite_writer.close()
            self._sqlite_writer = None

    async def _pg_write(
        self, work: Callable[[DirectTransaction], Awaitable[T | Unavailable]]
    ) -> T | Unavailable:
        try:
            pool = self._pg_pool or await self._open_pool()
            connection = await pool.acquire()
        except asyncio.CancelledError:
            raise
        except Exception as error:  # noqa: BLE001 - no connection: the session path answers
            return self._unavailable(error)
        idle = [False]
        """Set once the connection is known to be out of the transaction (committed or
        rolled back): otherwise (cancelled mid-statement, a failed rollback) it is closed,
        never handed back to the pool inside a transaction or a cancelled query."""
        try:
            return await self._pg_transaction(connection, work, idle)
        finally:
            if not idle[0] or connection.is_in_transaction():
                connection.terminate()
            await pool.release(connection)

    async def _pg_transaction(
        self,
        connection: Any,
        work: Callable[[DirectTransaction], Awaitable[T | Unavailable]],
        idle: list[bool],
    ) -> T | Unavailable:
        try:
            await connection.execute("BEGIN")
        except asyncio.CancelledError:
            raise
        except Exception as error:  # noqa: BLE001 - a lost connection: the session path answers
            return self._unavailable(error)
        try:
            result = await work(DirectTransaction(self, connection))
        except _DriverError as error:
            idle[0] = await self._rollback_pg(connection)
            return self._unavailable(error)
        except BaseException:
            idle[0] = await self._rollback_pg(connection)
            raise
        if isinstance(result, Unavailable):
            idle[0] = await self._rollback_pg(connection)
            return result
        await connection.execute("COMMIT")
        idle[0] = True
        self.commits += 1
        return result

    async def _rollback_pg(self, connection: Any) -> bool:
        """Roll back; False when that failed (the connection is then not reused)."""
        if connection.is_closed():
            return False
        try:
            await connection.execute("ROLLBACK")
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - the connection is unusable: not back in the pool
            return False
        return True

    def _sqlite_reader(self) -> sqlite3.Connection:
        if self._sqlite is None:
            assert self._sqlite_path is not None
            connection = sqlite3.connect(
                self._sqlite_path, isolation_level=None, check_same_thread=False, timeout=0
            )
            connection.execute("PRAGMA query_only=ON")
            self._sqlite = connection
        return self._sqlite

    def _sqlite_row(self, sql: str, values: tuple[Any, ...]) -> tuple[Any, ...] | None:
        found: tuple[Any, ...] | None = self._sqlite_reader().execute(sql, values).fetchone()
        return found

    def _sqlite_rows(self, sql: str, values: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        return list(self._sqlite_reader().execute(sql, values).fetchall())

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
        import asyncpg

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
        self._discard_sqlite_writer()
        pool, self._pg_pool = self._pg_pool, None
        if pool is not None:
            await pool.close()
