"""The stored bytes of a digest are written, and removed, under a lock that every process
sees (`registry/singleflight.py`: a file lock in the data folder, or a PostgreSQL advisory
lock across nodes).

Writers (an upload finishing, a manifest push, a proxy caching a blob) store the bytes and
then the rows that describe them (a blob row, a manifest row) while holding it; garbage
collection removes bytes only while holding it, after checking that no row describes them.
So bytes are never removed from under a row: either the writer went first and the check
sees its row, or the removal went first and the writer stores the bytes again.

A lock covers a stripe of digests (those that begin alike), so that the lock files stay a
few thousand however many blobs the store holds; it is held for milliseconds.
"""

from __future__ import annotations

from collections.abc import Collection
from contextlib import AbstractAsyncContextManager

from cargohold.db.metadata import MetadataStore
from cargohold.registry.singleflight import SingleFlight
from cargohold.storage import BlobStore

# Hex digits of the encoded digest that name its stripe: 4096 lock files per algorithm.
STRIPE_DIGITS = 3
# Digests a removal handles under one set of locks (each lock an open file).
REMOVALS_AT_ONCE = 100


def stripe(digest: str) -> str:
    """The lock key of the stripe `digest` belongs to."""
    algorithm, _, encoded = digest.partition(":")
    return f"content:{algorithm}:{encoded[:STRIPE_DIGITS]}"


class StoredContent:
    def __init__(self, metadata: MetadataStore, store: BlobStore, flights: SingleFlight) -> None:
        self._metadata = metadata
        self._store = store
        self._flights = flights

    def hold(self, digest: str) -> AbstractAsyncContextManager[None]:
        """The lock to hold while storing the bytes of `digest` and writing their rows."""
        return self._flights.hold(stripe(digest))

    async def remove_unless_described(self, digests: Collection[str]) -> dict[str, int]:
        """Delete the stored bytes of those of `digests` that no row describes; the bytes
        freed by digest (those kept, or not stored, are absent)."""
        ordered = sorted(set(digests))
        freed: dict[str, int] = {}
        for start in range(0, len(ordered), REMOVALS_AT_ONCE):
            freed.update(await self._remove(ordered[start : start + REMOVALS_AT_ONCE]))
        return freed

    async def _remove(self, digests: list[str]) -> dict[str, int]:
        freed: dict[str, int] = {}
        # Every other holder holds one stripe at a time: no deadlock.
        async with self._flights.hold_all({stripe(digest) for digest in digests}):
            described = await self._metadata.described_among(digests)
            for digest in digests:
                size = None if digest in described else await self._store.size(digest)
                if size is not None:
                    await self._store.delete(digest)
                    freed[digest] = size
        return freed
