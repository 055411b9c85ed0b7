"""Integrity checks (`cargohold fsck`): every stored byte matches its digest, and the metadata
and the blob store agree; on request, what disagrees is repaired.

The check reads every blob and manifest the metadata describes, hashing the stored bytes as
they stream (never whole in memory, several at once), walks the store's files in batches to
find those no row describes, and looks at upload sessions and at tags and manifests that
point to content their image lacks. Memory grows with what is found, not with the store.

Repairs never lose evidence and never serve bad bytes: corrupt content is moved to the
store's quarantine before its rows go (clients then get 404, and a push heals it); rows whose
bytes are gone are removed (a manifest's tags with it); files no row describes are deleted;
stale upload sessions are swept. Files and sessions younger than the grace period are left
alone, so that a check never takes a push in flight for debris. Each finding is checked
again just before it is repaired, so a repair can run while the server serves.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from cargohold.db.integrity import ContentRow, IntegrityStore, TagRow
from cargohold.oci.digest import Digest, Hasher, new_hasher
from cargohold.oci.errors import RegistryError
from cargohold.storage import BlobStore

DEFAULT_GRACE_SECONDS = 3600.0
BATCH_SIZE = 500
HASH_WORKERS = 4
# Chunks at least this large are hashed in a thread (hashlib releases the GIL for them).
THREADED_HASH_BYTES = 64 * 1024
PROGRESS_EVERY = 10_000

Progress = Callable[[str], None]


@dataclass(slots=True)
class CorruptContent:
    """Stored bytes that do not hash to their digest."""

    digest: str
    reason: str
    actual: str | None  # what the stored bytes hash to (None: they could not be hashed)
    size: int | None  # how many bytes are stored
    kinds: list[str]  # described as "blob", "manifest"
    images: list[str]  # the images that hold it
    quarantined_to: str | None = None
    repaired: bool = False


@dataclass(slots=True)
class MissingContent:
    """Rows whose bytes the store does not hold."""

    digest: str
    kinds: list[str]
    images: list[str]
    repaired: bool = False


@dataclass(slots=True)
class WrongSize:
    """Bytes that match their digest but not the size the rows record."""

    digest: str
    recorded: int
    actual: int
    repaired: bool = False


@dataclass(slots=True)
class Orphan:
    """A stored blob that neither a blob row nor a manifest row describes."""

    digest: str
    size: int | None
    repaired: bool = False


@dataclass(slots=True)
class StaleUpload:
    id: str
    reason: str  # "expired", "no bytes" (a session without its file), "no session"
    repaired: bool = False


@dataclass(slots=True)
class DanglingTag:
    image: str
    tag: str
    digest: str
    repaired: bool = False


@dataclass(slots=True)
class IncompleteManifest:
    """A manifest of a hosted repository whose image lacks content it points to: pulls of
    it fail until the missing content is pushed again."""

    image: str
    manifest: str
    missing: list[str]


@dataclass(slots=True)
class FsckReport:
    repair: bool
    blobs_checked: int = 0
    manifests_checked: int = 0
    bytes_checked: int = 0
    files_checked: int = 0
    uploads_checked: int = 0
    corrupt: list[CorruptContent] = field(default_factory=list)
    missing: list[MissingContent] = field(default_factory=list)
    wrong_size: list[WrongSize] = field(default_factory=list)
    orphans: list[Orphan] = field(default_factory=list)
    stale_uploads: list[StaleUpload] = field(default_factory=list)
    dangling_tags: list[DanglingTag] = field(default_factory=list)
    # Left alone, being younger than the grace period: files and sessions without rows.
    recent_unreferenced: int = 0
    # Not counted as problems: a repair cannot bring content back, a push of it can.
    incomplete_manifests: list[IncompleteManifest] = field(default_factory=list)
    # Repairs that failed.
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def problems(self) -> int:
        return (
            len(self.corrupt)
            + len(self.missing)
            + len(self.wrong_size)
            + len(self.orphans)
            + len(self.stale_uploads)
            + len(self.dangling_tags)
        )

    @property
    def clean(self) -> bool:
        return self.problems == 0

    @property
    def repaired(self) -> bool:
        """Whether every problem found was repaired."""
        return self.repair and not self.errors

    @property
    def exit_code(self) -> int:
        """0: clean, or every problem repaired; 1: problems remain."""
        return 0 if self.clean or self.repaired else 1

    def to_json(self) -> dict[str, Any]:
        return {
            "clean": self.clean,
            "problems": self.problems,
            "repaired": self.repaired if self.problems else False,
            **asdict(self),
        }


@dataclass(frozen=True, slots=True)
class ContentPage:
    """A page of the digests the metadata describes, of one kind ("blob" or "manifest")."""

    kind: str
    rows: list[ContentRow]  # to check: manifest digests that are also blob rows are not
    listed: int  # rows the page listed


async def content_pages(queries: IntegrityStore, batch: int) -> AsyncGenerator[ContentPage, None]:
    """Every digest the metadata describes, once, in pages of `batch`: blob rows by digest,
    then manifest digests (in any image) by digest, without those that are blob rows too."""
    after: str | None = None
    while rows := await queries.blob_rows(after, batch):
        after = rows[-1].digest
        yield ContentPage("blob", rows, len(rows))
    after = None
    while rows := await queries.manifest_digests(after, batch):
        after = rows[-1].digest
        seen = await queries.blob_rows_among([row.digest for row in rows])
        yield ContentPage("manifest", [row for row in rows if row.digest not in seen], len(rows))


async def hash_chunk(hasher: Hasher, chunk: bytes) -> None:
    """Large chunks are hashed in a thread (hashlib releases the GIL for them), so that
    several streams hash on several cores."""
    if len(chunk) >= THREADED_HASH_BYTES:
        await asyncio.to_thread(hasher.update, chunk)
    else:
        hasher.update(chunk)


async def hash_stored(store: BlobStore, digest: str, algorithm: str) -> tuple[str, int]:
    """What the stored bytes of `digest` hash to with `algorithm`, and how many they are,
    read as they stream. FileNotFoundError when the store does not hold them."""
    hasher = new_hasher(algorithm)
    size = 0
    async for chunk in store.read(digest):
        size += len(chunk)
        await hash_chunk(hasher, chunk)
    return f"{algorithm}:{hasher.hexdigest()}", size


class FsckService:
    def __init__(
        self,
        queries: IntegrityStore,
        store: BlobStore,
        *,
        upload_ttl_seconds: float,
        grace_seconds: float = DEFAULT_GRACE_SECONDS,
        batch_size: int = BATCH_SIZE,
        workers: int = HASH_WORKERS,
    ) -> None:
        self._queries = queries
        self._store = store
        self._upload_ttl = upload_ttl_seconds
        self._grace = grace_seconds
        self._batch = batch_size
        self._workers = workers

    async def run(self, *, repair: bool = False, progress: Progress | None = None) -> FsckReport:
        """Check everything; with `repair`, repair what was found."""
        started = time.monotonic()
        report = FsckReport(repair=repair)
        say = progress or (lambda _message: None)
        await self._check_content(report, say)
        await self._check_files(report)
        await self._check_uploads(report)
        dangling = await self._check_tags(report)
        if repair:
            await self._repair(report, dangling)
        await self._check_references(report)
        report.seconds = round(time.monotonic() - started, 3)
        return report

    # Checks

    async def _check_content(self, report: FsckReport, say: Progress) -> None:
        """Every blob row and every manifest digest: its bytes are there and match it."""
        async for page in content_pages(self._queries, self._batch):
            await self._verify_all(page.rows, page.kind, report)
            if page.kind == "manifest":
                report.manifests_checked += page.listed
                continue
            before = report.blobs_checked
            report.blobs_checked += page.listed
            if report.blobs_checked // PROGRESS_EVERY > before // PROGRESS_EVERY:
                say(f"checked {report.blobs_checked} blobs ({human_size(report.bytes_checked)})")
        # Checked several at a time: listed in a stable order.
        report.corrupt.sort(key=lambda entry: entry.digest)
        report.missing.sort(key=lambda entry: entry.digest)
        report.wrong_size.sort(key=lambda entry: entry.digest)

    async def _verify_all(self, rows: Sequence[ContentRow], kind: str, report: FsckReport) -> None:
        limit = asyncio.Semaphore(self._workers)

        async def verify(row: ContentRow) -> None:
            async with limit:
                await self._verify(row, kind, report)

        await asyncio.gather(*(verify(row) for row in rows))

    async def _verify(self, row: ContentRow, kind: str, report: FsckReport) -> None:
        algorithm = algorithm_of(row.digest)
        if algorithm is None:
            report.corrupt.append(
                await self._corrupt(row.digest, kind, "it is not a valid digest", None, None)
            )
            return
        try:
            actual, size = await hash_stored(self._store, row.digest, algorithm)
        except FileNotFoundError:
            blob_images, manifest_images = await self._queries.holders(row.digest)
            report.missing.append(
                MissingContent(
                    row.digest,
                    _kinds(kind, manifest_images),
                    sorted({*blob_images, *manifest_images}),
                )
            )
            return
        except OSError as error:  # a bad sector, a file that lost its permissions
            report.corrupt.append(
                await self._corrupt(
                    row.digest, kind, f"its stored bytes cannot be read: {error}", None, None
                )
            )
            return
        report.bytes_checked += size
        if actual != row.digest:
            report.corrupt.append(
                await self._corrupt(
                    row.digest, kind, f"its stored bytes hash to {actual}", actual, size
                )
            )
        elif not row.smallest == row.largest == size:
            recorded = row.smallest if row.smallest != size else row.largest
            report.wrong_size.append(WrongSize(row.digest, recorded, size))

    async def _corrupt(
        self, digest: str, kind: str, reason: str, actual: str | None, size: int | None
    ) -> CorruptContent:
        blob_images, manifest_images = await self._queries.holders(digest)
        return CorruptContent(
            digest,
            reason,
            actual,
            size,
            _kinds(kind, manifest_images),
            sorted({*blob_images, *manifest_images}),
        )

    async def _check_files(self, report: FsckReport) -> None:
        """Stored blobs that no row describes."""
        batch: list[str] = []
        async for digest in self._store.digests():
            batch.append(digest)
            if len(batch) >= self._batch:
                await self._find_orphans(batch, report)
                batch = []
        if batch:
            await self._find_orphans(batch, report)

    async def _find_orphans(self, digests: list[str], report: FsckReport) -> None:
        report.files_checked += len(digests)
        described = await self._queries.described_among(digests)
        for digest in digests:
            if digest in described:
                continue
            modified = await self._store.modified_at(digest)
            if modified is None:
                continue  # gone since it was listed
            if time.time() - modified < self._grace:
                report.recent_unreferenced += 1
                continue
            report.orphans.append(Orphan(digest, await self._store.size(digest)))

    async def _check_uploads(self, report: FsckReport) -> None:
        """Sessions past their time to live or without their bytes, and stored session bytes
        without a session."""
        now = time.time()
        after: str | None = None
        while rows := await self._queries.upload_rows(after, self._batch):
            after = rows[-1].id
            report.uploads_checked += len(rows)
            for row in rows:
                if row.created_at < now - self._upload_ttl:
                    report.stale_uploads.append(StaleUpload(row.id, "expired"))
                elif await self._store.upload_size(row.id) is None:
                    if now - row.created_at >= self._grace:
                        report.stale_uploads.append(StaleUpload(row.id, "no bytes"))
                    else:
                        report.recent_unreferenced += 1
        stored = await self._store.upload_ids()
        for start in range(0, len(stored), self._batch):
            ids = stored[start : start + self._batch]
            with_rows = await self._queries.upload_rows_among(ids)
            for upload_id in ids:
                if upload_id in with_rows:
                    continue
                modified = await self._store.upload_modified_at(upload_id)
                if modified is None:
                    continue
                if now - modified < self._grace:
                    report.recent_unreferenced += 1
                else:
                    report.stale_uploads.append(StaleUpload(upload_id, "no session"))

    async def _check_tags(self, report: FsckReport) -> list[TagRow]:
        rows = await self._queries.dangling_tags()
        report.dangling_tags = [DanglingTag(row.image, row.tag, row.digest) for row in rows]
        return rows

    async def _check_references(self, report: FsckReport) -> None:
        incomplete: dict[tuple[str, str], IncompleteManifest] = {}
        for reference in await self._queries.missing_references():
            key = (reference.image, reference.manifest)
            entry = incomplete.setdefault(key, IncompleteManifest(*key, []))
            entry.missing.append(reference.digest)
        report.incomplete_manifests = list(incomplete.values())

    # Repairs

    async def _repair(self, report: FsckReport, dangling: list[TagRow]) -> None:
        for corrupt in report.corrupt:
            await self._attempt(report, f"quarantine {corrupt.digest}", self._quarantine(corrupt))
        for missing in report.missing:
            await self._attempt(report, f"forget {missing.digest}", self._forget(missing))
        for wrong in report.wrong_size:
            await self._queries.correct_size(wrong.digest, wrong.actual)
            wrong.repaired = True
        for orphan in report.orphans:
            await self._attempt(report, f"delete {orphan.digest}", self._delete_orphan(orphan))
        for upload in report.stale_uploads:
            await self._attempt(report, f"remove upload {upload.id}", self._sweep(upload))
        for tag, row in zip(report.dangling_tags, dangling, strict=True):
            await self._queries.delete_dangling_tag(row.image_id, row.tag, row.digest)
            tag.repaired = True

    async def _attempt(self, report: FsckReport, what: str, repair: Awaitable[None]) -> None:
        try:
            await repair
        except OSError as error:
            report.errors.append(f"{what}: {error}")

    async def _quarantine(self, corrupt: CorruptContent) -> None:
        # The bytes first: were the rows removed first, the file would pass for an orphan.
        stored = algorithm_of(corrupt.digest) is not None
        if stored and await self._store.size(corrupt.digest) is not None:
            corrupt.quarantined_to = await self._store.quarantine(corrupt.digest)
        await self._queries.forget_blob(corrupt.digest)
        await self._queries.forget_manifest(corrupt.digest)
        corrupt.repaired = True

    async def _forget(self, missing: MissingContent) -> None:
        if await self._store.size(missing.digest) is not None:
            raise FileExistsError(f"{missing.digest} is stored again; check again")
        await self._queries.forget_blob(missing.digest)
        await self._queries.forget_manifest(missing.digest)
        missing.repaired = True

    async def _delete_orphan(self, orphan: Orphan) -> None:
        if await self._queries.described_among([orphan.digest]):
            return  # described since: no longer an orphan
        await self._store.delete(orphan.digest)
        orphan.repaired = True

    async def _sweep(self, upload: StaleUpload) -> None:
        if upload.reason == "no session" and await self._queries.upload_rows_among([upload.id]):
            return  # a session was opened for it since
        await self._store.discard_upload(upload.id)
        await self._queries.delete_upload(upload.id)
        upload.repaired = True


def algorithm_of(digest: str) -> str | None:
    """The algorithm of a valid digest of ours; None for anything else (a row written by
    hand): such a digest names no file of the store."""
    try:
        return Digest.parse(digest).algorithm
    except RegistryError:
        return None


def _kinds(kind: str, manifest_images: list[str]) -> list[str]:
    return ["blob", "manifest"] if kind == "blob" and manifest_images else [kind]


def human_size(count: int) -> str:
    """A byte count for people: `1.5 GiB`."""
    size = float(count)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if size < 1024:
            return f"{count} bytes" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"
