"""What only the S3 store does: bounded memory, multipart, paging, presigned URLs, outages.

Against moto's S3 server on a local port (what every store does is in test_stores.py).
"""

from __future__ import annotations

import asyncio
import hashlib
import tracemalloc
from pathlib import Path

import pytest
import requests

from cargohold.oci.errors import RegistryError
from cargohold.storage import Redirect, StoreRefused, Streamed
from cargohold.storage.s3 import S3BlobStore
from tests.s3server import S3Server
from tests.unit.storage.stores import PART_SIZE, StoreOpener, s3_opener

MIB = 1 << 20
UPLOAD_ID = "d" * 32


@pytest.fixture
def stores(s3_server: S3Server) -> StoreOpener:
    return s3_opener(s3_server, s3_server.create_bucket())


def _pattern(index: int, size: int) -> bytes:
    """Distinct bytes per chunk, so that chunks out of order change the digest."""
    return index.to_bytes(4, "big") * (size // 4)


def test_a_64_mib_upload_in_small_chunks_keeps_memory_to_a_few_parts(
    stores: StoreOpener,
) -> None:
    async def run() -> None:
        async with stores() as store:
            assert isinstance(store, S3BlobStore)
            await store.start_upload(UPLOAD_ID)
            hasher = hashlib.sha256()
            offset = 0
            tracemalloc.start()
            try:
                # 48 appends of 1 MiB (one object each), then one of 16 MiB (a multipart
                # upload of several parts), as clients that chunk and clients that do not.
                sizes = [MIB] * 48 + [16 * MIB]
                for index, size in enumerate(sizes):
                    async with store.upload_writer(UPLOAD_ID, offset) as writer:
                        for start in range(0, size, MIB):
                            data = _pattern(index * 64 + start // MIB, MIB)
                            hasher.update(data)
                            await writer.write(data)
                    offset += size
                digest = f"sha256:{hasher.hexdigest()}"
                assert await store.upload_size(UPLOAD_ID) == 64 * MIB
                await store.commit_upload(UPLOAD_ID, digest, 64 * MIB)
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
            # A part being gathered, one being sent (the client copies it) and a chunk read.
            assert peak < 4 * PART_SIZE, f"peak {peak / MIB:.1f} MiB for a 64 MiB upload"
            assert await store.size(digest) == 64 * MIB
            check = hashlib.sha256()
            async for chunk in store.read(digest):
                check.update(chunk)
            assert f"sha256:{check.hexdigest()}" == digest
            assert await store.upload_ids() == []

    asyncio.run(run())


def test_chunks_of_whole_parts_are_joined_inside_the_object_store(stores: StoreOpener) -> None:
    async def run() -> None:
        async with stores() as store:
            chunks = [_pattern(1, PART_SIZE), _pattern(2, PART_SIZE + MIB), _pattern(3, MIB)]
            data = b"".join(chunks)
            digest = "sha256:" + hashlib.sha256(data).hexdigest()
            await store.start_upload(UPLOAD_ID)
            offset = 0
            for chunk in chunks:
                async with store.upload_writer(UPLOAD_ID, offset) as writer:
                    await writer.write(chunk)
                offset += len(chunk)
            del chunks
            tracemalloc.start()
            try:
                await store.commit_upload(UPLOAD_ID, digest, len(data))
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
            assert peak < MIB, f"{peak / MIB:.1f} MiB: the bytes came through this process"
            assert b"".join([chunk async for chunk in store.read(digest)]) == data
            assert await store.upload_ids() == []

    asyncio.run(run())


def test_a_commit_never_exposes_bytes_that_do_not_match_the_digest(stores: StoreOpener) -> None:
    async def run() -> None:
        async with stores() as store:
            data = _pattern(1, PART_SIZE + MIB)  # two parts: a multipart upload to abort
            digest = "sha256:" + hashlib.sha256(data).hexdigest()
            await store.start_upload(UPLOAD_ID)
            async with store.upload_writer(UPLOAD_ID, 0) as writer:
                await writer.write(data)
            # Another node appends after the digest was checked.
            async with store.upload_writer(UPLOAD_ID, len(data)) as writer:
                await writer.write(b"late")
            with pytest.raises(RegistryError, match="changed while it was being finished"):
                await store.commit_upload(UPLOAD_ID, digest, len(data))
            assert await store.size(digest) is None
            assert await store.upload_size(UPLOAD_ID) == len(data) + 4

    asyncio.run(run())


def test_listings_page_past_a_thousand_keys(stores: StoreOpener) -> None:
    async def run() -> None:
        async with stores() as store:
            assert isinstance(store, S3BlobStore)
            digests = {f"sha256:{index:064x}" for index in range(1001)}
            limit = asyncio.Semaphore(32)

            async def put(digest: str) -> None:
                async with limit:  # the bytes do not matter to a listing
                    await store.client.put_object(
                        Bucket=store.bucket, Key=store.blob_key(digest), Body=b""
                    )

            await asyncio.gather(*(put(digest) for digest in digests))
            assert {digest async for digest in store.digests()} == digests

            # A session of 1001 appends: sized and discarded in batches.
            await store.start_upload(UPLOAD_ID)

            async def append(index: int) -> None:
                async with limit, store.upload_writer(UPLOAD_ID, index) as writer:
                    await writer.write(b"x")

            await asyncio.gather(*(append(index) for index in range(1001)))
            assert await store.upload_size(UPLOAD_ID) == 1001
            await store.discard_upload(UPLOAD_ID)
            assert await store.upload_size(UPLOAD_ID) is None

    asyncio.run(run())


def test_presigned_redirects_name_a_url_that_serves_the_blob(s3_server: S3Server) -> None:
    async def run() -> None:
        bucket = s3_server.create_bucket()
        data = b"fetched from the object store itself"
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        async with s3_opener(s3_server, bucket)() as streaming:
            await streaming.put_bytes(digest, data)
            assert isinstance(await streaming.delivery(digest), Streamed)
        async with s3_opener(s3_server, bucket, presigned_redirects=True)() as redirecting:
            delivery = await redirecting.delivery(digest)
        assert isinstance(delivery, Redirect)
        response = await asyncio.to_thread(requests.get, delivery.url, timeout=10)
        assert response.status_code == 200 and response.content == data

    asyncio.run(run())


def test_an_outage_is_a_503_and_the_same_store_recovers(tmp_path: Path) -> None:
    server = S3Server(tmp_path / "s3-server.log")
    server.start()
    try:
        bucket = server.create_bucket()
        opener = s3_opener(server, bucket)

        async def run() -> None:
            async with opener() as store:
                await store.put_bytes("sha256:" + "0" * 64, b"before")
                server.stop()
                for attempt in (
                    store.ping(),
                    store.size("sha256:" + "0" * 64),
                    store.start_upload(UPLOAD_ID),
                    store.upload_ids(),
                ):
                    with pytest.raises(RegistryError) as raised:
                        await attempt
                    assert raised.value.status == 503
                    assert raised.value.headers["Retry-After"] == "5"
                    assert "object store is unavailable" in raised.value.message
                # Back (moto keeps buckets in memory: the bucket is made again).
                server.start()
                server.create_bucket(bucket)
                await store.put_bytes("sha256:" + "1" * 64, b"after")
                assert await store.read_bytes("sha256:" + "1" * 64) == b"after"

        asyncio.run(run())
    finally:
        server.stop()


def expect_refused(raised: pytest.ExceptionInfo[StoreRefused], answer: str) -> None:
    assert raised.value.status == 503
    assert "Retry-After" not in raised.value.headers  # waiting alone fixes nothing
    assert raised.value.answer.startswith(answer), raised.value.answer


def test_a_missing_bucket_is_a_refusal_not_an_outage(s3_server: S3Server) -> None:
    async def run() -> None:
        async with s3_opener(s3_server, f"cargohold-missing-{UPLOAD_ID[:8]}")() as store:
            for attempt in (
                store.ping(),
                store.start_upload(UPLOAD_ID),
                store.upload_ids(),
                store.read_bytes("sha256:" + "0" * 64),
            ):
                with pytest.raises(StoreRefused) as raised:
                    await attempt
                expect_refused(raised, "NoSuchBucket")
            # A HEAD's answer has no body: a missing bucket looks like a missing object.
            assert await store.size("sha256:" + "0" * 64) is None

    asyncio.run(run())


def test_credentials_the_store_does_not_know_are_a_refusal(s3_server: S3Server) -> None:
    async def run() -> None:
        async with s3_opener(s3_server, s3_server.create_bucket())() as store:
            with s3_server.refusing_every_credential():
                for attempt, answer in (
                    (store.ping(), "InvalidAccessKeyId"),
                    (store.start_upload(UPLOAD_ID), "InvalidAccessKeyId"),
                    # A HEAD's answer has no body: its status is all it says.
                    (store.size("sha256:" + "0" * 64), "403"),
                ):
                    with pytest.raises(StoreRefused) as raised:
                        await attempt
                    expect_refused(raised, answer)
            await store.ping()  # accepted again: the same client serves

    asyncio.run(run())
