"""Engines and migrations for the metadata database.

SQLite (the default) runs in WAL mode; a write transaction starts with BEGIN IMMEDIATE so
that two writers queue on the busy timeout instead of failing when one upgrades a read lock.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

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


def create_engine_for(url: str) -> AsyncEngine:
    engine = create_async_engine(url, pool_pre_ping=not _is_sqlite(url))
    if _is_sqlite(url):
        event.listen(engine.sync_engine, "connect", _sqlite_connect)
        event.listen(engine.sync_engine, "begin", _sqlite_begin)
    return engine


def migrate(url: str) -> None:
    """Bring the schema to the newest revision (synchronously, before serving)."""
    sync_url = make_url(url).set(drivername=make_url(url).get_backend_name())
    engine = create_engine(sync_url)
    if _is_sqlite(url):
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.connect() as connection:
        config.attributes["connection"] = connection.execution_options(**{WRITE: True})
        command.upgrade(config, "head")
        connection.commit()
    engine.dispose()
