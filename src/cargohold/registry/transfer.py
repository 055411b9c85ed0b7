"""Copying an installation into another metadata database and blob store (`cargohold copy`),
e.g. from SQLite and a folder into PostgreSQL and an S3 bucket, checked digest by digest.
The source's server is stopped meanwhile; nothing of the source is changed.

- First the blobs: every digest the source's metadata describes (blobs and the bytes of
  manifests), and the bytes of upload sessions in progress. Each blob streams from the
  source store into an upload session of the target, hashed on the way, and is kept only
  when its bytes hash to its digest; it is then read back from the target and hashed again.
  Bytes the target holds already are hashed there and not copied again when right, so a
  copy that stopped midway, or that found bad blobs, runs again cheaply.
- Then the rows, only when every blob is in the target: every table in one transaction
  (`db/transfer.py`), so that the target database holds everything or nothing. A copy cut
  off before the end leaves it empty, and the next run takes it; a target database that
  holds rows is refused.
- Last the check: the rows of every table counted in both databases, and the digests the
  target's rows describe are those read back and hashed.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError

from cargohold.config import Settings
from cargohold.db.engine import (
    async_url,
    is_sqlite,
    migrate,
    open_database,
    schema_revisions,
)
from cargohold.db.integrity import ContentRow, IntegrityStore
from cargohold.db.transfer import TransferStore
from cargohold.oci.digest import Hasher, new_hasher
from cargohold.registry.errors import ManagementError
from cargohold.registry.integrity import (
    algorithm_of,
    content_pages,
    hash_chunk,
    hash_stored,
    human_size,
)
from cargohold.registry.services import open_blob_store
from cargohold.storage import BlobStore

PAGE = 500
# Blobs copied at once: mostly waiting on the stores, small ones held whole.
BLOBS_AT_ONCE = 16
WHOLE_BYTES = 1 << 20
# Larger blobs streamed at once: each holds about two parts of an object store's upload.
STREAMS_AT_ONCE = 4
PROGRESS_EVERY = 1000

Progress = Callable[[str], None]


class CopyRefused(ManagementError):
    """The copy cannot start; the message says what to do."""


def _sqlite_file(url: str) -> Path:
    return Path(make_url(url).database or "").resolve()


def database_location(url: str) -> str:
    """Where a metadata database is, without its password: what tells two apart."""
    if is_sqlite(url):
        return f"sqlite:{_sqlite_file(url)}"
    parsed = async_url(url)
    return URL.create(
        parsed.get_backend_name(),
        parsed.username,
        None,
        parsed.host,
        parsed.port,
        parsed.database,
        parsed.query,
    ).render_as_string()


def blob_store_location(settings: Settings) -> str:
    """Where a blob store is: what tells two apart."""
    if settings.blob_store == "filesystem":
        return f"folder {settings.blob_dir.resolve()}"
    endpoint = settings.s3_endpoint_url or f"AWS S3 in {settings.s3_region}"
    return f"s3://{settings.s3_bucket}/{settings.s3_prefix} at {endpoint}"


@dataclass(slots=True)
class BadBlob:
    """A digest whose bytes were not copied: missing or wrong in the source."""

    digest: str
    reason: str


@dataclass(slots=True)
class TransferReport:
    source: str
    target: str
    blobs: int = 0  # digests the source's rows describe
    blobs_copied: int = 0
    blobs_present: int = 0  # held by the target already, with the right bytes
    bytes_copied: int = 0
    bytes_verified: int = 0  # read back from the target and hashed
    uploads_copied: int = 0
    uploads_present: int = 0
    bad: list[BadBlob] = field(default_factory=list)
    # Rows copied by table, in copy order (empty when the rows were not copied).
    rows: dict[str, int] = field(default_factory=dict)
    # What the final check found different between source and target.
    mismatches: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return bool(self.rows) and not self.bad and not self.mismatches

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 1

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, **asdict(self)}

    def lines(self) -> list[str]:
        """The report for people: each bad blob and mismatch a line, then the totals."""
        lines = [f"from {self.source}", f"to {self.target}"]
        lines += [f"bad: {bad.digest}: {bad.reason}" for bad in self.bad]
        lines.append(
            f"blobs: {self.blobs} described, {self.blobs_copied} copied"
            f" ({human_size(self.bytes_copied)}), {self.blobs_present} already in the target;"
            f" {self.blobs - len(self.bad)} read back from the target and hashed"
            f" ({human_size(self.bytes_verified)})"
        )
        lines.append(
            f"upload sessions: {self.uploads_copied} copied,"
            f" {self.uploads_present} already in the target or without bytes"
        )
        if self.rows:
            counts = ", ".join(f"{table} {count}" for table, count in self.rows.items())
            lines.append(f"rows: {counts} ({sum(self.rows.values())} in all)")
        lines += [f"mismatch: {mismatch}" for mismatch in self.mismatches]
        lines.append(self._outcome())
        return lines

    def _outcome(self) -> str:
        if self.ok:
            return (
                f"copied and checked in {self.seconds:.1f}s: everything matches; start the"
                " nodes on the target"
            )
        if self.bad:
            return (
                f"{len(self.bad)} blob(s) could not be copied, so no rows were: put their right"
                " bytes back in the source (from a backup, or push the image again) or run"
                " `cargohold fsck --repair` on the source (it removes the rows of lost content),"
                " then run the copy again; what the target holds already is not copied again"
            )
        return (
            "the target does not match the source: drop the target database, create it"
            " empty, and run the copy again"
        )


def _first_line(error: BaseException) -> str:
    cause = error.orig if isinstance(error, DBAPIError) else error
    return (str(cause).strip().splitlines() or [type(cause).__name__])[0]


def _revisions(url: str, role: str) -> tuple[str | None, str | None]:
    try:
        return schema_revisions(url)
    except (OSError, DBAPIError) as error:
        raise CopyRefused(
            f"the {role} database ({database_location(url)}) cannot be reached:"
            f" {_first_line(error)}"
        ) from None


def prepare(source: Settings, target: Settings) -> None:
    """Refuse a copy that cannot be made (CopyRefused, saying what to do), then bring the
    target's schema to the newest revision. Touches nothing of the source."""
    source_database = database_location(source.metadata_url)
    if source_database == database_location(target.metadata_url):
        raise CopyRefused(
            f"the source and the target are the same database ({source_database}): give the"
            " target's settings with --config (or CARGOHOLD_* variables) and the source's with"
            " --from-config or --from-data-dir"
        )
    if is_sqlite(source.metadata_url) and not _sqlite_file(source.metadata_url).is_file():
        raise CopyRefused(
            f"the source has no metadata database ({source_database}): give its data folder"
            " with --from-data-dir, or its settings with --from-config"
        )
    current, newest = _revisions(source.metadata_url, "source")
    if current != newest:
        raise CopyRefused(
            f"the source's schema is at revision {current or 'none'}, this version needs"
            f" {newest}: run `cargohold migrate` with the source's settings first"
        )
    current, newest = _revisions(target.metadata_url, "target")
    if current not in (None, newest):
        raise CopyRefused(
            f"the target database holds a schema of revision {current} already: copy into a"
            " new, empty database"
        )
    migrate(target.metadata_url)


