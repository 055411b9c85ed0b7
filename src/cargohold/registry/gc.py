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

What a collection costs follows what changed, not the size of the store: every write that
may leave a row unused names it as a candidate in its own transaction (db/candidates.py),
and a collection reads only the candidates, in order manifests, links, blobs. A candidate
manifest is judged on the manifests that could keep it (those that list it and its
subject, transitively), not on its whole image. Each candidate judged goes (removed, or
found in use), but those the grace period protects, which stay for a later collection.
Removing a manifest names its links and the manifests it lists and its referrers;
removing a link names its blob row: the same collection reads those too, so that an index
goes with its children and their blobs in one run.

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
  the image as it is then; a candidate found in use is dropped in that transaction too, so
  a write that makes it unused afterwards names it again.
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
  go in batches of `batch_size` candidates, each a short transaction, so pushes wait little.

A dry run makes the same decisions without deleting: it judges as if what it would have
removed were gone, and reads the candidates a real run would have written from memory;
it takes no lease.
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter, defaultdict
from collections.abc import Collection, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from cargohold.db.candidates import BLOB, LINK, MANIFEST, CandidateKey
from cargohold.db.gc import BlobRow, GcStore, ImageManifests, Verdict
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


def _chunks(items: Sequence[str], size: int) -> Iterable[Sequence[str]]:
    return (items[start : start + size] for start in range(0, len(items), size))


def _judge_manifests(
    image: ImageManifests, candidates: Collection[str], cutoff: float
) -> dict[str, Verdict]:
    """Remove the candidates no root reaches; those only recent roots reach wait for the
    grace period to end; those a tag reaches (or gone already) are no longer candidates."""
    if not image.deletes_untagged:
        return {digest: Verdict.SETTLED for digest in candidates}
    present = {node.digest for node in image.manifests}
    # Roots that stay: tagged manifests (no cutoff makes a manifest recent).
    lasting = reachable(image, cutoff=math.inf)
    kept = reachable(image, cutoff)

    def verdict(digest: str) -> Verdict:
        if digest not in present or digest in lasting:
            return Verdict.SETTLED
        return Verdict.WAIT if digest in kept else Verdict.REMOVE

    return {digest: verdict(digest) for digest in candidates}


@dataclass(slots=True)
class _Run:
    """One collection: what it removed (a dry run: would remove), which later decisions
    treat as gone, and in a dry run the candidates a real run would have written."""

    report: GcReport
    cutoff: float
    removed: set[CandidateKey] = field(default_factory=set)
    # A dry run reads a candidate both from the table and from what it would have written:
    # it judges each once.
    judged: set[CandidateKey] = field(default_factory=set)
    pending: dict[str, list[CandidateKey]] = field(
        default_factory=lambda: {MANIFEST: [], LINK: [], BLOB: []}
    )
    # Manifest rows of each digest removed, and blob rows removed: their stored files.
    lost_manifests: Counter[str] = field(default_factory=Counter)
    removed_blobs: list[BlobRow] = field(default_factory=list)

    def unjudged(self, keys: Iterable[CandidateKey]) -> list[CandidateKey]:
        fresh = [key for key in dict.fromkeys(keys) if key not in self.judged]
        self.judged.update(fresh)
        return fresh


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
        run = _Run(report, time.time() - report.grace_seconds)
        for kind in (MANIFEST, LINK, BLOB):
            await self._sweep_kind(run, kind)
        report.blobs.extend(CollectedBlob(row.digest, row.size) for row in run.removed_blobs)
        if report.dry_run:
            await self._predict_files(run)
        report.sort()
        report.seconds = round(time.monotonic() - started, 3)

    async def _sweep_kind(self, run: _Run, kind: str) -> None:
        """Judge the candidates of `kind`: those written before this starts, then those
        the run itself wrote meanwhile (a dry run: keeps in memory), until there are none.
        Bounded: each pass reads candidates once, in id order; a real run passes again
        only when the last pass wrote candidates of this kind (removed manifests name
        those they list and their referrers), a step down a chain of indexes and
        referrers each time; a dry run judges each candidate once."""
        after = 0
        while True:
            up_to = await self._queries.last_candidate_id()
            wrote = False
            while page := await self._queries.candidates(kind, after, up_to, self._batch):
                after = page[-1].id
                wrote |= await self._sweep_batch(run, kind, [c.key for c in page])
            pending = run.pending[kind]
            while pending:
                batch, pending[:] = pending[: self._batch], pending[self._batch :]
                await self._sweep_batch(run, kind, batch)
            if not wrote:
                return

    async def _sweep_batch(self, run: _Run, kind: str, batch: list[CandidateKey]) -> bool:
        """Judge a batch, and remove (a dry run: note) what goes; whether the run wrote
        candidates of the same kind."""
        report = run.report
        apply = not report.dry_run
        batch = run.unjudged(batch) if report.dry_run else batch
        if not batch:
            return False
        if apply:
            await self._renew()
        if kind == MANIFEST:
            sweep = await self._queries.sweep_manifests(
                batch,
                lambda image, digests: _judge_manifests(image, digests, run.cutoff),
                excluded=run.removed,
                apply=apply,
            )
        elif kind == LINK:
            sweep = await self._queries.sweep_links(
                batch, run.cutoff, excluded=run.removed, apply=apply
            )
        else:
            sweep = await self._queries.sweep_blobs(
                batch, run.cutoff, excluded=run.removed, apply=apply
            )
        for removed in sweep.manifests:
            report.manifests.append(
                CollectedManifest(removed.image, removed.node.digest, removed.node.size)
            )
            run.removed.add(removed.key)
            run.lost_manifests[removed.node.digest] += 1
        report.links += len(sweep.links)
        run.removed.update(sweep.links)
        run.removed_blobs.extend(sweep.blobs)
        if apply:
            gone = [removed.node.digest for removed in sweep.manifests]
            await self._free_bytes(report, gone + [row.digest for row in sweep.blobs])
        else:
            for key in sweep.freed:
                run.pending[key.kind].append(key)
        return apply and any(key.kind == kind for key in sweep.freed)

    async def _free_bytes(self, report: GcReport, digests: list[str]) -> None:
        freed = await self._content.remove_unless_described(digests)
        report.files += len(freed)
        report.bytes_freed += sum(freed.values())

    async def _predict_files(self, run: _Run) -> None:
        """The stored files that no row would describe once the rows are gone."""
        report = run.report
        removed = {row.digest for row in run.removed_blobs}
        candidates = sorted(removed | set(run.lost_manifests))
        for digests in _chunks(candidates, self._batch):
            manifest_counts = await self._queries.manifest_counts(digests)
            blob_rows = await self._queries.blob_rows(digests)
            for digest in digests:
                if digest in blob_rows and digest not in removed:
                    continue
                if manifest_counts.get(digest, 0) > run.lost_manifests[digest]:
                    continue
                size = await self._store.size(digest)
                if size is not None:
                    report.files += 1
                    report.bytes_freed += size
