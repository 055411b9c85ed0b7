"""What every blob store does, run against each: the filesystem and S3 (a real local server)."""

from __future__ import annotations

import asyncio
import hashlib
import time
from pathlib import Path

import pytest

from cargohold.storage import BlobStore
from tests.unit.storage.stores import StoreOpener, opener_for

DATA = b"some bytes of a layer"
DIGEST = "sha256:" + hashlib.sha256(DATA).hexdigest()
LARGE = bytes(range(256)) * (3 << 12)  # 3 MiB: several read chunks
LARGE_DIGEST = "sha256:" + hashlib.sha256(LARGE).hexdigest()


@pytest.fixture(params=["filesystem", "s3"])
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> StoreOpener:
    """Opens a store; each call another instance over the same blobs (another node)."""
    return opener_for(request, request.param, tmp_path)


async def _read_upload(store: BlobStore, upload_id: str) -> bytes:
    return b"".join([chunk async for chunk in store.read_upload(upload_id)])


async def _read(store: BlobStore, digest: str, offset: int = 0, length: int | None = None) -> bytes:
    return b"".join([chunk async for chunk in store.read(digest, offset, length)])


def test_an_upload_becomes_a_blob_only_when_committed(stores: StoreOpener) -> None:
    async def run() -> None:
        async with stores() as store:
            await store.ping()
            await store.start_upload("a" * 32)
            assert await store.upload_size("a" * 32) == 0
            async with store.upload_writer("a" * 32, 0) as writer:
                await writer.write(DATA[:5])
            async with store.upload_writer("a" * 32, 5) as writer:
                await writer.write(DATA[5:10])
                await writer.write(DATA[10:])
            assert await store.upload_size("a" * 32) == len(DATA)
            assert await _read_upload(store, "a" * 32) == DATA
            assert await store.size(DIGEST) is None
            await store.commit_upload("a" * 32, DIGEST, len(DATA))
            assert await store.size(DIGEST) == len(DATA)
            assert await _read(store, DIGEST) == DATA
            assert await store.upload_size("a" * 32) is None
            assert await store.upload_ids() == []

    asyncio.run(run())


def test_an_empty_upload_commits_to_an_empty_blob(stores: StoreOpener) -> None:
    async def run() -> None:
        async with stores() as store:
            empty = "sha256:" + hashlib.sha256(b"").hexdigest()
            await store.start_upload("e" * 32)
            await store.commit_upload("e" * 32, empty, 0)
            assert await store.size(empty) == 0
            assert await _read(store, empty) == b""

    asyncio.run(run())


def test_chunks_appended_on_one_node_are_committed_on_another(stores: StoreOpener) -> None:
    async def run() -> None:
        async with stores() as first, stores() as second:
            await first.start_upload("c" * 32)
            async with first.upload_writer("c" * 32, 0) as writer:
                await writer.write(LARGE[:1000])
            received = await second.upload_size("c" * 32)
            assert received == 1000
            async with second.upload_writer("c" * 32, received) as writer:
                await writer.write(LARGE[1000:])
            assert await first.upload_size("c" * 32) == len(LARGE)
            await first.commit_upload("c" * 32, LARGE_DIGEST, len(LARGE))
            assert await _read(second, LARGE_DIGEST) == LARGE
            assert await second.upload_ids() == []

    asyncio.run(run())


def test_byte_ranges_of_a_blob(stores: StoreOpener) -> None:
    async def run() -> None:
        async with stores() as store:
            await store.put_bytes(LARGE_DIGEST, LARGE)
            assert await _read(store, LARGE_DIGEST, 5, 4) == LARGE[5:9]
            assert await _read(store, LARGE_DIGEST, len(LARGE) - 3) == LARGE[-3:]
            assert await _read(store, LARGE_DIGEST, 1 << 20, 1 << 20) == LARGE[1 << 20 : 2 << 20]
            assert await _read(store, LARGE_DIGEST, 7, 0) == b""

    asyncio.run(run())


def test_small_blobs_and_deletion(stores: StoreOpener) -> None:
    async def run() -> None:
        async with stores() as store:
            await store.put_bytes(DIGEST, DATA)
            await store.put_bytes(DIGEST, DATA)  # storing twice is harmless
            assert await store.read_bytes(DIGEST) == DATA
            await store.delete(DIGEST)
            await store.delete(DIGEST)
            assert await store.size(DIGEST) is None
            with pytest.raises(FileNotFoundError):
                await store.read_bytes(DIGEST)
            assert await store.upload_ids() == []

    asyncio.run(run())


@pytest.mark.parametrize("upload_id", ["../../etc/passwd", "A" * 32, "a" * 31, ""])
def test_upload_ids_that_are_not_ours_name_nothing(stores: StoreOpener, upload_id: str) -> None:
    async def run() -> None:
        async with stores() as store:
            assert await store.upload_size(upload_id) is None
            assert await store.upload_modified_at(upload_id) is None
            await store.discard_upload(upload_id)

    asyncio.run(run())


def test_discarding_removes_the_bytes(stores: StoreOpener) -> None:
    async def run() -> None:
        async with stores() as store:
            await store.start_upload("b" * 32)
            async with store.upload_writer("b" * 32, 0) as writer:
                await writer.write(DATA)
            assert await store.upload_ids() == ["b" * 32]
            await store.discard_upload("b" * 32)
            assert await store.upload_ids() == []
            assert await store.upload_size("b" * 32) is None

    asyncio.run(run())


def test_blobs_are_listed_read_and_quarantined(stores: StoreOpener) -> None:
    async def run() -> None:
        async with stores() as store:
            await store.put_bytes(DIGEST, DATA)
            await store.put_bytes(LARGE_DIGEST, LARGE)
            assert sorted([digest async for digest in store.digests()]) == sorted(
                [DIGEST, LARGE_DIGEST]
            )
            assert await _read(store, LARGE_DIGEST) == LARGE
            modified = await store.modified_at(DIGEST)
            assert modified is not None and abs(modified - time.time()) < 60

            first = await store.quarantine(DIGEST)
            assert await store.size(DIGEST) is None and await store.modified_at(DIGEST) is None
            with pytest.raises(FileNotFoundError):
                await _read(store, DIGEST)
            # Quarantined again (stored again, found corrupt again): both copies are kept.
            await store.put_bytes(DIGEST, DATA)
            second = await store.quarantine(DIGEST)
            assert second != first
            assert [digest async for digest in store.digests()] == [LARGE_DIGEST]

    asyncio.run(run())


def test_when_upload_bytes_were_last_written(stores: StoreOpener) -> None:
    async def run() -> None:
        async with stores() as store:
            assert await store.upload_modified_at("a" * 32) is None
            await store.start_upload("a" * 32)
            modified = await store.upload_modified_at("a" * 32)
            assert modified is not None and abs(modified - time.time()) < 60

    asyncio.run(run())
