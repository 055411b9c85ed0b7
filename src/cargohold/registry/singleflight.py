"""One holder at a time per key, within this process and across every process that shares
the data: one fetch of a proxied blob (the others wait and then find it cached), one request
at a time on an upload session, one writer of a digest's stored bytes.

Within the process an asyncio lock per key queues the callers; the one at its head then
takes the lock that keeps other processes out: a file lock in the data folder (processes of
one machine), or a PostgreSQL advisory lock (nodes over one database, `db.locks`).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import os
import time
from collections.abc import AsyncIterator, Collection, Sequence
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Protocol

from cargohold.oci.errors import ErrorCode, RegistryError

POLL_SECONDS = 0.05
# A waiter gives up after this long: the fetch it waits for is stuck, not slow.
MAX_WAIT_SECONDS = 3600.0


class SingleFlightTimeout(RegistryError):
    """Another request held the key longer than the wait allowed."""

    def __init__(self, key: str) -> None:
        super().__init__(
            ErrorCode.UNAVAILABLE,
            f"another request has been working on {key} for too long; try again later",
            status=503,
            headers={"Retry-After": "30"},
        )


class SharedLocks(Protocol):
    """Locks by name that other processes see."""

    def hold(self, key: str, deadline: float) -> AbstractAsyncContextManager[None]:
        """Held until the context ends; TimeoutError when not had by `deadline`
        (time.monotonic()), which is tried once even when already past."""
        ...

    def hold_all(self, keys: Sequence[str], deadline: float) -> AbstractAsyncContextManager[None]:
        """Every key held, taken in the order given, until the context ends; TimeoutError
        (none held) when one is not had by `deadline`."""
        ...

    def forget(self, key: str) -> None:
        """Drop what holding `key` left behind (a lock file), once nothing it guards is left:
        a request that holds or waits for it meanwhile must find its work gone."""
        ...

    async def close(self) -> None: ...


class FileLocks:
    """flock(2) on a file per key, in a folder the processes of one machine share."""

    def __init__(self, lock_dir: Path) -> None:
        self._lock_dir = lock_dir
        lock_dir.mkdir(parents=True, exist_ok=True)

    def path(self, key: str) -> Path:
        """The file whose lock is the key's."""
        return self._lock_dir / hashlib.sha256(key.encode()).hexdigest()

    @contextlib.asynccontextmanager
    async def hold(self, key: str, deadline: float) -> AsyncIterator[None]:
        fd = os.open(self.path(key), os.O_CREAT | os.O_RDWR, 0o600)
        try:
            await _flock(fd, deadline)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    @contextlib.asynccontextmanager
    async def hold_all(self, keys: Sequence[str], deadline: float) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as held:
            for key in keys:
                await held.enter_async_context(self.hold(key, deadline))
            yield

    def forget(self, key: str) -> None:
        # A holder of the removed file and one of a new file could both hold the key: the
        # caller makes sure that nothing is left for either to do.
        self.path(key).unlink(missing_ok=True)

    async def close(self) -> None:
        """Nothing to release: each lock's file is closed with it."""


async def _flock(fd: int, deadline: float) -> None:
    """Take the file lock, polling so that waiting holds no thread."""
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() + POLL_SECONDS > deadline:
                raise TimeoutError from None
        await asyncio.sleep(POLL_SECONDS)


class SingleFlight:
    def __init__(self, shared: SharedLocks, max_wait: float = MAX_WAIT_SECONDS) -> None:
        self._shared = shared
        self._max_wait = max_wait
        self._locks: dict[str, asyncio.Lock] = {}
        self._holders: dict[str, int] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: str, *, wait: bool = True) -> AsyncIterator[None]:
        """Held until the context ends. SingleFlightTimeout when not had within the longest
        wait or, with `wait=False`, at once when another request (of any process) has it."""
        async with self.hold_all([key], wait=wait):
            yield

    @contextlib.asynccontextmanager
    async def hold_all(self, keys: Collection[str], *, wait: bool = True) -> AsyncIterator[None]:
        """Every key held, as `hold` holds one, taken in sorted order (so that holders of
        several never deadlock) and across processes all at once: on PostgreSQL on one
        connection, where a lock of its own for each would open as many."""
        ordered = sorted(set(keys))
        deadline = time.monotonic() + (self._max_wait if wait else 0.0)
        async with contextlib.AsyncExitStack() as held:
            for key in ordered:
                await held.enter_async_context(self._in_process(key, wait))
            try:
                # Only the wait for the locks times out here, not the work under them.
                await held.enter_async_context(self._shared.hold_all(ordered, deadline))
            except TimeoutError:
                raise SingleFlightTimeout(_describe(ordered)) from None
            yield

    @contextlib.asynccontextmanager
    async def _in_process(self, key: str, wait: bool) -> AsyncIterator[None]:
        """The key among this process's requests: they queue here, so that only the one at
        the head waits for the lock other processes see."""
        if not wait and key in self._holders:
            raise SingleFlightTimeout(key)
        lock = self._locks.setdefault(key, asyncio.Lock())
        self._holders[key] = self._holders.get(key, 0) + 1
        try:
            try:
                if wait:
                    await asyncio.wait_for(lock.acquire(), self._max_wait)
                else:
                    await lock.acquire()  # no other holder in this process: taken at once
            except TimeoutError:
                raise SingleFlightTimeout(key) from None
            try:
                yield
            finally:
                lock.release()
        finally:
            self._holders[key] -= 1
            if not self._holders[key]:
                del self._holders[key], self._locks[key]

    def forget(self, key: str) -> None:
        """Drop what holding `key` left behind, once nothing it guards is left."""
        self._shared.forget(key)

    @contextlib.asynccontextmanager
    async def hold_then_forget(self, key: str) -> AsyncIterator[None]:
        """`hold`, and `forget` once let go: for work that each holder first checks is not
        done yet (a proxy's fetch), where keys are many and used once (a lock file per
        proxied digest would pile up). Two holders at once (one of the forgotten lock file,
        one of a new one) at worst do the work twice."""
        try:
            async with self.hold(key):
                yield
        finally:
            self.forget(key)


def _describe(keys: Sequence[str]) -> str:
    return keys[0] if len(keys) == 1 else f"{keys[0]} and {len(keys) - 1} more"
