"""The interface every blob store implements.

A store keeps two kinds of object: finished blobs, addressed by digest and immutable, and
upload sessions, addressed by an id, that grow by appends until they are committed under a
digest (atomically: a blob is visible whole or not at all) or discarded.

How the server sends a blob depends on the store: a local file goes out with sendfile, an
object store's blob is streamed through the server or fetched by the client from a
presigned URL.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from cargohold.oci.errors import ErrorCode, RegistryError

RETRY_AFTER_SECONDS = 5


class StoreUnavailable(RegistryError):
    """The blob store could not be reached or failed: the request may be tried again."""

    def __init__(self, cause: BaseException) -> None:
        # UNAVAILABLE (distribution's code; the spec has none for it), with Retry-After.
        super().__init__(
            ErrorCode.UNAVAILABLE,
            f"the object store is unavailable ({type(cause).__name__}: {cause});"
            f" try again in {RETRY_AFTER_SECONDS} seconds",
            status=503,
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )


class StoreRefused(RegistryError):
    """The blob store refused the request as the registry is configured: a bucket that does
    not exist, credentials or permissions it does not accept. Waiting does not help: the
    settings, or the store's permissions, must change."""

    def __init__(self, answer: str) -> None:
        # 503, as distribution answers while its storage fails its health check: this node
        # cannot serve, while another (or this one, once its settings are fixed) can. No
        # Retry-After: waiting alone fixes nothing.
        super().__init__(
            ErrorCode.UNAVAILABLE,
            f"the object store refused the request ({answer}): the registry's blob store"
            " settings or the store's permissions need fixing; tell the registry's operator",
            status=503,
        )
        self.answer = answer


def is_upload_id(upload_id: str) -> bool:
    """Ids come from URLs: only our own uuid4 hex form names stored bytes."""
    return len(upload_id) == 32 and all(c in "0123456789abcdef" for c in upload_id)


@dataclass(frozen=True, slots=True)
class LocalFile:
    """A blob in a local file: the server sends it with sendfile."""

    path: Path


@dataclass(frozen=True, slots=True)
class Redirect:
    """A blob the client fetches from the store itself, at a short-lived URL."""

    url: str


@dataclass(frozen=True, slots=True)
class Streamed:
    """A blob the server streams from `BlobStore.read`."""


Delivery = LocalFile | Redirect | Streamed


class UploadWriter(abc.ABC):
    """Appends bytes to one upload session; closing it keeps what was written."""

    @abc.abstractmethod
    async def write(self, data: bytes) -> None: ...

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
    async def delivery(self, digest: str) -> Delivery:
        """How the server sends a blob to a client that GETs it."""

    @abc.abstractmethod
    async def read_bytes(self, digest: str) -> bytes:
        """A small blob (a manifest) whole."""

    @abc.abstractmethod
    async def put_bytes(self, digest: str, data: bytes) -> None:
        """Store a small blob whose digest the caller has verified."""

    @abc.abstractmethod
    async def delete(self, digest: str) -> None: ...

    @abc.abstractmethod
    def read(
        self, digest: str, offset: int = 0, length: int | None = None
    ) -> AsyncGenerator[bytes, None]:
        """A finished blob's bytes from `offset` (`length` of them, or to the end) in chunks,
        to hash or send them without holding them whole.
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
    def upload_writer(self, upload_id: str, offset: int) -> UploadWriter:
        """A writer that appends to a session holding `offset` bytes."""

    @abc.abstractmethod
    def read_upload(self, upload_id: str) -> AsyncIterator[bytes]:
        """The bytes received so far, to hash them again after a restart."""

    @abc.abstractmethod
    async def commit_upload(self, upload_id: str, digest: str, size: int) -> None:
        """Make the session's bytes the blob `digest`; the caller has verified them (`size`
        bytes of them: a store shared by several nodes checks that none came since)."""

    @abc.abstractmethod
    async def discard_upload(self, upload_id: str) -> None: ...

    @abc.abstractmethod
    async def upload_ids(self) -> list[str]:
        """Every session the store holds, to clean up the abandoned ones."""

    @abc.abstractmethod
    async def upload_modified_at(self, upload_id: str) -> float | None:
        """When a session's bytes were last written, or None when it does not exist."""

    @abc.abstractmethod
    async def ping(self) -> None:
        """Raise when the store cannot serve (a readiness check)."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release what the store holds open (connections)."""
