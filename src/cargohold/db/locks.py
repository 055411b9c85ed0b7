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
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager

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

    def hold(self, key: str, deadline: float) -> AbstractAsyncContextManager[None]:
        """Held until the context ends; TimeoutError when not had by `deadline`
        (time.monotonic()). Polls, as a blocking pg_advisory_lock could not be given up."""
        return self.hold_all([key], deadline)

    @asynccontextmanager
    async def hold_all(self, keys: Sequence[str], deadline: float) -> AsyncIterator[None]:
        """Every key held, taken in the order given, on one connection."""
        conn = await connect(self._engine)
        held = False
        try:
            for lock in map(lock_id, keys):
                attempt = select(func.pg_try_advisory_lock(lock))
                held = True  # from the first attempt on: it may have taken the lock
                while not (await conn.execute(attempt)).scalar_one():
                    if time.monotonic() + POLL_SECONDS > deadline:
                        raise TimeoutError
                    await asyncio.sleep(POLL_SECONDS)
            yield
        finally:
            # Shielded: a request cancelled meanwhile still unlocks before the connection
            # goes back to the pool.
            await asyncio.shield(_let_go(conn, held))

    def forget(self, key: str) -> None:
        """Nothing to drop: an advisory lock leaves nothing behind once let go."""

    async def close(self) -> None:
        await self._engine.dispose()


async def _let_go(conn: AsyncConnection, held: bool) -> None:
    """Unlock what the connection holds (if it may hold any), and give it back to the
    pool."""
    if held:
        try:
            await conn.execute(select(func.pg_advisory_unlock_all()))
        except Exception as error:
            # Whatever went wrong, a connection that may still hold locks never goes back
            # to the pool: closed, its session ends and the server releases them.
            log.warning("could not unlock advisory locks, closing their connection: %s", error)
            await conn.invalidate()
    await conn.close()
