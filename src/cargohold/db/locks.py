"""PostgreSQL advisory locks: locks by name that every node over the database sees.

Each lock is held on a connection of its own, opened for it and closed when it is let go:
closing releases a session's advisory locks, and so does the server when a node dies or its
connection breaks. Those connections come from no pool: a long fetch under a lock never
takes a connection that requests need.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from cargohold.db.engine import async_url, connected

POLL_SECONDS = 0.05


def lock_id(key: str) -> int:
    """The advisory lock's number: 64 bits of the key's hash, as PostgreSQL's signed bigint."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big", signed=True)


class AdvisoryLocks:
    def __init__(self, url: str) -> None:
        # Autocommit: the connection waits and holds outside any transaction.
        self._engine = create_async_engine(
            async_url(url), poolclass=NullPool, isolation_level="AUTOCOMMIT"
        )

    @asynccontextmanager
    async def hold(self, key: str, deadline: float) -> AsyncIterator[None]:
        """Held until the context ends; TimeoutError when not had by `deadline`
        (time.monotonic()). Polls, as a blocking pg_advisory_lock could not be given up."""
        attempt = select(func.pg_try_advisory_lock(lock_id(key)))
        async with connected(self._engine) as conn:
            while not (await conn.execute(attempt)).scalar_one():
                if time.monotonic() + POLL_SECONDS > deadline:
                    raise TimeoutError
                await asyncio.sleep(POLL_SECONDS)
            yield

    async def close(self) -> None:
        await self._engine.dispose()
