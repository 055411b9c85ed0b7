"""Maintenance jobs that one process of one node runs at a time (garbage collection, cleanup
policies). A lease row in the database names the holder and when its hold lapses (a holder
that died is replaced), and remembers when the job last finished, so that scheduled runs,
which every worker of every node attempts, start the job once an interval."""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import TypeVar

from cargohold.db.leases import LeaseRow, LeaseStore

T = TypeVar("T")


class LeaseTaken(Exception):
    """Another process holds the lease (`lease`)."""

    def __init__(self, lease: LeaseRow) -> None:
        super().__init__(lease.holder)
        self.lease = lease


class Lease:
    def __init__(self, store: LeaseStore, name: str, seconds: float) -> None:
        self._store = store
        self.name = name
        self.seconds = seconds
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

    async def run(self, job: Callable[[], Awaitable[T]]) -> T:
        """`job`'s result, run holding the lease; LeaseTaken when another process holds it."""
        await self.renew()
        return await self._holding(job)

    async def run_if_due(
        self, job: Callable[[], Awaitable[T]], interval_seconds: float
    ) -> T | None:
        """A scheduled run: `job`'s result, unless another process holds the lease or the job
        finished less than half an interval ago (the workers do not wake at the same
        moment); None when it did not run."""
        blocker = await self._store.take(
            self.name,
            self.holder,
            self.seconds,
            finished_before=time.time() - interval_seconds / 2,
        )
        if blocker is not None:
            return None
        return await self._holding(job)

    async def renew(self) -> None:
        """Take the lease, or extend this process's hold; LeaseTaken when another holds it."""
        blocker = await self._store.take(self.name, self.holder, self.seconds)
        if blocker is not None:
            raise LeaseTaken(blocker)

    async def _holding(self, job: Callable[[], Awaitable[T]]) -> T:
        finished = False
        try:
            result = await job()
            finished = True
            return result
        finally:
            await self._store.release(self.name, self.holder, finished=finished)
