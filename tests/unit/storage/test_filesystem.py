"""Where the filesystem store keeps its files (what every store does is in test_stores.py)."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

from cargohold.storage import FilesystemBlobStore, LocalFile
from cargohold.storage.filesystem import READ_CHUNK

DATA = b"some bytes of a layer"
DIGEST = "sha256:" + hashlib.sha256(DATA).hexdigest()


def test_a_committed_upload_is_the_file_the_server_sends(tmp_path: Path) -> None:
    async def run() -> None:
        store = FilesystemBlobStore(tmp_path)
        await store.start_upload("a" * 32)
        async with store.upload_writer("a" * 32, 0) as writer:
            await writer.write(DATA)
        await store.commit_upload("a" * 32, DIGEST, len(DATA))
        delivery = await store.delivery(DIGEST)
        assert isinstance(delivery, LocalFile) and delivery.path == store.local_path(DIGEST)
        assert delivery.path.read_bytes() == DATA

    asyncio.run(run())


def test_files_that_do_not_sit_where_a_digest_would_are_not_blobs(tmp_path: Path) -> None:
    async def run() -> None:
        store = FilesystemBlobStore(tmp_path, fsync=False)
        large = bytes(range(256)) * (READ_CHUNK // 128)  # two chunks
        large_digest = "sha256:" + hashlib.sha256(large).hexdigest()
        await store.put_bytes(DIGEST, DATA)
        await store.put_bytes(large_digest, large)
        (tmp_path / "blobs" / "sha256" / "zz").mkdir()
        (tmp_path / "blobs" / "sha256" / "zz" / "ab12").write_bytes(b"misplaced")
        (tmp_path / "blobs" / "stray").write_bytes(b"not in a folder")
        assert sorted([digest async for digest in store.digests()]) == sorted(
            [DIGEST, large_digest]
        )
        chunks = [chunk async for chunk in store.read(large_digest)]
        assert len(chunks) == 2 and b"".join(chunks) == large

    asyncio.run(run())


def test_quarantined_blobs_are_files_under_quarantine(tmp_path: Path) -> None:
    async def run() -> None:
        store = FilesystemBlobStore(tmp_path, fsync=False)
        await store.put_bytes(DIGEST, DATA)
        first = Path(await store.quarantine(DIGEST))
        assert first == tmp_path / "quarantine" / "sha256" / DIGEST.split(":")[1]
        assert first.read_bytes() == DATA
        await store.put_bytes(DIGEST, DATA)
        second = Path(await store.quarantine(DIGEST))
        assert first.exists() and second.exists()

    asyncio.run(run())
