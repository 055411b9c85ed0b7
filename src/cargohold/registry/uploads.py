"""Blob upload sessions: monolithic, chunked, resumable, cancellable, and swept when stale.

The bytes of a session grow in the blob store; the session row in the metadata ties it to
one image. The running hash of each session is kept in memory while its offset matches
the stored size, so a chunked upload is hashed once, as it arrives; a session continued by
another process (or after a restart) is hashed again from the stored bytes at its close.

One request at a time works on a session, whichever process or node it reaches: each holds
the session's lock (`registry/singleflight.py`: a file lock, or a PostgreSQL advisory lock
across nodes). A second request waits for the first, then finds where the upload stands:
a chunk sent for the offset that was (two PATCHes at once) is refused with 416 and the
Range the upload holds, as the spec answers a chunk out of order, and no bytes ever mix.
Waiting, rather than refusing at once, gives that answer the offset once it has settled.
"""

from __future__ import annotations

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
from cargohold.registry.singleflight import SingleFlight, SingleFlightTimeout
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


def _lock_key(upload_id: str) -> str:
    return f"upload:{upload_id}"


class UploadService:
    def __init__(
        self,
        metadata: MetadataStore,
        store: BlobStore,
        router: NameRouter,
        content: StoredContent,
        flights: SingleFlight,
        *,
        ttl_seconds: float,
    ) -> None:
        self._metadata = metadata
        self._store = store
        self._content = content
        self._router = router
        self._flights = flights
        self._ttl = ttl_seconds
        self._hashes: dict[str, _RunningHash] = {}
        self._orphans_seen: set[str] = set()

    async def start(self, target: Target, algorithm: str, owner: str | None = None) -> UploadStatus:
        record = await self._open(target, algorithm, owner)
        return UploadStatus(record.id, 0)

    async def _open(self, target: Target, algorithm: str, owner: str | None) -> UploadRecord:
        require_hosted(target)
        image_id = await self._router.image_id(target, create=True)
        assert image_id is not None
        # The row first: a stored session without a row is taken for an orphan.
        record = await self._metadata.create_upload(uuid.uuid4().hex, image_id, algorithm, owner)
        await self._store.start_upload(record.id)
        self._hashes[record.id] = _RunningHash(algorithm, 0, new_hasher(algorithm))
        return record

    async def _session(
        self, target: Target, upload_id: str, *, held: bool = False
    ) -> tuple[UploadRecord, int]:
        """The session's row and the bytes it holds; `held`: the caller holds its lock."""
        record = await self._metadata.get_upload(upload_id)
        received = None if record is None else await self._store.upload_size(upload_id)
        if received is None and held:
            # Gone for good (ids are never reused), and so is its lock, made again by taking it.
            self._flights.forget(_lock_key(upload_id))
        if (
            record is None
            or received is None
            or record.image_id != await self._router.image_id(target)
        ):
            raise upload_unknown(upload_id)
        return record, received

    async def owner(self, target: Target, upload_id: str) -> str | None:
        """The subject that opened the session."""
        record, _ = await self._session(target, upload_id)
        return record.owner

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
        async with self._flights.hold(_lock_key(upload_id)):
            record, received = await self._session(target, upload_id, held=True)
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
        async with self._flights.hold(_lock_key(upload_id)):
            record, received = await self._session(target, upload_id, held=True)
            return await self._finish(
                target, record, received, Digest.parse(reference), body, chunk, content_length
            )

    async def _finish(
        self,
        target: Target,
        record: UploadRecord,
        received: int,
        expected: Digest,
        body: AsyncIterable[bytes] | None,
        chunk: ChunkRange | None,
        content_length: int | None,
    ) -> str:
        if body is not None:
            received = await self._append(
                target, record, received, body, chunk, content_length, str(expected)
            )
        actual = await self._digest(record, received, expected.algorithm)
        if actual != str(expected):
            await self._drop(record.id)
            raise RegistryError(
                ErrorCode.DIGEST_INVALID,
                f"the uploaded bytes have digest {actual}, not {expected};"
                " the upload was discarded",
                detail={"expected": str(expected), "actual": actual},
            )
        try:
            await check_room(self._metadata, target, actual, received)
        except RegistryError:
            await self._drop(record.id)
            raise
        try:
            async with self._content.hold(actual):
                await self._store.commit_upload(record.id, actual, received)
                # Checked again in the link's transaction, so that concurrent pushes never
                # overshoot.
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
            await self._drop(record.id)
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
        """The single-POST upload: a session opened and finished in one request, without
        its lock, as no other request knows its id."""
        expected = Digest.parse(reference)
        record = await self._open(target, expected.algorithm, None)
        try:
            return await self._finish(target, record, 0, expected, body, None, content_length)
        except BaseException:
            await self._drop(record.id)
            raise

    async def cancel(self, target: Target, upload_id: str) -> None:
        async with self._flights.hold(_lock_key(upload_id)):
            await self._session(target, upload_id, held=True)
            await self._drop(upload_id)

    async def _drop(self, upload_id: str) -> None:
        self._hashes.pop(upload_id, None)
        await self._store.discard_upload(upload_id)
        await self._metadata.delete_upload(upload_id)
        self._flights.forget(_lock_key(upload_id))

    async def sweep(self) -> int:
        """Remove sessions older than the time to live, and stored bytes no session owns.

        Stored bytes without a session are removed only when the previous sweep saw them
        too, so that an upload being started or a manifest being written is never taken.
        """
        removed = 0
        for upload_id in await self._metadata.uploads_created_before(time.time() - self._ttl):
            try:
                async with self._flights.hold(_lock_key(upload_id), wait=False):
                    await self._drop(upload_id)
            except SingleFlightTimeout:
                continue  # a request works on it right now, on this node or another
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
