"""Blobs as objects of an S3-compatible bucket, every key under one prefix.

    <prefix>blobs/<algorithm>/<first two>/<encoded>    finished blobs
    <prefix>uploads/<id>/open                          an upload session exists
    <prefix>uploads/<id>/<offset, 20 digits>           the bytes one append brought
    <prefix>quarantine/<algorithm>/<encoded>/<ns>      blobs found corrupt

Every node reaches the same keys, so any node may take the next chunk of a session. An
append larger than one part goes up as a multipart upload. A commit joins the chunks, in
order of their offsets, in a multipart upload of the blob's key: copied inside the object
store when they can be parts as they are, else streamed through and hashed again; the upload
is completed only when whole and right, so a blob's key never holds wrong or partial bytes.
Memory per stream is about one part, whatever the size of the blob.

A store that cannot be reached, times out or answers 5xx makes the request fail with 503
and Retry-After; the next request tries again. A store that refuses the registry's settings
(a missing bucket, credentials or permissions it does not accept) makes it fail with 503 and
no Retry-After, and the log says what the store answered, for which bucket at which endpoint.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any

import aiohttp
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as StoreConnectionError

from cargohold.oci.digest import new_hasher
from cargohold.oci.errors import ErrorCode, RegistryError
from cargohold.storage.base import (
    BlobStore,
    Delivery,
    Redirect,
    StoreRefused,
    StoreUnavailable,
    Streamed,
    UploadWriter,
    is_upload_id,
)

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client
    from types_aiobotocore_s3.type_defs import CompletedPartTypeDef, GetObjectRequestTypeDef

log = logging.getLogger(__name__)

READ_CHUNK = 1 << 20
# S3 deletes at most this many keys per request.
DELETE_BATCH = 1000
PRESIGNED_URL_SECONDS = 900
SESSION_MARKER = "open"
# S3's limits on multipart uploads.
MIN_PART_SIZE = 5 << 20
MAX_COPY_SIZE = 5 << 30
MAX_PARTS = 10_000
OFFSET_DIGITS = 20
# What S3 answers when the registry's settings are wrong rather than the request, besides
# any 401 or 403 (credentials, permissions): no such bucket, or not in that region.
MISCONFIGURED = frozenset(
    {
        "NoSuchBucket",
        "InvalidBucketName",
        "PermanentRedirect",
        "AuthorizationHeaderMalformed",
        "ExpiredToken",
        "InvalidToken",
    }
)
# The store is busy: an outage to wait out, like a 5xx.
THROTTLED = 429


def _copyable(chunks: list[dict[str, Any]]) -> bool:
    """Whether the chunks can be the parts of a multipart upload, copied as they are: every
    part but the last at least S3's smallest, none above its largest copy, not too many."""
    sizes = [int(entry["Size"]) for entry in chunks]
    return (
        0 < len(sizes) <= MAX_PARTS
        and all(size >= MIN_PART_SIZE for size in sizes[:-1])
        and max(sizes) <= MAX_COPY_SIZE
    )


def _changed_while_finishing(digest: str) -> RegistryError:
    return RegistryError(
        ErrorCode.BLOB_UPLOAD_INVALID,
        f"the upload changed while it was being finished (another request added to it);"
        f" its bytes are no longer those of {digest}",
    )


def _status(error: ClientError) -> int:
    return int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def _is_missing(error: ClientError) -> bool:
    # A HEAD's answer has no body: its 404 says "404", for an object or (alas) a bucket.
    return _code(error) in ("NoSuchKey", "NoSuchUpload", "404")


def _is_refusal(error: ClientError) -> bool:
    return _status(error) in (401, 403) or _code(error) in MISCONFIGURED


