"""The stored bytes of a digest are written, and removed, under one lock per digest that
every process on the data folder shares (the proxy's blob single flight, `blob:<digest>`).

Writers store the bytes and then the rows that describe them (a blob row, a manifest row)
while holding it; garbage collection removes bytes only while holding it, after checking
that no row describes them. So bytes are never removed from under a row: either the writer
went first and the check sees its row, or the removal went first and the writer stores the
bytes again.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager

from cargohold.db.metadata import MetadataStore
from cargohold.registry.singleflight import SingleFlight
from cargohold.storage import BlobStore


class StoredContent:
    def __init__(self, metadata: MetadataStore, store: BlobStore, flights: SingleFlight) -> None:
        self._metadata = metadata
        self._store = store
        self._flights = flights

    def hold(self, digest: str) -> AbstractAsyncContextManager[None]:
        """The lock to hold while storing the bytes of `digest` and writing their rows."""
        return self._flights.hold(f"blob:{digest}")

    async def remove_unless_described(self, digest: str) -> int | None:
        """Delete the stored bytes of `digest` unless a row describes them; the bytes freed,
        or None when they were kept (or were not stored)."""
        async with self.hold(digest):
            if await self._metadata.describes(digest):
                return None
            size = await self._store.size(digest)
            if size is None:
                return None
            await self._store.delete(digest)
            return size
