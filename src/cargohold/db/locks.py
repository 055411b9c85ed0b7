"""PostgreSQL advisory locks: locks by name that every node over the database sees.

Each lock is held on a connection of its own, for as long as it is held: the server
releases a session's advisory locks when it ends, so a node that dies or loses its
connection lets go of its locks. Those connections come from a pool of their own, not the
requests' pool: a long fetch or upload under a lock never takes a connection that requests
need. The pool keeps a few open, as connecting costs more than the short requests the locks
guard (a PATCH of a small chunk took three times as long), and opens one more for each lock
beyond them (no upper bound: a request never waits for a lock's connection).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from cargohold.db.engine import connect, server_engine

POLL_SECONDS = 0.05

log = logging.getLogger(__name__)


def lock_id(key: str) -> int:
    """The advisory lock's number: 64 bits of the key's hash, as PostgreSQL's signed bigint."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big", signed=True)


class AdvisoryLocks:
    def __init__(self, url: str, kept_connections: int) -> None:
        """`kept_connections`: how many of the locks' connections stay open (at least 1)."""
        # Autocommit: the connection waits and holds outside any transaction.
        self._engine = server_engine(
            url,
            pool_size=kept_connections,
            max_overflow=-1,
            pool_pre_ping=True,
            isolation_level="AUTOCOMMIT",
        )

    @asynccontextmanager
    async def hold(self, key: str, deadline: float) -> AsyncIterator[None]:
        """Held until the context ends; TimeoutError when not had by `deadline`
        (time.monotonic()). Polls, as a blocking pg_advisory_lock could not be given up."""
        lock = lock_id(key)
        conn = await connect(self._engine)
        held = False
        try:
            attempt = select(func.pg_try_advisory_lock(lock))
            while not (await conn.execute(attempt)).scalar_one():
                if time.monotonic() + POLL_SECONDS > deadline:
                    raise TimeoutError
                await asyncio.sleep(POLL_SECONDS)
            held = True
            yield
        finally:
            # Shielded: a request cancelled meanwhile still unlocks before the connection
            # goes back to the pool.
            await asyncio.shield(_let_go(conn, lock if held else None))

    def forget(self, key: str) -> None:
        """Nothing to drop: an advisory lock leaves nothing behind once let go."""

    async def close(self) -> None:
        await self._engine.dispose()


async def _let_go(conn: AsyncConnection, lock: int | None) -> None:
    """Unlock `lock` (None: not held), and give the connection back to the pool."""
    if lock is not None:
        try:
            await conn.execute(select(func.pg_advisory_unlock(lock)))
        except Exception as error:
            # Whatever went wrong, a connection that may still hold the lock never goes
            # back to the pool: closed, its session ends and the server releases the lock.
            log.warning(
                "could not unlock advisory lock %d, closing its connection: %s", lock, error
            )
            await conn.invalidate()
    await conn.close()