class _ObjectWriter(UploadWriter):
    """Streams bytes to one key: one PUT when they fit in a part, else a multipart upload
    of `part_size` parts. Closing keeps what was written; aborting keeps nothing."""

    def __init__(self, store: S3BlobStore, key: str) -> None:
        self._store = store
        self._key = key
        self._buffer: list[bytes] = []
        self._buffered = 0
        self._multipart_id: str | None = None
        self._parts: list[CompletedPartTypeDef] = []
        self._done = False

    async def write(self, data: bytes) -> None:
        self._buffer.append(data)
        self._buffered += len(data)
        if self._buffered >= self._store.part_size:
            # Parts may exceed part_size by a chunk: each chunk is copied once, into its part.
            await self._upload_part(self._take_buffer())

    def _take_buffer(self) -> bytes:
        part = b"".join(self._buffer)
        self._buffer.clear()
        self._buffered = 0
        return part

    async def _upload_part(self, part: bytes) -> None:
        async def send(multipart_id: str, number: int) -> str:
            uploaded = await self._store.client.upload_part(
                Bucket=self._store.bucket,
                Key=self._key,
                UploadId=multipart_id,
                PartNumber=number,
                Body=part,
            )
            return uploaded["ETag"]

        await self._add_part(send)

    async def copy_part(self, source_key: str, source_etag: str) -> None:
        """The next part is a whole object of the bucket, copied inside the object store
        (and only if it is still the version listed)."""

        async def send(multipart_id: str, number: int) -> str:
            copied = await self._store.client.upload_part_copy(
                Bucket=self._store.bucket,
                Key=self._key,
                UploadId=multipart_id,
                PartNumber=number,
                CopySource={"Bucket": self._store.bucket, "Key": source_key},
                CopySourceIfMatch=source_etag,
            )
            return copied["CopyPartResult"]["ETag"]

        await self._add_part(send)

    async def _add_part(self, send: Callable[[str, int], Awaitable[str]]) -> None:
        try:
            with self._store.failures():
                if self._multipart_id is None:
                    started = await self._store.client.create_multipart_upload(
                        Bucket=self._store.bucket, Key=self._key
                    )
                    self._multipart_id = started["UploadId"]
                number = len(self._parts) + 1
                etag = await send(self._multipart_id, number)
                self._parts.append({"ETag": etag, "PartNumber": number})
        except BaseException:
            await self.abort()
            raise

    async def close(self) -> None:
        if self._done:
            return
        client, bucket = self._store.client, self._store.bucket
        if self._multipart_id is None:
            self._done = True
            # Even empty: an empty blob is an object too.
            with self._store.failures():
                await client.put_object(Bucket=bucket, Key=self._key, Body=self._take_buffer())
            return
        if self._buffered:
            await self._upload_part(self._take_buffer())
        self._done = True
        try:
            with self._store.failures():
                await client.complete_multipart_upload(
                    Bucket=bucket,
                    Key=self._key,
                    UploadId=self._multipart_id,
                    MultipartUpload={"Parts": self._parts},
                )
        except BaseException:
            await self._store.abort_multipart(self._key, self._multipart_id)
            raise

    async def abort(self) -> None:
        if self._done:
            return
        self._done = True
        self._buffer.clear()
        if self._multipart_id is not None:
            await self._store.abort_multipart(self._key, self._multipart_id)


