"""Blob upload sessions: monolithic, chunked, resumable, cancellable, and swept when stale.

The bytes of a session grow in the blob store; the session row in the metadata ties it to
one image. The running hash of each session is kept in memory while its offset matches
the stored size, so a chunked upload is hashed once, as it arrives; a session continued by
another process (or after a restart) is hashed again from the stored bytes at its close.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import uuid
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass

from cargohold.db.metadata import MetadataStore, UploadRecord
from cargohold.oci.digest import Digest, new_hasher
from cargohold.oci.errors import ErrorCode, RegistryError
from cargohold.oci.ranges import ChunkRange, upload_range_header
from cargohold.registry.content import StoredContent
from cargohold.registry.quotas import check_room, quota_denials
from cargohold.registry.router import NameRouter, Target, require_hosted
from cargohold.storage import BlobStore

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class UploadStatus:
    id: str
    received: int


@dataclass(slots=True)
class _RunningHash:
    algorithm: str
    offset: int
    hasher: hashlib._Hash


def upload_unknown(upload_id: str) -> RegistryError:
    return RegistryError(
        ErrorCode.BLOB_UPLOAD_UNKNOWN,
        f"upload {upload_id} is unknown: it was finished, cancelled or has expired",
    )


class UploadService:
    def __init__(
        self,
        metadata: MetadataStore,
        store: BlobStore,
        router: NameRouter,
        content: StoredContent,
        *,
        ttl_seconds: float,
    ) -> None:
        self._metadata = metadata
        self._store = store
        self._content = content
        self._router = router
        self._ttl = ttl_seconds
        self._hashes: dict[str, _RunningHash] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._orphans_seen: set[str] = set()

    async def start(self, target: Target, algorithm: str, owner: str | None = None) -> UploadStatus:
        require_hosted(target)
        image_id = await self._router.image_id(target, create=True)
        assert image_id is not None
        upload_id = uuid.uuid4().hex
        # The row first: a stored session without a row is taken for an orphan.
        await self._metadata.create_upload(upload_id, image_id, algorithm, owner)
        await self._store.start_upload(upload_id)
        self._hashes[upload_id] = _RunningHash(algorithm, 0, new_hasher(algorithm))
        return UploadStatus(upload_id, 0)

    async def _session(self, target: Target, upload_id: str) -> tuple[UploadRecord, int]:
        record = await self._metadata.get_upload(upload_id)
        image_id = await self._router.image_id(target)
        if record is None or record.image_id != image_id:
            raise upload_unknown(upload_id)
        received = await self._store.upload_size(upload_id)
        if received is None:
            raise upload_unknown(upload_id)
        return record, received

    async def owner(self, target: Target, upload_id: str) -> str | None:
        """The subject that opened the session."""
        record, _ = await self._session(target, upload_id)
        return record.owner

    def _lock(self, upload_id: str) -> asyncio.Lock:
        return self._locks.setdefault(upload_id, asyncio.Lock())

    async def status(self, target: Target, upload_id: str) -> UploadStatus:
        _, received = await self._session(target, upload_id)
        return UploadStatus(upload_id, received)

    async def append(
        self,
        target: Target,
        upload_id: str,
        body: AsyncIterable[bytes],
        chunk: ChunkRange | None,
        content_length: int | None,
    ) -> UploadStatus:
        async with self._lock(upload_id):
            record, received = await self._session(target, upload_id)
            received = await self._append(target, record, received, body, chunk, content_length)
            return UploadStatus(upload_id, received)

    async def _append(
        self,
        target: Target,
        record: UploadRecord,
        received: int,
        body: AsyncIterable[bytes],
        chunk: ChunkRange | None,
        content_length: int | None,
        digest: str | None = None,
    ) -> int:
        """Store a chunk; `digest` is the blob's, when the request names it."""
        if chunk is not None:
            if chunk.start != received:
                raise RegistryError(
                    ErrorCode.BLOB_UPLOAD_INVALID,
                    f"chunk starts at byte {chunk.start} but the upload holds {received} bytes;"
                    f" send the chunk that starts at {received}",
                    status=416,
                    headers={"Range": upload_range_header(received)},
                )
            if content_length is not None and content_length != chunk.length:
                raise RegistryError(
                    ErrorCode.SIZE_INVALID,
                    f"Content-Length {content_length} does not match Content-Range"
                    f" {chunk.start}-{chunk.end}",
                )
            body = _at_most(body, chunk.length)
        declared = chunk.length if chunk is not None else content_length
        if declared:
            # Refused before a byte is stored.
            await check_room(self._metadata, target, digest, received + declared)
        running = self._hashes.get(record.id)
        if running is not None and running.offset != received:
            running = None
        self._hashes.pop(record.id, None)
        try:
            async with self._store.upload_writer(record.id, received) as writer:
                async for data in body:
                    await writer.write(data)
                    received += len(data)
                    if running is not None:
                        running.hasher.update(data)
                        running.offset = received
        finally:
            # Kept only when it has seen every byte that was written.
            if running is not None and running.offset == received:
                self._hashes[record.id] = running
        return received

    async def finish(
        self,
        target: Target,
        upload_id: str,
        reference: str,
        body: AsyncIterable[bytes] | None,
        chunk: ChunkRange | None,
        content_length: int | None,
    ) -> str:
        expected = Digest.parse(reference)
        async with self._lock(upload_id):
            record, received = await self._session(target, upload_id)
            if body is not None:
                received = await self._append(
                    target, record, received, body, chunk, content_length, str(expected)
                )
            actual = await self._digest(record, received, expected.algorithm)
            if actual != str(expected):
                await self._drop(upload_id)
                raise RegistryError(
                    ErrorCode.DIGEST_INVALID,
                    f"the uploaded bytes have digest {actual}, not {expected};"
                    " the upload was discarded",
                    detail={"expected": str(expected), "actual": actual},
                )
            try:
                await check_room(self._metadata, target, actual, received)
            except RegistryError:
                await self._drop(upload_id)
                raise
            try:
                async with self._content.hold(actual):
                    await self._store.commit_upload(upload_id, actual, received)
                    # Checked again in the link's transaction, so that concurrent pushes
                    # never overshoot.
                    with quota_denials("blob"):
                        await self._metadata.link_blob(
                            record.image_id,
                            actual,
                            received,
                            quota_project=target.repository.project_id,
                        )
            except RegistryError:
                # Refused by the quota: the bytes go again, unless another image holds them.
                await self._content.remove_unless_described([actual])
                raise
            finally:
                await self._drop(upload_id)
        self._locks.pop(upload_id, None)
        return actual

    async def _digest(self, record: UploadRecord, received: int, algorithm: str) -> str:
        running = self._hashes.get(record.id)
        if running is None or running.offset != received or running.algorithm != algorithm:
            hasher = new_hasher(algorithm)
            async for data in self._store.read_upload(record.id):
                hasher.update(data)
        else:
            hasher = running.hasher
        return f"{algorithm}:{hasher.hexdigest()}"

    async def push_whole(
        self, target: Target, reference: str, body: AsyncIterable[bytes], content_length: int | None
    ) -> str:
        """The single-POST upload: a session opened and finished in one request."""
        expected = Digest.parse(reference)
        session = await self.start(target, expected.algorithm)
        try:
            return await self.finish(target, session.id, reference, body, None, content_length)
        except BaseException:
            await self._drop(session.id)
            raise

    async def cancel(self, target: Target, upload_id: str) -> None:
        async with self._lock(upload_id):
            await self._session(target, upload_id)
            await self._drop(upload_id)
        self._locks.pop(upload_id, None)

    async def _drop(self, upload_id: str) -> None:
        self._hashes.pop(upload_id, None)
        await self._store.discard_upload(upload_id)
        await self._metadata.delete_upload(upload_id)

    async def sweep(self) -> int:
        """Remove sessions older than the time to live, and stored bytes no session owns.

        Stored bytes without a session are removed only when the previous sweep saw them
        too, so that an upload being started or a manifest being written is never taken.
        """
        removed = 0
        for upload_id in await self._metadata.uploads_created_before(time.time() - self._ttl):
            if upload_id in self._locks and self._locks[upload_id].locked():
                continue
            await self._drop(upload_id)
            self._locks.pop(upload_id, None)
            removed += 1
        orphans = set(await self._store.upload_ids()) - await self._metadata.upload_ids()
        for upload_id in orphans & self._orphans_seen:
            await self._store.discard_upload(upload_id)
            removed += 1
        self._orphans_seen = orphans - self._orphans_seen
        if removed:
            log.info("removed %d stale upload sessions", removed)
        return removed


async def _at_most(body: AsyncIterable[bytes], limit: int) -> AsyncIterator[bytes]:
    """The body, refused before a byte beyond its declared Content-Range is stored."""
    seen = 0
    async for data in body:
        seen += len(data)
        if seen > limit:
            raise RegistryError(
                ErrorCode.SIZE_INVALID,
                f"the chunk holds more than the {limit} bytes its Content-Range declares",
            )
        yield data
