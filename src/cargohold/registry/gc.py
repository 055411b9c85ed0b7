"""Online garbage collection (`cargohold gc`, `POST /api/v1/gc`, and on a schedule): what no
tag, index or referrer needs any more is deleted while pushes and pulls go on.

What is collected, image by image (manifests, links and tags belong to an image; blob rows
and stored bytes are shared by digest):

1. Manifests, only in repositories whose `untagged_manifests` is `delete`: those not
   reachable from a root. Roots are tagged manifests and manifests pushed within the grace
   period; what a kept manifest lists (an index's children) is kept, and so are the
   referrers of a kept manifest (their subject), transitively.
2. Links (`image_blobs`): a blob linked to an image longer ago than the grace period that no
   manifest of that image points to.
3. Blob rows that no image links to any more (and older than the grace period).
4. Stored bytes of removed blob rows and manifests, unless a row of any image still
   describes the digest.

Why a push running at the same time is never broken:

- Every deletion of rows runs in a write transaction whose WHERE clause asks again whether
  the rows are unused; a manifest push checks, in its own write transaction, that its image
  holds everything the manifest points to, and a mount checks that its source still holds
  the blob. These write transactions run one at a time (SQLite writes one at a time; on
  PostgreSQL they take one lock, `Store._write_references`): either the push
  commits first and the deletion finds the rows used, or the deletion commits first and the
  push is refused (`MANIFEST_BLOB_UNKNOWN`, the client uploads again), never a manifest
  whose content is gone.
- Manifests are chosen for removal in the same write transaction that deletes them, from
  the image as it is then.
- Bytes are removed under the digest's content lock, which every writer holds while it
  stores bytes and writes their rows (`registry/content.py`), after checking that no row
  describes them: an upload finishing with the same digest either wrote its row first (the
  bytes stay) or stores its bytes again after the removal.
- The grace period protects what was uploaded (or linked again) but is not referenced yet:
  a link counts from the last upload or mount of the blob into that image; manifests
  pushed within it are roots. Even with no grace at all, nothing is corrupted: a push
  whose blobs were collected between its upload and its manifest is refused cleanly.
- One collection at a time across processes and nodes: a lease row in the database, taken
  and renewed in write transactions between batches; a run that loses it stops. Deletions
  go in batches of `batch_size` rows, each a short transaction, so pushes wait little.

A dry run makes the same decisions without deleting, predicting what the earlier phases
would free for the later ones; it takes no lease.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from cargohold.db.gc import BlobRow, GcStore, ImageManifests, ManifestNode
from cargohold.db.leases import LeaseRow
from cargohold.registry.content import StoredContent
from cargohold.registry.errors import Conflict
from cargohold.registry.leases import Lease, LeaseTaken
from cargohold.storage import BlobStore

log = logging.getLogger(__name__)

LEASE = "garbage-collection"
# Renewed after every batch: a holder that stops renewing for this long has died.
LEASE_SECONDS = 300.0
BATCH_SIZE = 500


class CollectionRunning(Conflict):
    """Another process holds the collection lease."""

    def __init__(self, lease: LeaseRow) -> None:
        left = max(0.0, lease.expires_at - time.time())
        super().__init__(
            f"a garbage collection is running ({lease.holder}); try again when it is done"
            f" (its lease lapses in {left:.0f}s if it stopped)"
        )


@dataclass(frozen=True, slots=True)
class CollectedManifest:
    image: str
    digest: str
    size: int


@dataclass(frozen=True, slots=True)
class CollectedBlob:
    digest: str
    size: int


@dataclass(slots=True)
class GcReport:
    dry_run: bool
    grace_seconds: float
    manifests: list[CollectedManifest] = field(default_factory=list)
    # Links of images to blobs no manifest of theirs uses.
    links: int = 0
    blobs: list[CollectedBlob] = field(default_factory=list)
    # Stored files deleted (blobs and manifest bytes) and their bytes.
    files: int = 0
    bytes_freed: int = 0
    seconds: float = 0.0

    def sort(self) -> None:
        self.manifests.sort(key=lambda entry: (entry.image, entry.digest))
        self.blobs.sort(key=lambda entry: entry.digest)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def reachable(image: ImageManifests, cutoff: float) -> set[str]:
    """The digests of the image's manifests to keep: the roots (tagged, or pushed at or
    after `cutoff`), what a kept manifest lists as children, and the referrers of a kept
    manifest."""
    by_digest = {node.digest: node for node in image.manifests}
    referrers: dict[str, list[str]] = defaultdict(list)
    for node in image.manifests:
        if node.subject_digest is not None:
            referrers[node.subject_digest].append(node.digest)
    kept: set[str] = set()
    pending = [node.digest for node in image.manifests if node.tagged or node.created_at >= cutoff]
    # Bounded: a digest is expanded once, and each expansion adds its edges once.
    while pending:
        digest = pending.pop()
        if digest in kept:
            continue
        kept.add(digest)
        if digest in by_digest:
            pending.extend(by_digest[digest].children)
        pending.extend(referrers[digest])
    return kept


def _unreachable(image: ImageManifests, cutoff: float) -> list[ManifestNode]:
    kept = reachable(image, cutoff)
    return sorted((node for node in image.manifests if node.digest not in kept), key=lambda n: n.id)


def _chunks(items: Sequence[str], size: int) -> Iterable[Sequence[str]]:
    return (items[start : start + size] for start in range(0, len(items), size))


@dataclass(slots=True)
class _Prediction:
    """What a dry run expects the earlier phases to free for the later ones."""

    # Links each blob digest loses with the manifests removed.
    lost_links: Counter[str] = field(default_factory=Counter)
    # Manifest rows of each digest removed.
    lost_manifests: Counter[str] = field(default_factory=Counter)


class GarbageCollector:
    def __init__(
        self,
        queries: GcStore,
        store: BlobStore,
        content: StoredContent,
        lease: Lease,
        *,
        grace_seconds: float,
        batch_size: int = BATCH_SIZE,
    ) -> None:
        self._queries = queries
        self._store = store
        self._content = content
        self._lease = lease
        self.grace_seconds = grace_seconds
        self._batch = batch_size

    async def run(self, *, dry_run: bool = False, grace_seconds: float | None = None) -> GcReport:
        """Collect now (or, with `dry_run`, report what would go); raise CollectionRunning
        when another process is collecting."""
        report = GcReport(dry_run, self.grace_seconds if grace_seconds is None else grace_seconds)
        if dry_run:
            await self._collect(report)
            return report
        try:
            return await self._lease.run(lambda: self._collect_and_log(report))
        except LeaseTaken as taken:
            raise CollectionRunning(taken.lease) from None

    async def run_if_due(self, interval_seconds: float) -> GcReport | None:
        """The scheduled collection (see `Lease.run_if_due`); None when it did not run."""
        report = GcReport(dry_run=False, grace_seconds=self.grace_seconds)
        return await self._lease.run_if_due(lambda: self._collect_and_log(report), interval_seconds)

    async def _collect_and_log(self, report: GcReport) -> GcReport:
        await self._collect(report)
        log.info(
            "garbage collection removed %d manifests, %d links, %d blobs, %d files (%d bytes)"
            " in %.1fs",
            len(report.manifests),
            report.links,
            len(report.blobs),
            report.files,
            report.bytes_freed,
            report.seconds,
        )
        return report

    async def _renew(self) -> None:
        try:
            await self._lease.renew()
        except LeaseTaken as taken:  # stalled past the lease; another process took over
            raise CollectionRunning(taken.lease) from None

    async def _collect(self, report: GcReport) -> None:
        started = time.monotonic()
        cutoff = time.time() - report.grace_seconds
        prediction = _Prediction()
        await self._prune_manifests(report, cutoff, prediction)
        await self._remove_links(report, cutoff, prediction)
        removed_blobs = await self._remove_blobs(report, cutoff, prediction)
        if report.dry_run:
            await self._predict_files(report, removed_blobs, prediction)
        report.sort()
        report.seconds = round(time.monotonic() - started, 3)

    # 1. Manifests

    async def _prune_manifests(
        self, report: GcReport, cutoff: float, prediction: _Prediction
    ) -> None:
        after = 0
        while image_ids := await self._queries.images_to_prune(cutoff, after, self._batch):
            after = image_ids[-1]
            for image_id in image_ids:
                if report.dry_run:
                    await self._predict_image(report, image_id, cutoff, prediction)
                else:
                    await self._prune_image(report, image_id, cutoff)

    async def _prune_image(self, report: GcReport, image_id: int, cutoff: float) -> None:
        # Bounded: each pass deletes a batch of the image's manifests older than `cutoff`.
        while True:
            await self._renew()
            image, chosen = await self._queries.prune_manifests(
                image_id,
                lambda image: _unreachable(image, cutoff)[: self._batch],
                delete_chosen=True,
            )
            report.manifests.extend(
                CollectedManifest(image.name, node.digest, node.size) for node in chosen
            )
            await self._free_bytes(report, [node.digest for node in chosen])
            if len(chosen) < self._batch:
                return

    async def _predict_image(
        self, report: GcReport, image_id: int, cutoff: float, prediction: _Prediction
    ) -> None:
        image, chosen = await self._queries.prune_manifests(
            image_id, lambda image: _unreachable(image, cutoff), delete_chosen=False
        )
        chosen_ids = {node.id for node in chosen}
        still_used = {
            digest for node in image.manifests if node.id not in chosen_ids for digest in node.blobs
        }
        for node in chosen:
            report.manifests.append(CollectedManifest(image.name, node.digest, node.size))
            prediction.lost_manifests[node.digest] += 1
        for digest in {digest for node in chosen for digest in node.blobs} - still_used:
            linked_at = image.links.get(digest)
            if linked_at is not None and linked_at < cutoff:
                prediction.lost_links[digest] += 1
                report.links += 1

    # 2. Links

    async def _remove_links(self, report: GcReport, cutoff: float, prediction: _Prediction) -> None:
        after = None
        # Bounded: the key only grows.
        while rows := await self._queries.unused_links(after, cutoff, self._batch):
            after = rows[-1]
            if report.dry_run:
                report.links += len(rows)
                prediction.lost_links.update(row.digest for row in rows)
            else:
                await self._renew()
                report.links += await self._queries.delete_unused_links(rows, cutoff)

    # 3. Blob rows (and 4. their bytes)

    async def _remove_blobs(
        self, report: GcReport, cutoff: float, prediction: _Prediction
    ) -> list[BlobRow]:
        removed: list[BlobRow] = []
        after = None
        # Bounded: the key only grows.
        while rows := await self._queries.unlinked_blobs(after, cutoff, self._batch):
            after = rows[-1].digest
            if report.dry_run:
                removed.extend(rows)
                continue
            await self._renew()
            gone = await self._queries.delete_unlinked_blobs([r.digest for r in rows], cutoff)
            removed.extend(gone)
            await self._free_bytes(report, [row.digest for row in gone])
        if report.dry_run:
            removed.extend(await self._predict_unlinked(cutoff, prediction))
        report.blobs.extend(CollectedBlob(row.digest, row.size) for row in removed)
        return removed

    async def _predict_unlinked(self, cutoff: float, prediction: _Prediction) -> list[BlobRow]:
        """Blob rows that lose every link with the links the dry run would remove."""
        unlinked: list[BlobRow] = []
        for digests in _chunks(sorted(prediction.lost_links), self._batch):
            counts = await self._queries.link_counts(digests)
            rows = await self._queries.blob_rows(digests)
            unlinked.extend(
                rows[digest]
                for digest in digests
                if digest in rows
                and rows[digest].created_at < cutoff
                and counts.get(digest, 0) == prediction.lost_links[digest]
                # Found unlinked already by the scan: counted there.
                and counts.get(digest, 0) > 0
            )
        return unlinked

    async def _free_bytes(self, report: GcReport, digests: list[str]) -> None:
        freed = await self._content.remove_unless_described(digests)
        report.files += len(freed)
        report.bytes_freed += sum(freed.values())

    async def _predict_files(
        self, report: GcReport, removed_blobs: list[BlobRow], prediction: _Prediction
    ) -> None:
        """The stored files that no row would describe once the rows are gone."""
        removed = {row.digest for row in removed_blobs}
        candidates = sorted(removed | set(prediction.lost_manifests))
        for digests in _chunks(candidates, self._batch):
            manifest_counts = await self._queries.manifest_counts(digests)
            blob_rows = await self._queries.blob_rows(digests)
            for digest in digests:
                if digest in blob_rows and digest not in removed:
                    continue
                if manifest_counts.get(digest, 0) > prediction.lost_manifests[digest]:
                    continue
                size = await self._store.size(digest)
                if size is not None:
                    report.files += 1
                    report.bytes_freed += size