class S3BlobStore(BlobStore):
    def __init__(
        self,
        client: S3Client,
        connection: contextlib.AsyncExitStack,
        *,
        bucket: str,
        prefix: str,
        part_size: int,
        presigned_redirects: bool,
    ) -> None:
        self.client = client
        self._connection = connection
        self.bucket = bucket
        self._prefix = prefix
        self.part_size = part_size
        self._presigned_redirects = presigned_redirects

    @classmethod
    async def open(
        cls,
        *,
        bucket: str,
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        prefix: str = "",
        part_size: int = 8 << 20,
        presigned_redirects: bool = False,
    ) -> S3BlobStore:
        config = AioConfig(
            connect_timeout=5,
            read_timeout=60,
            # Few retries: while the store is down, requests fail fast and clients retry.
            retries={"max_attempts": 2, "mode": "standard"},
            # Path-style keys and checksums only where required: what every S3-compatible
            # server takes, and no CRC pass over each part.
            s3={"addressing_style": "path" if endpoint_url else "auto"},
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            max_pool_connections=64,
        )
        connection = contextlib.AsyncExitStack()
        client = await connection.enter_async_context(
            get_session().create_client(
                "s3",
                endpoint_url=endpoint_url,
                region_name=region,
                aws_access_key_id=access_key_id,
                aws_secret_access_key=secret_access_key,
                config=config,
            )
        )
        return cls(
            client,
            connection,
            bucket=bucket,
            prefix=prefix,
            part_size=part_size,
            presigned_redirects=presigned_redirects,
        )

    async def ping(self) -> None:
        with self.failures():
            # A listing, not a HEAD of the bucket: its answer names what is wrong
            # (NoSuchBucket, AccessDenied), where a HEAD's answer has no body.
            await self.client.list_objects_v2(Bucket=self.bucket, Prefix=self._prefix, MaxKeys=1)

    @contextlib.contextmanager
    def failures(self) -> Iterator[None]:
        """Turn what the object store's client raises into what it means for the request:
        an outage (worth trying again) into StoreUnavailable, a refusal of the registry's
        settings into StoreRefused. A missing object stays a ClientError for the caller, and
        so does any other answer, which no setting explains. The one place that knows which
        failure is which."""
        try:
            yield
        except ClientError as error:
            if _status(error) >= 500 or _status(error) == THROTTLED:
                raise self._unavailable(error) from None
            if _is_refusal(error):
                raise self._refused(error) from None
            raise
        except (StoreConnectionError, HTTPClientError, aiohttp.ClientError, TimeoutError) as error:
            raise self._unavailable(error) from None

    def _unavailable(self, cause: BaseException) -> StoreUnavailable:
        error = StoreUnavailable(cause)
        # Clients see a 503; operators see why, and where.
        log.warning("%s (bucket %s at %s)", error.message, self.bucket, self._endpoint)
        return error

    def _refused(self, error: ClientError) -> StoreRefused:
        answer = f"{_code(error)}: {error.response.get('Error', {}).get('Message', '')}"
        log.error(
            "the object store at %s refused %s on bucket %s: %d %s; check s3_bucket, s3_region,"
            " the credentials and their permissions",
            self._endpoint,
            error.operation_name,
            self.bucket,
            _status(error),
            answer,
        )
        return StoreRefused(answer)

    @property
    def _endpoint(self) -> str:
        return str(self.client.meta.endpoint_url)

    async def close(self) -> None:
        await self._connection.aclose()

    def blob_key(self, digest: str) -> str:
        algorithm, _, encoded = digest.partition(":")
        return f"{self._prefix}blobs/{algorithm}/{encoded[:2]}/{encoded}"

    def _upload_folder(self, upload_id: str) -> str:
        return f"{self._prefix}uploads/{upload_id}/"

    async def _head(self, key: str) -> dict[str, Any] | None:
        try:
            with self.failures():
                return dict(await self.client.head_object(Bucket=self.bucket, Key=key))
        except ClientError as error:
            if _is_missing(error):
                return None
            raise

    async def size(self, digest: str) -> int | None:
        head = await self._head(self.blob_key(digest))
        return None if head is None else int(head["ContentLength"])

    async def delivery(self, digest: str) -> Delivery:
        if not self._presigned_redirects:
            return Streamed()
        url = await self.client.generate_presigned_url(
            "get_object",
            Params={"Bucket": self.bucket, "Key": self.blob_key(digest)},
            ExpiresIn=PRESIGNED_URL_SECONDS,
        )
        return Redirect(url)

    async def read_bytes(self, digest: str) -> bytes:
        return b"".join([chunk async for chunk in self._stream(self.blob_key(digest))])

    async def put_bytes(self, digest: str, data: bytes) -> None:
        key = self.blob_key(digest)
        if await self._head(key) is not None:
            return
        with self.failures():
            await self.client.put_object(Bucket=self.bucket, Key=key, Body=data)

    async def delete(self, digest: str) -> None:
        with self.failures():
            await self.client.delete_object(Bucket=self.bucket, Key=self.blob_key(digest))

    def read(
        self, digest: str, offset: int = 0, length: int | None = None
    ) -> AsyncGenerator[bytes, None]:
        return self._stream(self.blob_key(digest), offset, length)

    async def _stream(
        self, key: str, offset: int = 0, length: int | None = None
    ) -> AsyncGenerator[bytes, None]:
        """An object's bytes (a range of them) in chunks; FileNotFoundError when it is missing."""
        if length == 0:
            return
        last = "" if length is None else str(offset + length - 1)
        # No Range for a whole object: `bytes=0-` of an empty one would be refused.
        whole = offset == 0 and length is None
        request: GetObjectRequestTypeDef = {"Bucket": self.bucket, "Key": key}
        if not whole:
            request["Range"] = f"bytes={offset}-{last}"
        with self.failures():
            try:
                response = await self.client.get_object(**request)
            except ClientError as error:
                if _is_missing(error):
                    raise FileNotFoundError(key) from None
                raise
            async with response["Body"] as body:
                while chunk := await body.read(READ_CHUNK):
                    yield chunk

    async def _keys(self, prefix: str) -> AsyncGenerator[dict[str, Any], None]:
        """Every object under a prefix, a page (at most 1000) at a time."""
        paginator = self.client.get_paginator("list_objects_v2")
        with self.failures():
            async for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                for entry in page.get("Contents", []):
                    yield dict(entry)

    async def digests(self) -> AsyncGenerator[str, None]:
        root = f"{self._prefix}blobs/"
        async for entry in self._keys(root):
            parts = entry["Key"][len(root) :].split("/")
            # Keys that do not sit where a digest would are not blobs.
            if len(parts) == 3 and parts[2].startswith(parts[1]) and len(parts[2]) > 2:
                yield f"{parts[0]}:{parts[2]}"

    async def modified_at(self, digest: str) -> float | None:
        head = await self._head(self.blob_key(digest))
        return None if head is None else float(head["LastModified"].timestamp())

    async def quarantine(self, digest: str) -> str:
        algorithm, _, encoded = digest.partition(":")
        # A blob quarantined again (stored again, found corrupt again) keeps both copies.
        target = f"{self._prefix}quarantine/{algorithm}/{encoded}/{time.time_ns()}"
        source = self.blob_key(digest)
        with self.failures():
            await self.client.copy_object(
                Bucket=self.bucket, Key=target, CopySource={"Bucket": self.bucket, "Key": source}
            )
            await self.client.delete_object(Bucket=self.bucket, Key=source)
        return f"s3://{self.bucket}/{target}"

    async def start_upload(self, upload_id: str) -> None:
        with self.failures():
            await self.client.put_object(
                Bucket=self.bucket, Key=self._upload_folder(upload_id) + SESSION_MARKER, Body=b""
            )

    async def _session_objects(self, upload_id: str) -> list[dict[str, Any]]:
        """The marker and the chunks of a session, chunks in order; empty when unknown."""
        if not is_upload_id(upload_id):
            return []
        # One entry per append: a session's listing is as long as its client made it.
        return [entry async for entry in self._keys(self._upload_folder(upload_id))]

    async def upload_size(self, upload_id: str) -> int | None:
        objects = await self._session_objects(upload_id)
        return sum(int(entry["Size"]) for entry in objects) if objects else None

    def upload_writer(self, upload_id: str, offset: int) -> UploadWriter:
        return _ObjectWriter(self, f"{self._upload_folder(upload_id)}{offset:0{OFFSET_DIGITS}d}")

    async def read_upload(self, upload_id: str) -> AsyncGenerator[bytes, None]:
        for entry in await self._session_objects(upload_id):
            if not entry["Key"].endswith(SESSION_MARKER):
                async for chunk in self._stream(entry["Key"]):
                    yield chunk

    async def commit_upload(self, upload_id: str, digest: str, size: int) -> None:
        key = self.blob_key(digest)
        if await self._head(key) is None:
            chunks = [
                entry
                for entry in await self._session_objects(upload_id)
                if not entry["Key"].endswith(SESSION_MARKER)
            ]
            if sum(int(entry["Size"]) for entry in chunks) != size:
                raise _changed_while_finishing(digest)
            if _copyable(chunks):
                await self._copy_verified(key, chunks)
            else:
                await self._write_verified(key, digest, self.read_upload(upload_id))
        await self.discard_upload(upload_id)

    async def _copy_verified(self, key: str, chunks: list[dict[str, Any]]) -> None:
        """Join the chunks at `key` inside the object store: their bytes do not come back
        through this process (a docker push's one large PATCH is copied, not sent twice)."""
        writer = _ObjectWriter(self, key)
        for entry in chunks:
            await writer.copy_part(entry["Key"], entry["ETag"])
        await writer.close()

    async def _write_verified(
        self, key: str, digest: str, chunks: AsyncGenerator[bytes, None]
    ) -> None:
        """Stream the bytes to `key`, made visible only when they hash to `digest` again."""
        algorithm = digest.partition(":")[0]
        hasher = new_hasher(algorithm)
        writer = _ObjectWriter(self, key)
        try:
            async with contextlib.aclosing(chunks):
                async for chunk in chunks:
                    hasher.update(chunk)
                    await writer.write(chunk)
        except BaseException:
            await writer.abort()
            raise
        if f"{algorithm}:{hasher.hexdigest()}" != digest:
            await writer.abort()
            raise _changed_while_finishing(digest)
        await writer.close()

    async def abort_multipart(self, key: str, multipart_id: str) -> None:
        """Drop the parts of an unfinished multipart upload; left to the sweep on failure."""
        try:
            with self.failures():
                await self.client.abort_multipart_upload(
                    Bucket=self.bucket, Key=key, UploadId=multipart_id
                )
        except (RegistryError, ClientError) as error:
            log.warning("could not abort the multipart upload of %s: %s", key, error)

    async def discard_upload(self, upload_id: str) -> None:
        if not is_upload_id(upload_id):
            return
        folder = self._upload_folder(upload_id)
        keys = [entry["Key"] for entry in await self._session_objects(upload_id)]
        with self.failures():
            # Multipart uploads of appends that were cut off (a process killed midway).
            paginator = self.client.get_paginator("list_multipart_uploads")
            async for page in paginator.paginate(Bucket=self.bucket, Prefix=folder):
                for unfinished in page.get("Uploads", []):
                    await self.abort_multipart(unfinished["Key"], unfinished["UploadId"])
            for start in range(0, len(keys), DELETE_BATCH):
                batch = keys[start : start + DELETE_BATCH]
                await self.client.delete_objects(
                    Bucket=self.bucket,
                    Delete={"Objects": [{"Key": key} for key in batch], "Quiet": True},
                )

    async def upload_ids(self) -> list[str]:
        root = f"{self._prefix}uploads/"
        paginator = self.client.get_paginator("list_objects_v2")
        found: list[str] = []
        with self.failures():
            async for page in paginator.paginate(Bucket=self.bucket, Prefix=root, Delimiter="/"):
                for folder in page.get("CommonPrefixes", []):
                    upload_id = folder["Prefix"][len(root) :].rstrip("/")
                    if is_upload_id(upload_id):
                        found.append(upload_id)
        return found

    async def upload_modified_at(self, upload_id: str) -> float | None:
        objects = await self._session_objects(upload_id)
        if not objects:
            return None
        return max(float(entry["LastModified"].timestamp()) for entry in objects)