async def _open_store(settings: Settings, role: str) -> BlobStore:
    location = blob_store_location(settings)
    try:
        store = await open_blob_store(settings)
    except Exception as error:
        raise CopyRefused(f"the {role} blob store ({location}) cannot be opened: {error}") from None
    try:
        await store.ping()
    except Exception as error:
        await store.close()
        raise CopyRefused(f"the {role} blob store ({location}) does not answer: {error}") from None
    return store


async def copy_installation(
    source: Settings, target: Settings, progress: Progress | None = None
) -> TransferReport:
    """Copy everything of `source` into `target` (after `prepare`), then check it."""
    started = time.monotonic()
    say = progress or (lambda _message: None)
    report = TransferReport(
        source=f"{database_location(source.metadata_url)} and {blob_store_location(source)}",
        target=f"{database_location(target.metadata_url)} and {blob_store_location(target)}",
    )
    async with contextlib.AsyncExitStack() as resources:
        source_database = open_database(source.metadata_url)
        resources.push_async_callback(source_database.dispose)
        target_database = open_database(target.metadata_url)
        resources.push_async_callback(target_database.dispose)
        source_rows, target_rows = TransferStore(source_database), TransferStore(target_database)
        held = {table: count for table, count in (await target_rows.row_counts()).items() if count}
        if held:
            tables = ", ".join(f"{count} in {table}" for table, count in held.items())
            raise CopyRefused(
                f"the target database already holds rows ({tables}): copy into a new, empty"
                " database (a copy that was cut off leaves it empty, and runs again on it)"
            )
        source_store = await _open_store(source, "source")
        resources.push_async_callback(source_store.close)
        target_store = await _open_store(target, "target")
        resources.push_async_callback(target_store.close)
        source_content = IntegrityStore(source_database)
        target_content = IntegrityStore(target_database)
        copier = _BlobCopier(
            source_store,
            target_store,
            same_store=blob_store_location(source) == blob_store_location(target),
            report=report,
        )
        await copier.copy_content(source_content, say)
        await copier.copy_uploads(source_content)
        if not report.bad:
            say("blobs copied and checked; copying the rows")
            await target_rows.copy_rows_from(source_rows)
            await _check(source_rows, target_rows, source_content, target_content, report)
    report.seconds = round(time.monotonic() - started, 3)
    return report


