"""The metadata database: read and write transactions, and migrations.

SQLite (the default) runs in WAL mode, and its statements run in the event loop's own
thread. In WAL mode a reader never waits for a writer, and a write transaction holds the
lock only while its statements run, microseconds, since nothing in it yields to the loop.
Handing each statement to a driver thread and back instead cost about a millisecond of
CPU, and held the write lock across those hand-offs, so that concurrent writers queued on
SQLite's coarse busy sleeps. A write starts with BEGIN IMMEDIATE without waiting: when
another process holds the lock it tries again after a short asynchronous sleep, so the
loop never blocks on it. Other databases (PostgreSQL) use their asyncio driver (asyncpg
for a plain `postgresql://` URL), migrations included.
"""

from __future__ import annotations

import abc
import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Protocol, TypeVar, TypeVarTuple, overload

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import CursorResult, Dialect, Engine, Executable, create_engine, event, func, select
from sqlalchemy.engine import URL, Connection, RootTransaction, make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.sql.selectable import TypedReturnsRows

MIGRATIONS = Path(__file__).parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 30_000
# How long a read in the loop's thread may wait on a lock: in WAL mode only while another
# connection recovers the log after a crash.
SQLITE_READ_BUSY_TIMEOUT_MS = 1_000
WRITE = "cargohold_write"
# URLs naming no driver get the asyncio driver Cargohold installs.
ASYNC_DRIVERS = {"postgresql": "postgresql+asyncpg", "postgres": "postgresql+asyncpg"}
# The PostgreSQL advisory lock held while migrating, so that nodes starting together
# upgrade the schema once: the others wait, then find it at head. Any fixed 64-bit number.
MIGRATION_LOCK_KEY = 0x6361_7267_6F68_6F6C  # "cargohol"


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def async_url(url: str) -> URL:
    """The URL of a non-SQLite database for SQLAlchemy's asyncio engine."""
    parsed = make_url(url)
    return parsed.set(drivername=ASYNC_DRIVERS.get(parsed.drivername, parsed.drivername))


# A node cut off from the database (its connections neither closed nor answering) would
# keep its advisory locks, and its transaction's row locks, until the server noticed: by
# the system's TCP keepalive, after two hours. The server probes an idle connection after
# 30 s instead, and drops it when 3 probes 10 s apart go unanswered.
SERVER_KEEPALIVES = {
    "tcp_keepalives_idle": "30",
    "tcp_keepalives_interval": "10",
    "tcp_keepalives_count": "3",
}


def server_engine(url: str, **options: Any) -> AsyncEngine:
    """An asyncio engine for a database server, whose connections the server drops when
    their node is gone."""
    address = async_url(url)
    if address.get_driver_name() == "asyncpg":
        options["connect_args"] = {"server_settings": SERVER_KEEPALIVES}
    return create_async_engine(address, **options)


def _sqlite_connect(dbapi_connection: Any, _record: Any, *, busy_timeout_ms: int) -> None:
    # Let us issue BEGIN ourselves (pysqlite's own transaction handling is off).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout = {busy_timeout_ms}")
    cursor.execute("PRAGMA journal_mode = WAL")
    cursor.execute("PRAGMA synchronous = NORMAL")
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.close()


