"""Blobs as files under one folder: `blobs/<algorithm>/<first two>/<encoded>`.

Uploads are written to `uploads/<id>` and renamed into place once their digest has been
verified, so a crash at any moment leaves either the whole blob or nothing under `blobs/`.
Blobs found corrupt are moved to `quarantine/<algorithm>/<encoded>`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from pathlib import Path
from typing import BinaryIO

from cargohold.storage.base import BlobStore, Delivery, LocalFile, UploadWriter, is_upload_id

READ_CHUNK = 1 << 20


class _FileUploadWriter(UploadWriter):
    def __init__(self, path: Path) -> None:
        self._file: BinaryIO = path.open("ab")

    async def write(self, data: bytes) -> None:
        self._file.write(data)

    async def close(self) -> None:
        self._file.close()


class FilesystemBlobStore(BlobStore):
    def __init__(self, root: Path, *, fsync: bool = True) -> None:
        self.root = root
        self._blobs = root / "blobs"
        self._uploads = root / "uploads"
        self._quarantine = root / "quarantine"
        self._fsync = fsync
        for folder in (self._blobs, self._uploads):
            folder.mkdir(parents=True, exist_ok=True)

    def _blob_path(self, digest: str) -> Path:
        algorithm, _, encoded = digest.partition(":")
        return self._blobs / algorithm / encoded[:2] / encoded

    def _upload_path(self, upload_id: str) -> Path:
        if not is_upload_id(upload_id):
            raise FileNotFoundError(upload_id)
        return self._uploads / upload_id

    async def size(self, digest: str) -> int | None:
        try:
            return self._blob_path(digest).stat().st_size
        except FileNotFoundError:
            return None

    def local_path(self, digest: str) -> Path:
        """Where a blob's file is (or would be)."""
        return self._blob_path(digest)

    async def delivery(self, digest: str) -> Delivery:
        return LocalFile(self.local_path(digest))

    async def read_bytes(self, digest: str) -> bytes:
        return self._blob_path(digest).read_bytes()

    async def put_bytes(self, digest: str, data: bytes) -> None:
        target = self._blob_path(digest)
        if target.exists():
            return
        # Named like an upload so that the stale-upload sweep removes it after a crash.
        scratch = self._uploads / uuid.uuid4().hex
        await asyncio.to_thread(self._write_into_place, data, scratch, target)

    async def delete(self, digest: str) -> None:
        self._blob_path(digest).unlink(missing_ok=True)

    async def read(
        self, digest: str, offset: int = 0, length: int | None = None
    ) -> AsyncGenerator[bytes, None]:
        # Read in a thread: several blobs are checked at once, on several cores.
        with self._blob_path(digest).open("rb") as file:
            file.seek(offset)
            left = length
            while chunk := await asyncio.to_thread(
                file.read, READ_CHUNK if left is None else min(READ_CHUNK, left)
            ):
                yield chunk
                if left is not None:
                    left -= len(chunk)

    async def digests(self) -> AsyncIterator[str]:
        # One folder listed at a time: memory stays flat however many blobs there are.
        for algorithm in _sorted_folders(self._blobs):
            for prefix in _sorted_folders(algorithm):
                names = await asyncio.to_thread(_sorted_file_names, prefix)
                for name in names:
                    if name.startswith(prefix.name) and len(name) > len(prefix.name):
                        yield f"{algorithm.name}:{name}"

    async def modified_at(self, digest: str) -> float | None:
        try:
            return self._blob_path(digest).stat().st_mtime
        except FileNotFoundError:
            return None

    async def quarantine(self, digest: str) -> str:
        algorithm, _, encoded = digest.partition(":")
        folder = self._quarantine / algorithm
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / encoded
        copies = 0
        while target.exists():
            copies += 1
            target = folder / f"{encoded}.{copies}"
        self._blob_path(digest).rename(target)
        return str(target)

    async def start_upload(self, upload_id: str) -> None:
        self._upload_path(upload_id).touch(exist_ok=False)

    async def upload_size(self, upload_id: str) -> int | None:
        try:
            return self._upload_path(upload_id).stat().st_size
        except FileNotFoundError:
            return None

    def upload_writer(self, upload_id: str, offset: int) -> UploadWriter:
        # Opened for appending: the file holds `offset` bytes already.
        return _FileUploadWriter(self._upload_path(upload_id))

    async def read_upload(self, upload_id: str) -> AsyncIterator[bytes]:
        with self._upload_path(upload_id).open("rb") as file:
            while chunk := file.read(READ_CHUNK):
                yield chunk
                await asyncio.sleep(0)

    async def commit_upload(self, upload_id: str, digest: str, size: int) -> None:
        # `size` serves stores that several machines append to; a file is renamed whole.
        await asyncio.to_thread(
            self._move_into_place, self._upload_path(upload_id), self._blob_path(digest)
        )

    async def discard_upload(self, upload_id: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._upload_path(upload_id).unlink(missing_ok=True)

    async def upload_ids(self) -> list[str]:
        return [path.name for path in self._uploads.iterdir() if len(path.name) == 32]

    async def upload_modified_at(self, upload_id: str) -> float | None:
        try:
            return self._upload_path(upload_id).stat().st_mtime
        except FileNotFoundError:
            return None

    async def ping(self) -> None:
        if not self._blobs.is_dir():
            raise FileNotFoundError(self._blobs)

    async def close(self) -> None:
        """Nothing to release: each file is opened for one use."""

    # These wait for the disk: they run in a thread, all of a blob's waits in one hand-off.

    def _write_into_place(self, data: bytes, scratch: Path, target: Path) -> None:
        with scratch.open("wb") as file:
            file.write(data)
        self._move_into_place(scratch, target)

    def _move_into_place(self, source: Path, target: Path) -> None:
        if self._fsync:
            _fsync_path(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(source, target)
        if self._fsync:
            _fsync_path(target.parent)


def _sorted_folders(path: Path) -> list[Path]:
    return sorted(child for child in path.iterdir() if child.is_dir())


def _sorted_file_names(folder: Path) -> list[str]:
    with os.scandir(folder) as entries:
        return sorted(entry.name for entry in entries if entry.is_file(follow_symlinks=False))


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
