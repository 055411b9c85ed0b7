"""What every store of queries shares: the database, read and write transactions."""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from sqlalchemy import Table, func, select
from sqlalchemy.dialects import postgresql, sqlite

from cargohold.db.engine import Database, Reader, Writer
from cargohold.db.locks import lock_id
from cargohold.db.schema import blobs, manifests


def dialect_insert(conn: Writer, table: Table) -> Any:
    """An INSERT with the engine's ON CONFLICT clauses (SQLite and PostgreSQL share them)."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    return dialect.insert(table)


class AlreadyExists(Exception):
    """A row with the same unique name exists."""


class Store:
    def __init__(self, database: Database) -> None:
        self._database = database

    def _read(self) -> AbstractAsyncContextManager[Reader]:
        return self._database.read()

    def _snapshot(self) -> AbstractAsyncContextManager[Reader]:
        return self._database.snapshot()

    def _write(self) -> AbstractAsyncContextManager[Writer]:
        return self._database.write()

    @asynccontextmanager
    async def _write_references(self) -> AsyncIterator[Writer]:
        """A write transaction that adds or removes what holds content: tags, manifests and
        their references, links of blobs to images, blob rows. Garbage collection deletes
        only what its WHERE clauses find unused, and a push adds only what its checks find
        present; each must see the other's commit. SQLite runs one write at a time; on
        PostgreSQL, whose transactions run side by side, these take one lock."""
        async with self._write() as conn:
            await self._one_writer_at_a_time(conn, "content references")
            yield conn

    @staticmethod
    async def _insert_ignoring_duplicates(
        conn: Writer, table: Table, rows: Sequence[dict[str, Any]]
    ) -> None:
        if not rows:
            return
        await conn.execute(dialect_insert(conn, table).on_conflict_do_nothing(), list(rows))

    @staticmethod
    async def _described_among(conn: Reader, digests: Collection[str]) -> set[str]:
        """Those of `digests` that a blob row or a manifest row (of any image) describes."""
        found = set(
            (
                await conn.execute(select(blobs.c.digest).where(blobs.c.digest.in_(digests)))
            ).scalars()
        )
        query = select(manifests.c.digest).distinct().where(manifests.c.digest.in_(digests))
        found.update((await conn.execute(query)).scalars())
        return found

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