async def _check(
    source_rows: TransferStore,
    target_rows: TransferStore,
    source_content: IntegrityStore,
    target_content: IntegrityStore,
    report: TransferReport,
) -> None:
    """The rows of every table, counted in both; the digests the target's rows describe,
    with their sizes, are those of the source, each read back and hashed before."""
    expected, found = await source_rows.row_counts(), await target_rows.row_counts()
    report.rows = found
    report.mismatches += [
        f"{table}: {count} rows in the source, {found[table]} in the target"
        for table, count in expected.items()
        if found[table] != count
    ]
    async with contextlib.aclosing(content_pages(target_content, PAGE)) as described:
        async for page in content_pages(source_content, PAGE):
            if await anext(described, None) != page:
                first = page.rows[0].digest if page.rows else "the start"
                report.mismatches.append(
                    f"the target's rows describe other {page.kind}s than the source's,"
                    f" from {first} on"
                )
                return
        if await anext(described, None) is not None:
            report.mismatches.append("the target's rows describe content the source's do not")


class _BlobCopier:
    def __init__(
        self, source: BlobStore, target: BlobStore, *, same_store: bool, report: TransferReport
    ) -> None:
        self._source = source
        self._target = target
        # One store under two sets of rows (only the database moves): checked, not copied.
        self._same_store = same_store
        self._report = report
        self._streams = asyncio.Semaphore(STREAMS_AT_ONCE)

    async def copy_content(self, queries: IntegrityStore, say: Progress) -> None:
        limit = asyncio.Semaphore(BLOBS_AT_ONCE)

        async def transfer(row: ContentRow) -> None:
            async with limit:
                await self._transfer(row)

        async for page in content_pages(queries, PAGE):
            await asyncio.gather(*(transfer(row) for row in page.rows))
            before = self._report.blobs
            self._report.blobs += len(page.rows)
            if self._report.blobs // PROGRESS_EVERY > before // PROGRESS_EVERY:
                say(
                    f"{self._report.blobs} blobs: {self._report.blobs_copied} copied"
                    f" ({human_size(self._report.bytes_copied)}),"
                    f" {self._report.blobs_present} already there, {len(self._report.bad)} bad"
                )
        self._report.bad.sort(key=lambda bad: bad.digest)

    async def _transfer(self, row: ContentRow) -> None:
        digest = row.digest
        algorithm = algorithm_of(digest)
        if algorithm is None:
            self._bad(digest, "it is not a valid digest")
            return
        held = await self._hashed(digest, algorithm)
        if held is not None and held[0] == digest:
            self._report.blobs_present += 1
        elif self._same_store:
            self._bad(digest, f"its bytes hash to {held[0]}" if held else "the store lacks it")
            return
        else:
            if held is not None:
                # Bytes that came from elsewhere: kept aside, as fsck does.
                await self._target.quarantine(digest)
            copied = await self._copy(row, algorithm)
            if copied is None:
                return
            self._report.blobs_copied += 1
            self._report.bytes_copied += copied
            held = await self._hashed(digest, algorithm)  # read back
            if held is None or held[0] != digest:
                given = f"bytes that hash to {held[0]}" if held else "nothing"
                self._bad(digest, f"read back, the target store gives {given}")
                return
        size = held[1]
        if not row.smallest == row.largest == size:
            recorded = row.smallest if row.smallest != size else row.largest
            self._bad(
                digest,
                f"its rows record {recorded} bytes but it holds {size}"
                " (`cargohold fsck --repair` on the source corrects the rows)",
            )
        else:
            self._report.bytes_verified += size

    async def _hashed(self, digest: str, algorithm: str) -> tuple[str, int] | None:
        """What the target's bytes of `digest` hash to, and their size; None when absent."""
        try:
            return await hash_stored(self._target, digest, algorithm)
        except FileNotFoundError:
            return None

    async def _copy(self, row: ContentRow, algorithm: str) -> int | None:
        """Copy the source's bytes of a digest into the target, where they become the blob
        only if they hash to it: their size, or None (and the digest is reported)."""
        digest = row.digest
        try:
            if row.largest <= WHOLE_BYTES:
                data = await self._read_small(digest)
                if data is not None:
                    return await self._put_whole(digest, algorithm, data)
            async with self._streams:
                return await self._stream(digest, algorithm)
        except FileNotFoundError:
            self._bad(digest, "the source store does not hold it")
        except OSError as error:  # a bad sector, a file that lost its permissions
            self._bad(digest, f"the source's bytes cannot be read: {error}")
        return None

    async def _read_small(self, digest: str) -> bytes | None:
        """The source's bytes whole; None when there are more than WHOLE_BYTES of them
        (more than the rows record)."""
        chunks: list[bytes] = []
        size = 0
        async with contextlib.aclosing(self._source.read(digest)) as stream:
            async for chunk in stream:
                size += len(chunk)
                if size > WHOLE_BYTES:
                    return None
                chunks.append(chunk)
        return b"".join(chunks)

    async def _put_whole(self, digest: str, algorithm: str, data: bytes) -> int | None:
        """A small blob in one write (an object store's one request, not a session's ten)."""
        hasher = new_hasher(algorithm)
        await hash_chunk(hasher, data)
        if not self._source_matches(digest, algorithm, hasher):
            return None
        await self._target.put_bytes(digest, data)
        return len(data)

    async def _stream(self, digest: str, algorithm: str) -> int | None:
        """Stream the source's bytes into an upload session of the target, hashing them, and
        commit it only when they hash to `digest`: never a whole blob in memory."""
        upload_id = uuid.uuid4().hex
        hasher = new_hasher(algorithm)
        size = 0
        kept = False
        await self._target.start_upload(upload_id)
        try:
            async with self._target.upload_writer(upload_id, 0) as writer:
                async for chunk in self._source.read(digest):
                    await hash_chunk(hasher, chunk)
                    await writer.write(chunk)
                    size += len(chunk)
            if not self._source_matches(digest, algorithm, hasher):
                return None
            await self._target.commit_upload(upload_id, digest, size)
            kept = True
        finally:
            if not kept:
                await self._target.discard_upload(upload_id)
        return size

    def _source_matches(self, digest: str, algorithm: str, hasher: Hasher) -> bool:
        actual = f"{algorithm}:{hasher.hexdigest()}"
        if actual != digest:
            self._bad(digest, f"the source's bytes hash to {actual}; not copied")
        return actual == digest

    def _bad(self, digest: str, reason: str) -> None:
        self._report.bad.append(BadBlob(digest, reason))

    async def copy_uploads(self, queries: IntegrityStore) -> None:
        """The bytes of upload sessions in progress, so that their clients can finish them
        on the target. Sessions carry no digest yet: their bytes are copied as they are."""
        after: str | None = None
        while rows := await queries.upload_rows(after, PAGE):
            after = rows[-1].id
            for row in rows:
                await self._copy_upload(row.id)

    async def _copy_upload(self, upload_id: str) -> None:
        size = await self._source.upload_size(upload_id)
        # A session without bytes stays so (fsck reports it on either side).
        if self._same_store or size is None or await self._target.upload_size(upload_id) == size:
            self._report.uploads_present += 1
            return
        await self._target.discard_upload(upload_id)  # a part of one, from a copy cut off
        await self._target.start_upload(upload_id)
        async with self._target.upload_writer(upload_id, 0) as writer:
            async for chunk in self._source.read_upload(upload_id):
                await writer.write(chunk)
        self._report.uploads_copied += 1
