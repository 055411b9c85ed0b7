"""Opening each kind of blob store for the tests that every store must pass."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from cargohold.storage import BlobStore, FilesystemBlobStore
from cargohold.storage.s3 import S3BlobStore
from tests.s3server import ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY, S3Server

# The smallest part S3 takes: the tests cross part boundaries with little data.
PART_SIZE = 5 << 20

StoreOpener = Callable[[], contextlib.AbstractAsyncContextManager[BlobStore]]


def filesystem_opener(root: Path) -> StoreOpener:
    @contextlib.asynccontextmanager
    async def opened() -> AsyncIterator[BlobStore]:
        store = FilesystemBlobStore(root, fsync=False)
        yield store
        await store.close()

    return opened


def s3_opener(server: S3Server, bucket: str, *, presigned_redirects: bool = False) -> StoreOpener:
    """Each call opens another client of one bucket: another node of one registry."""

    @contextlib.asynccontextmanager
    async def opened() -> AsyncIterator[BlobStore]:
        store = await S3BlobStore.open(
            bucket=bucket,
            endpoint_url=server.endpoint_url,
            region=REGION,
            access_key_id=ACCESS_KEY_ID,
            secret_access_key=SECRET_ACCESS_KEY,
            prefix="registry/",
            part_size=PART_SIZE,
            presigned_redirects=presigned_redirects,
        )
        try:
            yield store
        finally:
            await store.close()

    return opened


def opener_for(request: pytest.FixtureRequest, kind: str, tmp_path: Path) -> StoreOpener:
    if kind == "filesystem":
        return filesystem_opener(tmp_path)
    server: S3Server = request.getfixturevalue("s3_server")
    return s3_opener(server, server.create_bucket())
