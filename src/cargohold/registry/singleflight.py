"""One fetch at a time per key, within this process and across the processes that share
the data folder: the first caller fetches, the others wait and then find it cached."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

from cargohold.oci.errors import ErrorCode, RegistryError

POLL_SECONDS = 0.05
# A waiter gives up after this long: the fetch it waits for is stuck, not slow.
MAX_WAIT_SECONDS = 3600.0


class SingleFlightTimeout(RegistryError):
    """Another fetch of the same content held it longer than the wait allowed."""

    def __init__(self, key: str) -> None:
        super().__init__(
            ErrorCode.TOOMANYREQUESTS,
            f"another request has been fetching {key} for too long; try again later",
            status=503,
            headers={"Retry-After": "30"},
        )


class SingleFlight:
    def __init__(self, lock_dir: Path, max_wait: float = MAX_WAIT_SECONDS) -> None:
        self._max_wait = max_wait
        self._lock_dir = lock_dir
        lock_dir.mkdir(parents=True, exist_ok=True)
        self._locks: dict[str, asyncio.Lock] = {}
        self._holders: dict[str, int] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock = self._locks.setdefault(key, asyncio.Lock())
        self._holders[key] = self._holders.get(key, 0) + 1
        deadline = time.monotonic() + self._max_wait
        try:
            try:
                await asyncio.wait_for(lock.acquire(), self._max_wait)
            except TimeoutError:
                raise SingleFlightTimeout(key) from None
            try:
                path = self._lock_dir / hashlib.sha256(key.encode()).hexdigest()
                fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
                try:
                    await _flock(fd, key, deadline)
                    yield
                finally:
                    os.close(fd)  # closing releases the lock
            finally:
                lock.release()
        finally:
            self._holders[key] -= 1
            if not self._holders[key]:
                del self._holders[key], self._locks[key]


async def _flock(fd: int, key: str, deadline: float) -> None:
    """Take the file lock, polling so that waiting holds no thread."""
    while time.monotonic() < deadline:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            await asyncio.sleep(POLL_SECONDS)
    raise SingleFlightTimeout(key)
