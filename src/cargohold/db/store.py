"""What every store of queries shares: the database, read and write transactions."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

from sqlalchemy import Table, func, select
from sqlalchemy.dialects import postgresql, sqlite

from cargohold.db.engine import Database, Reader, Writer
from cargohold.db.locks import lock_id


class AlreadyExists(Exception):
    """A row with the same unique name exists."""


class Store:
    def __init__(self, database: Database) -> None:
        self._database = database

    def _read(self) -> AbstractAsyncContextManager[Reader]:
        return self._database.read()

    def _write(self) -> AbstractAsyncContextManager[Writer]:
        return self._database.write()

    @staticmethod
    async def _insert_ignoring_duplicates(
        conn: Writer, table: Table, rows: Sequence[dict[str, Any]]
    ) -> None:
        if not rows:
            return
        dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
        await conn.execute(dialect.insert(table).on_conflict_do_nothing(), list(rows))

    @staticmethod
    async def _one_writer_at_a_time(conn: Writer, name: str) -> None:
        """Until this transaction ends, other transactions that call this with `name` wait.
        SQLite writes one transaction at a time anyway; on PostgreSQL, without it, two
        transactions that update a row or insert it when there is none would both insert."""
        if conn.dialect.name == "postgresql":
            await conn.execute(select(func.pg_advisory_xact_lock(lock_id(name))))

    async def ping(self) -> None:
        """Raises when the database does not answer."""
        async with self._read() as conn:
            await conn.execute(select(1))
