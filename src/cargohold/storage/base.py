"""The interface every blob store implements.

A store keeps two kinds of object: finished blobs, addressed by digest and immutable, and
upload sessions, addressed by an id, that grow by appends until they are committed under a
digest (atomically: a blob is visible whole or not at all) or discarded.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator
from pathlib import Path
from types import TracebackType


class UploadWriter(abc.ABC):
    """Appends bytes to one upload session; closing it keeps what was written."""

    @abc.abstractmethod
    def write(self, data: bytes) -> None: ...

    @abc.abstractmethod
    async def close(self) -> None: ...

    async def __aenter__(self) -> UploadWriter:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


class BlobStore(abc.ABC):
    @abc.abstractmethod
    async def size(self, digest: str) -> int | None:
        """The size of a finished blob, or None when the store does not hold it."""

    @abc.abstractmethod
    def local_path(self, digest: str) -> Path:
        """The file the server sends (with sendfile) for a blob."""

    @abc.abstractmethod
    async def read_bytes(self, digest: str) -> bytes:
        """A small blob (a manifest) whole."""

    @abc.abstractmethod
    async def put_bytes(self, digest: str, data: bytes) -> None:
        """Store a small blob whose digest the caller has verified."""

    @abc.abstractmethod
    async def delete(self, digest: str) -> None: ...

    @abc.abstractmethod
    def read(self, digest: str) -> AsyncIterator[bytes]:
        """A finished blob's bytes in chunks, to hash them without holding them whole.
        Raises FileNotFoundError when the store does not hold it."""

    @abc.abstractmethod
    def digests(self) -> AsyncIterator[str]:
        """The digest of every finished blob the store holds, in no particular order."""

    @abc.abstractmethod
    async def modified_at(self, digest: str) -> float | None:
        """When a finished blob was last written (seconds since the epoch), or None."""

    @abc.abstractmethod
    async def quarantine(self, digest: str) -> str:
        """Move a blob aside, out of reach of clients but kept for inspection; return
        where it went."""

    @abc.abstractmethod
    async def start_upload(self, upload_id: str) -> None: ...

    @abc.abstractmethod
    async def upload_size(self, upload_id: str) -> int | None:
        """Bytes received so far, or None when the session does not exist."""

    @abc.abstractmethod
    def upload_writer(self, upload_id: str) -> UploadWriter: ...

    @abc.abstractmethod
    def read_upload(self, upload_id: str) -> AsyncIterator[bytes]:
        """The bytes received so far, to hash them again after a restart."""

    @abc.abstractmethod
    async def commit_upload(self, upload_id: str, digest: str) -> None:
        """Make the session's bytes the blob `digest`; the caller has verified them."""

    @abc.abstractmethod
    async def discard_upload(self, upload_id: str) -> None: ...

    @abc.abstractmethod
    async def upload_ids(self) -> list[str]:
        """Every session the store holds, to clean up the abandoned ones."""

    @abc.abstractmethod
    async def upload_modified_at(self, upload_id: str) -> float | None:
        """When a session's bytes were last written, or None when it does not exist."""
