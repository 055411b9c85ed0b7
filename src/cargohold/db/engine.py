"""The metadata database: its engines, read and write transactions, and migrations.

SQLite (the default) runs in WAL mode; a write transaction starts with BEGIN IMMEDIATE so
that two writers queue on the busy timeout instead of failing when one upgrades a read lock.
SQLite reads run in the event loop's own thread: in WAL mode a reader never waits for a
writer, and an indexed lookup takes microseconds, while handing it to a driver thread and
back costs about a millisecond of CPU. Writes, which may wait for the lock, stay off the loop.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Protocol, TypeVarTuple, overload

from alembic import command
from alembic.config import Config
from sqlalchemy import CursorResult, Engine, Executable, create_engine, event
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.sql.selectable import TypedReturnsRows

MIGRATIONS = Path(__file__).parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 30_000
WRITE = "cargohold_write"


def sqlite_url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


def _is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # Let us issue BEGIN ourselves (pysqlite's own transaction handling is off).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA journal_mode = WAL")
    cursor.execute("PRAGMA synchronous = NORMAL")
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.close()


def _sqlite_begin(connection: Connection) -> None:
    immediate = connection.get_execution_options().get(WRITE, False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def _sync_engine(url: str, **options: Any) -> Engine:
    engine = create_engine(
        make_url(url).set(drivername=make_url(url).get_backend_name()), **options
    )
    if _is_sqlite(url):
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
    return engine


_Row = TypeVarTuple("_Row")


class Reader(Protocol):
    """What a read transaction offers its queries: statements in, buffered results out."""

    @overload
    async def execute(
        self, statement: TypedReturnsRows[*_Row], parameters: Mapping[str, Any] | None = None
    ) -> CursorResult[*_Row]: ...
    @overload
    async def execute(
        self, statement: Executable, parameters: Mapping[str, Any] | None = None
    ) -> CursorResult[*tuple[Any, ...]]: ...


class _InlineReader:
    """A read transaction on a synchronous connection, run in the caller's thread."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    async def execute(
        self, statement: Executable, parameters: Mapping[str, Any] | None = None
    ) -> CursorResult[*tuple[Any, ...]]:
        return self._connection.execute(statement, parameters)


class Database:
    """The engines of one metadata database; every store of queries shares one."""

    def __init__(self, url: str) -> None:
        sqlite = _is_sqlite(url)
        self.engine: AsyncEngine = create_async_engine(url, pool_pre_ping=not sqlite)
        self._inline: Engine | None = None
        if sqlite:
            event.listen(self.engine.sync_engine, "connect", _sqlite_connect)
            event.listen(self.engine.sync_engine, "begin", _sqlite_begin)
            # Never more than a few readers hold a connection at once (only those that
            # await something inside a read); an unbounded overflow means a checkout
            # never blocks the loop.
            self._inline = _sync_engine(url, pool_size=4, max_overflow=-1)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[Reader]:
        if self._inline is None:
            async with self.engine.connect() as conn, conn.begin():
                yield conn
            return
        with self._inline.connect() as connection, connection.begin():
            yield _InlineReader(connection)

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        async with self.engine.connect() as conn:
            await conn.execution_options(**{WRITE: True})
            async with conn.begin():
                yield conn

    async def dispose(self) -> None:
        await self.engine.dispose()
        if self._inline is not None:
            self._inline.dispose()


def migrate(url: str) -> None:
    """Bring the schema to the newest revision (synchronously, before serving)."""
    engine = _sync_engine(url)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.connect() as connection:
        config.attributes["connection"] = connection.execution_options(**{WRITE: True})
        command.upgrade(config, "head")
        connection.commit()
    engine.dispose()
