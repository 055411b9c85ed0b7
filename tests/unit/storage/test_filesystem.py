from __future__ import annotations

import asyncio
import hashlib
import time
from pathlib import Path

import pytest

from cargohold.storage import FilesystemBlobStore
from cargohold.storage.filesystem import READ_CHUNK

DATA = b"some bytes of a layer"
DIGEST = "sha256:" + hashlib.sha256(DATA).hexdigest()


async def _read_upload(store: FilesystemBlobStore, upload_id: str) -> bytes:
    return b"".join([chunk async for chunk in store.read_upload(upload_id)])


def test_an_upload_becomes_a_blob_only_when_committed(tmp_path: Path) -> None:
    async def run() -> None:
        store = FilesystemBlobStore(tmp_path)
        await store.start_upload("a" * 32)
        async with store.upload_writer("a" * 32, 0) as writer:
            await writer.write(DATA[:5])
        async with store.upload_writer("a" * 32, 5) as writer:
            await writer.write(DATA[5:])
        assert await store.upload_size("a" * 32) == len(DATA)
        assert await _read_upload(store, "a" * 32) == DATA
        assert await store.size(DIGEST) is None
        await store.commit_upload("a" * 32, DIGEST)
        assert await store.size(DIGEST) == len(DATA)
        assert store.local_path(DIGEST).read_bytes() == DATA
        assert b"".join([c async for c in store.read(DIGEST, 5, 4)]) == DATA[5:9]
        assert await store.upload_size("a" * 32) is None
        assert await store.upload_ids() == []

    asyncio.run(run())


def test_small_blobs_and_deletion(tmp_path: Path) -> None:
    async def run() -> None:
        store = FilesystemBlobStore(tmp_path, fsync=False)
        await store.put_bytes(DIGEST, DATA)
        await store.put_bytes(DIGEST, DATA)  # storing twice is harmless
        assert await store.read_bytes(DIGEST) == DATA
        await store.delete(DIGEST)
        await store.delete(DIGEST)
        assert await store.size(DIGEST) is None
        assert await store.upload_ids() == []

    asyncio.run(run())


@pytest.mark.parametrize("upload_id", ["../../etc/passwd", "A" * 32, "a" * 31, ""])
def test_upload_ids_that_are_not_ours_name_no_file(tmp_path: Path, upload_id: str) -> None:
    async def run() -> None:
        store = FilesystemBlobStore(tmp_path)
        assert await store.upload_size(upload_id) is None
        await store.discard_upload(upload_id)

    asyncio.run(run())


def test_discarding_removes_the_bytes(tmp_path: Path) -> None:
    async def run() -> None:
        store = FilesystemBlobStore(tmp_path)
        await store.start_upload("b" * 32)
        assert await store.upload_ids() == ["b" * 32]
        await store.discard_upload("b" * 32)
        assert await store.upload_ids() == []

    asyncio.run(run())


def test_blobs_are_listed_read_in_chunks_and_quarantined(tmp_path: Path) -> None:
    async def run() -> None:
        store = FilesystemBlobStore(tmp_path, fsync=False)
        large = bytes(range(256)) * (READ_CHUNK // 128)  # two chunks
        large_digest = "sha256:" + hashlib.sha256(large).hexdigest()
        await store.put_bytes(DIGEST, DATA)
        await store.put_bytes(large_digest, large)
        # Files that do not sit where a digest would are not blobs.
        (tmp_path / "blobs" / "sha256" / "zz").mkdir()
        (tmp_path / "blobs" / "sha256" / "zz" / "ab12").write_bytes(b"misplaced")
        (tmp_path / "blobs" / "stray").write_bytes(b"not in a folder")
        assert sorted([digest async for digest in store.digests()]) == sorted(
            [DIGEST, large_digest]
        )
        chunks = [chunk async for chunk in store.read(large_digest)]
        assert len(chunks) == 2 and b"".join(chunks) == large
        modified = await store.modified_at(DIGEST)
        assert modified is not None and abs(modified - time.time()) < 60

        first = Path(await store.quarantine(DIGEST))
        assert first == tmp_path / "quarantine" / "sha256" / DIGEST.split(":")[1]
        assert first.read_bytes() == DATA
        assert await store.size(DIGEST) is None and await store.modified_at(DIGEST) is None
        with pytest.raises(FileNotFoundError):
            [chunk async for chunk in store.read(DIGEST)]
        # Quarantined again (stored again, found corrupt again): both copies are kept.
        await store.put_bytes(DIGEST, DATA)
        second = Path(await store.quarantine(DIGEST))
        assert second != first and first.exists() and second.exists()
        assert [digest async for digest in store.digests()] == [large_digest]

    asyncio.run(run())


def test_when_upload_bytes_were_last_written(tmp_path: Path) -> None:
    async def run() -> None:
        store = FilesystemBlobStore(tmp_path, fsync=False)
        assert await store.upload_modified_at("a" * 32) is None
        await store.start_upload("a" * 32)
        modified = await store.upload_modified_at("a" * 32)
        assert modified is not None and abs(modified - time.time()) < 60
        assert await store.upload_modified_at("../../etc/passwd") is None

    asyncio.run(run())