def _sqlite_begin(connection: Connection) -> None:
    immediate = connection.get_execution_options().get(WRITE, False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def _sync_engine(url: str, busy_timeout_ms: int = SQLITE_BUSY_TIMEOUT_MS, **options: Any) -> Engine:
    engine = create_engine(
        make_url(url).set(drivername=make_url(url).get_backend_name()), **options
    )
    if is_sqlite(url):
        event.listen(engine, "connect", partial(_sqlite_connect, busy_timeout_ms=busy_timeout_ms))
        event.listen(engine, "begin", _sqlite_begin)
    return engine


def _is_busy(error: OperationalError) -> bool:
    return getattr(error.orig, "sqlite_errorcode", None) == sqlite3.SQLITE_BUSY


class DatabaseUnavailable(Exception):
    """The metadata database could not be reached."""


def is_unavailable(error: BaseException) -> bool:
    """Whether the error says the database is out of reach (down, restarting, the connection
    broken, no connection free in time) rather than that a query is wrong: a request that
    failed so may succeed when tried again shortly."""
    return isinstance(error, DatabaseUnavailable | PoolTimeout) or (
        isinstance(error, DBAPIError) and error.connection_invalidated
    )


_Row = TypeVarTuple("_Row")
_T = TypeVar("_T")
# One row's values by name, or several rows' (an executemany).
Parameters = Mapping[str, Any] | Sequence[Mapping[str, Any]] | None


class Reader(Protocol):
    """What a read transaction offers its queries: statements in, buffered results out."""

    @overload
    async def execute(
        self, statement: TypedReturnsRows[*_Row], parameters: Parameters = None
    ) -> CursorResult[*_Row]: ...
    @overload
    async def execute(
        self, statement: Executable, parameters: Parameters = None
    ) -> CursorResult[*tuple[Any, ...]]: ...


class Writer(Reader, Protocol):
    """A write transaction: a reader that also tells which SQL dialect it speaks."""

    @property
    def dialect(self) -> Dialect: ...


class _InlineConnection:
    """A transaction on a synchronous connection, run in the caller's thread."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    @property
    def dialect(self) -> Dialect:
        return self._connection.dialect

    async def execute(
        self, statement: Executable, parameters: Parameters = None
    ) -> CursorResult[*tuple[Any, ...]]:
        return self._connection.execute(statement, parameters)


class Database(abc.ABC):
    """One metadata database; every store of queries shares it. `open_database` gives the
    implementation its URL names."""

    @abc.abstractmethod
    def read(self) -> AbstractAsyncContextManager[Reader]: ...

    @abc.abstractmethod
    def snapshot(self) -> AbstractAsyncContextManager[Reader]:
        """A read whose statements all see the database as it was at the first one (a
        plain read's statements each see what was committed when they began)."""

    @abc.abstractmethod
    def write(self) -> AbstractAsyncContextManager[Writer]: ...

    @abc.abstractmethod
    async def dispose(self) -> None: ...


@dataclass(frozen=True, slots=True)
class PoolLimits:
    """A database server's connections for the requests of one process: `size` kept open,
    up to `overflow` more while they are all busy (closed once given back), and how long a
    request waits for one when none is free (then the database counts as unavailable)."""

    size: int = 5
    overflow: int = 10
    timeout_seconds: float = 30.0


def open_database(url: str, pool: PoolLimits = PoolLimits()) -> Database:
    """The database of `url`; `pool` bounds a server's connections (SQLite's are files)."""
    return SqliteDatabase(url) if is_sqlite(url) else ServerDatabase(url, pool)


class SqliteDatabase(Database):
    """SQLite, its statements run in the caller's thread (see the module's docstring)."""

    def __init__(self, url: str) -> None:
        # Only reads and writes that await something in the middle hold a connection for
        # long; an unbounded overflow means a checkout never blocks the loop.
        self._reads = _sync_engine(url, SQLITE_READ_BUSY_TIMEOUT_MS, pool_size=4, max_overflow=-1)
        self._writes = _sync_engine(url, 0, pool_size=2, max_overflow=-1)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[Reader]:
        with self._reads.connect() as connection, connection.begin():
            yield _InlineConnection(connection)

    def snapshot(self) -> AbstractAsyncContextManager[Reader]:
        # A read transaction of SQLite sees one state of the database throughout.
        return self.read()

    @asynccontextmanager
    async def write(self) -> AsyncIterator[Writer]:
        connection, transaction = await self._write_lock()
        with connection, transaction:
            yield _InlineConnection(connection)

    async def _write_lock(self) -> tuple[Connection, RootTransaction]:
        """A connection in a write transaction, after waiting (asynchronously, bounded)
        for another process to release the lock."""
        deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
        pause = 0.001
        while True:
            connection = self._writes.connect().execution_options(**{WRITE: True})
            try:
                return connection, connection.begin()
            except OperationalError as error:
                connection.close()
                if not _is_busy(error) or time.monotonic() + pause > deadline:
                    raise
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.05)

    async def dispose(self) -> None:
        self._reads.dispose()
        self._writes.dispose()


async def connect(engine: AsyncEngine) -> AsyncConnection:
    """A connection of `engine`; DatabaseUnavailable when the server cannot be reached."""
    connection = engine.connect()
    try:
        await connection.start()
    except (OSError, DBAPIError) as error:
        # The driver raises OSError (refused, unreachable) or an error of the server
        # (starting up, shutting down) when it cannot connect.
        raise DatabaseUnavailable(f"cannot connect: {error}") from error
    return connection


@asynccontextmanager
async def connected(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A connection of `engine` (see `connect`), back to its pool at the end."""
    connection = await connect(engine)
    try:
        yield connection
    finally:
        # Back to the pool (or closed) even when the request is cancelled meanwhile.
        await asyncio.shield(connection.close())


class ServerDatabase(Database):
    """A database server (PostgreSQL) through its asyncio driver.

    Reads run in autocommit: at PostgreSQL's READ COMMITTED each statement sees what was
    committed when it began, inside a transaction or not, so BEGIN and COMMIT would only
    add two round trips to a request's one. Connections are not pinged when taken from the
    pool (a round trip each time): one that broke, as when the server restarted, fails its
    request with a 503 that the client tries again, and SQLAlchemy then replaces every
    connection of the pool made before it.
    """

    def __init__(self, url: str, pool: PoolLimits) -> None:
        self._engine = server_engine(
            url,
            pool_size=pool.size,
            max_overflow=pool.overflow,
            pool_timeout=pool.timeout_seconds,
        )
        self._reads = self._engine.execution_options(isolation_level="AUTOCOMMIT")

    @asynccontextmanager
    async def read(self) -> AsyncIterator[Reader]:
        async with connected(self._reads) as conn:
            yield conn

    @asynccontextmanager
    async def snapshot(self) -> AsyncIterator[Reader]:
        async with connected(self._engine) as conn:
            await conn.execution_options(isolation_level="REPEATABLE READ")
            async with conn.begin():
                yield conn

    @asynccontextmanager
    async def write(self) -> AsyncIterator[Writer]:
        async with connected(self._engine) as conn:
            await conn.execution_options(**{WRITE: True})
            async with conn.begin():
                yield conn

    async def dispose(self) -> None:
        await self._engine.dispose()


def migrate(url: str) -> None:
    """Bring the schema to the newest revision (synchronously, before serving)."""
    on_connection(url, _upgrade, migrating=True)


def schema_revisions(url: str) -> tuple[str | None, str | None]:
    """The schema's revision in the database (None: no schema yet), and the newest."""
    current = on_connection(
        url, lambda connection: MigrationContext.configure(connection).get_current_revision()
    )
    return current, ScriptDirectory(str(MIGRATIONS)).get_current_head()


def on_connection(url: str, work: Callable[[Connection], _T], *, migrating: bool = False) -> _T:
    """Run synchronous `work` (Alembic's) on a connection of its own, and commit."""
    if not is_sqlite(url):
        return asyncio.run(_on_asyncio_connection(url, work, migrating=migrating))
    engine = _sync_engine(url)
    try:
        with engine.connect() as connection:
            result = work(connection.execution_options(**{WRITE: migrating}))
            connection.commit()
            return result
    finally:
        engine.dispose()


async def _on_asyncio_connection(
    url: str, work: Callable[[Connection], _T], *, migrating: bool
) -> _T:
    # Alembic is synchronous: it runs on the asyncio driver's connection through run_sync,
    # so that PostgreSQL needs no second, synchronous driver.
    engine = server_engine(url)
    try:
        async with engine.connect() as connection:
            if migrating and connection.dialect.name == "postgresql":
                # Released when the transaction ends, and by the server if this process dies.
                await connection.execute(select(func.pg_advisory_xact_lock(MIGRATION_LOCK_KEY)))
            result = await connection.run_sync(work)
            await connection.commit()
            return result
    finally:
        await engine.dispose()


def _upgrade(connection: Connection) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    command.upgrade(config, "head")
