"""One fetch at a time per key, within this process and across the processes that share
the data folder: the first caller fetches, the others wait and then find it cached."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

POLL_SECONDS = 0.05


class SingleFlight:
    def __init__(self, lock_dir: Path) -> None:
        self._lock_dir = lock_dir
        lock_dir.mkdir(parents=True, exist_ok=True)
        self._locks: dict[str, asyncio.Lock] = {}
        self._holders: dict[str, int] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock = self._locks.setdefault(key, asyncio.Lock())
        self._holders[key] = self._holders.get(key, 0) + 1
        try:
            async with lock:
                path = self._lock_dir / hashlib.sha256(key.encode()).hexdigest()
                fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
                try:
                    # Polled, so that waiting holds no thread.
                    while True:
                        try:
                            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                            break
                        except BlockingIOError:
                            await asyncio.sleep(POLL_SECONDS)
                    yield
                finally:
                    os.close(fd)  # closing releases the lock
        finally:
            self._holders[key] -= 1
            if not self._holders[key]:
                del self._holders[key], self._locks[key]
