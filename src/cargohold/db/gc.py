"""The queries of garbage collection (`cargohold gc`); callers never see SQL.

A collection reads the candidates (db/candidates.py), not the store: each batch of them is
judged and, in a real run, settled in one write transaction, on the rows as they are then:
what is unused is deleted with a WHERE clause that asks again whether it is unused, and
what that deletion may leave unused becomes a candidate in turn. Those writes run one at a
time (SQLite's single writer; on PostgreSQL the lock of `Store._write_references`), so a
deletion and a push that makes its rows used again never interleave. A dry run judges in a
read transaction, as if the rows in `excluded` (those it would have removed before) were
gone.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from sqlalchemy import and_, delete, exists, func, select

from cargohold.db.candidates import (
    BLOB,
    LINK,
    MANIFEST,
    NO_IMAGE,
    CandidateKey,
    add_candidates,
    blob_candidates,
    freed_by_manifests,
    link_candidates,
)
from cargohold.db.engine import Reader, Writer
from cargohold.db.schema import (
    blobs,
    gc_candidates,
    image_blobs,
    images,
    manifest_references,
    manifests,
    projects,
    repositories,
    tags,
)
from cargohold.db.store import Store

DELETE_UNTAGGED = "delete"


class Verdict(Enum):
    REMOVE = "remove"
    # In use, or gone already: no longer a candidate (until a write names it again).
    SETTLED = "settled"
    # Unused, but within the grace period: a candidate still, for a later collection.
    WAIT = "wait"


@dataclass(frozen=True, slots=True)
class ManifestNode:
    """A manifest of an image, with what it points to: blobs, and child manifests."""

    id: int
    digest: str
    size: int
    created_at: float
    subject_digest: str | None
    tagged: bool
    children: frozenset[str]
    blobs: frozenset[str]


@dataclass(frozen=True, slots=True)
class ImageManifests:
    """The manifests of one image that a collection asks about, and every manifest that
    could keep them: those that list them and their subjects, transitively."""

    image_id: int
    name: str  # project/repository/image
    manifests: list[ManifestNode]
    # Whether its repository deletes manifests no tag, index or referrer needs.
    deletes_untagged: bool = True


@dataclass(frozen=True, slots=True)
class Candidate:
    id: int
    key: CandidateKey


@dataclass(frozen=True, slots=True)
class BlobRow:
    digest: str
    size: int
    created_at: float


@dataclass(frozen=True, slots=True)
class RemovedManifest:
    image_id: int
    image: str  # project/repository/image
    node: ManifestNode

    @property
    def key(self) -> CandidateKey:
        return CandidateKey(MANIFEST, self.image_id, self.node.digest)


@dataclass(slots=True)
class Sweep:
    """What judging a batch of candidates removed (in a dry run: would remove), and the
    candidates that the removal names."""

    manifests: list[RemovedManifest] = field(default_factory=list)
    links: list[CandidateKey] = field(default_factory=list)
    blobs: list[BlobRow] = field(default_factory=list)
    freed: list[CandidateKey] = field(default_factory=list)


JudgeManifests = Callable[[ImageManifests, Collection[str]], dict[str, Verdict]]


def _unused_link(cutoff: float) -> Any:
    """An image's link to a blob, linked before `cutoff`, that no manifest of that image
    points to."""
    return and_(
        image_blobs.c.created_at < cutoff,
        ~exists().where(
            manifest_references.c.digest == image_blobs.c.digest,
            manifest_references.c.is_manifest.is_(False),
            manifests.c.id == manifest_references.c.manifest_id,
            manifests.c.image_id == image_blobs.c.image_id,
        ),
    )


def _unlinked_blob(cutoff: float) -> Any:
    """A blob row, written before `cutoff`, that no image links to."""
    return and_(
        blobs.c.created_at < cutoff,
        ~exists().where(image_blobs.c.digest == blobs.c.digest),
    )


def _row_verdict(created_at: float | None, used: bool, cutoff: float) -> Verdict:
    if created_at is None or used:
        return Verdict.SETTLED
    return Verdict.WAIT if created_at >= cutoff else Verdict.REMOVE


def _by_image(batch: Sequence[CandidateKey]) -> dict[int, list[str]]:
    digests: dict[int, list[str]] = defaultdict(list)
    for key in batch:
        digests[key.image_id].append(key.digest)
    return digests


def _chosen(verdicts: dict[str, Verdict]) -> list[str]:
    return sorted(digest for digest, verdict in verdicts.items() if verdict is Verdict.REMOVE)


async def _settle(conn: Writer, kind: str, image_id: int, verdicts: dict[str, Verdict]) -> None:
    """Remove the candidates judged, but those the grace period protects."""
    settled = [digest for digest, verdict in verdicts.items() if verdict is not Verdict.WAIT]
    if settled:
        await conn.execute(
            delete(gc_candidates).where(
                gc_candidates.c.kind == kind,
                gc_candidates.c.image_id == image_id,
                gc_candidates.c.digest.in_(settled),
            )
        )


async def _counts(conn: Reader, column: Any, digests: Collection[str]) -> dict[str, int]:
    query = select(column, func.count()).where(column.in_(digests)).group_by(column)
    return {digest: count for digest, count in await conn.execute(query)}


class GcStore(Store):
    @asynccontextmanager
    async def _judging(self, apply: bool) -> AsyncIterator[tuple[Reader, Writer | None]]:
        """A write transaction in which what is judged is settled (`apply`), or a read
        transaction that only judges (a dry run)."""
        if apply:
            async with self._write_references() as conn:
                yield conn, conn
        else:
            async with self._read() as conn:
                yield conn, None

    # Candidates

    async def last_candidate_id(self) -> int:
        async with self._read() as conn:
            last: int | None = (
                await conn.execute(select(func.max(gc_candidates.c.id)))
            ).scalar_one()
        return last or 0

    async def candidates(self, kind: str, after: int, up_to: int, limit: int) -> list[Candidate]:
        """The next `limit` candidates of `kind`, by id, after `after` and up to `up_to`."""
        query = (
            select(gc_candidates.c.id, gc_candidates.c.image_id, gc_candidates.c.digest)
            .where(
                gc_candidates.c.kind == kind,
                gc_candidates.c.id > after,
                gc_candidates.c.id <= up_to,
            )
            .order_by(gc_candidates.c.id)
            .limit(limit)
        )
        async with self._read() as conn:
            return [
                Candidate(row.id, CandidateKey(kind, row.image_id, row.digest))
                for row in await conn.execute(query)
            ]

    # Judging them: with `apply`, in a write transaction that deletes what goes

    async def sweep_manifests(
        self,
        batch: Sequence[CandidateKey],
        judge: JudgeManifests,
        *,
        excluded: Collection[CandidateKey],
        apply: bool,
    ) -> Sweep:
        """Let `judge` decide on the candidate manifests, each image's loaded with every
        manifest that could keep them, and with `apply` delete those it removes (their
        references go with them)."""
        sweep = Sweep()
        async with self._judging(apply) as (conn, writer):
            for image_id, digests in _by_image(batch).items():
                image = await _image_manifests(conn, image_id, digests, excluded)
                verdicts = judge(image, digests)
                removed = set(_chosen(verdicts))
                chosen = [node for node in image.manifests if node.digest in removed]
                chosen_ids = [node.id for node in chosen]
                freed = [
                    key
                    for key in await freed_by_manifests(conn, chosen_ids)
                    if not (key.kind == MANIFEST and key.digest in removed)
                ]
                sweep.manifests.extend(
                    RemovedManifest(image_id, image.name, node) for node in chosen
                )
                sweep.freed.extend(freed)
                if writer is not None:
                    await _settle(writer, MANIFEST, image_id, verdicts)
                    if chosen_ids:
                        await writer.execute(
                            delete(manifests).where(manifests.c.id.in_(chosen_ids))
                        )
                    await add_candidates(writer, freed)
        return sweep

    async def sweep_links(
        self,
        batch: Sequence[CandidateKey],
        cutoff: float,
        *,
        excluded: Collection[CandidateKey],
        apply: bool,
    ) -> Sweep:
        """Remove (with `apply`) the candidate links, made before `cutoff`, that no manifest
        of their image (but those in `excluded`) points to."""
        sweep = Sweep()
        async with self._judging(apply) as (conn, writer):
            for image_id, digests in _by_image(batch).items():
                links = await conn.execute(
                    select(image_blobs.c.digest, image_blobs.c.created_at).where(
                        image_blobs.c.image_id == image_id, image_blobs.c.digest.in_(digests)
                    )
                )
                linked_at = {row.digest: row.created_at for row in links}
                users = await conn.execute(
                    select(manifests.c.digest, manifest_references.c.digest)
                    .join(manifests, manifests.c.id == manifest_references.c.manifest_id)
                    .where(
                        manifests.c.image_id == image_id,
                        manifest_references.c.digest.in_(digests),
                        manifest_references.c.is_manifest.is_(False),
                    )
                )
                used = {
                    blob
                    for manifest, blob in users
                    if CandidateKey(MANIFEST, image_id, manifest) not in excluded
                }
                verdicts = {
                    digest: _row_verdict(linked_at.get(digest), digest in used, cutoff)
                    for digest in digests
                }
                chosen = _chosen(verdicts)
                if writer is not None:
                    await _settle(writer, LINK, image_id, verdicts)
                if writer is not None and chosen:
                    deleted = await writer.execute(
                        delete(image_blobs)
                        .where(
                            image_blobs.c.image_id == image_id,
                            image_blobs.c.digest.in_(chosen),
                            _unused_link(cutoff),
                        )
                        .returning(image_blobs.c.digest)
                    )
                    chosen = list(deleted.scalars())
                    await add_candidates(writer, blob_candidates(chosen))
                sweep.links.extend(link_candidates(image_id, chosen))
                sweep.freed.extend(blob_candidates(chosen))
        return sweep

    async def sweep_blobs(
        self,
        batch: Sequence[CandidateKey],
        cutoff: float,
        *,
        excluded: Collection[CandidateKey],
        apply: bool,
    ) -> Sweep:
        """Remove (with `apply`) the candidate blob rows, written before `cutoff`, that no
        image links to (but by the links in `excluded`)."""
        digests = [key.digest for key in batch]
        sweep = Sweep()
        async with self._judging(apply) as (conn, writer):
            rows = await _blob_rows(conn, digests)
            links = await conn.execute(
                select(image_blobs.c.image_id, image_blobs.c.digest).where(
                    image_blobs.c.digest.in_(digests)
                )
            )
            linked = {
                digest
                for image_id, digest in links
                if CandidateKey(LINK, image_id, digest) not in excluded
            }
            verdicts = {
                digest: _row_verdict(
                    rows[digest].created_at if digest in rows else None, digest in linked, cutoff
                )
                for digest in digests
            }
            chosen = [rows[digest] for digest in _chosen(verdicts)]
            if writer is not None:
                await _settle(writer, BLOB, NO_IMAGE, verdicts)
            if writer is not None and chosen:
                deleted = await writer.execute(
                    delete(blobs)
                    .where(
                        blobs.c.digest.in_([row.digest for row in chosen]), _unlinked_blob(cutoff)
                    )
                    .returning(blobs.c.digest, blobs.c.size, blobs.c.created_at)
                )
                chosen = [BlobRow(*row) for row in deleted]
            sweep.blobs.extend(chosen)
        return sweep

    # What a dry run asks to tell which stored files a real run would delete

    async def manifest_counts(self, digests: Collection[str]) -> dict[str, int]:
        """How many images hold each of `digests` as a manifest (absent: none)."""
        async with self._read() as conn:
            return await _counts(conn, manifests.c.digest, digests)

    async def blob_rows(self, digests: Collection[str]) -> dict[str, BlobRow]:
        async with self._read() as conn:
            return await _blob_rows(conn, digests)


async def _blob_rows(conn: Reader, digests: Collection[str]) -> dict[str, BlobRow]:
    query = select(blobs.c.digest, blobs.c.size, blobs.c.created_at).where(
        blobs.c.digest.in_(digests)
    )
    return {row.digest: BlobRow(*row) for row in await conn.execute(query)}


async def _image_manifests(
    conn: Reader, image_id: int, digests: Collection[str], excluded: Collection[CandidateKey]
) -> ImageManifests:
    """The image's manifests of `digests` and those that could keep them, but for those in
    `excluded`."""
    image = (
        await conn.execute(
            select(
                (projects.c.name + "/" + repositories.c.name + "/" + images.c.name).label("name"),
                repositories.c.untagged_manifests,
            )
            .select_from(images)
            .join(repositories, repositories.c.id == images.c.repository_id)
            .join(projects, projects.c.id == repositories.c.project_id)
            .where(images.c.id == image_id)
        )
    ).one()
    nodes: dict[str, ManifestNode] = {}
    asked: set[str] = set()
    wanted = {d for d in digests if CandidateKey(MANIFEST, image_id, d) not in excluded}
    # Bounded: each manifest of the image is asked about once.
    while wanted:
        asked |= wanted
        found = await _manifest_nodes(conn, image_id, wanted)
        nodes.update((node.digest, node) for node in found)
        listing = await conn.execute(
            select(manifests.c.digest)
            .join(manifest_references, manifest_references.c.manifest_id == manifests.c.id)
            .where(
                manifests.c.image_id == image_id,
                manifest_references.c.digest.in_(wanted),
                manifest_references.c.is_manifest.is_(True),
            )
        )
        keepers = set(listing.scalars()) | {
            node.subject_digest for node in found if node.subject_digest is not None
        }
        wanted = {
            digest
            for digest in keepers - asked
            if CandidateKey(MANIFEST, image_id, digest) not in excluded
        }
    return ImageManifests(
        image_id,
        image.name,
        list(nodes.values()),
        deletes_untagged=image.untagged_manifests == DELETE_UNTAGGED,
    )


async def _manifest_nodes(
    conn: Reader, image_id: int, digests: Collection[str]
) -> list[ManifestNode]:
    tagged = set(
        (
            await conn.execute(
                select(tags.c.digest).where(tags.c.image_id == image_id, tags.c.digest.in_(digests))
            )
        ).scalars()
    )
    rows = list(
        await conn.execute(
            select(
                manifests.c.id,
                manifests.c.digest,
                manifests.c.size,
                manifests.c.created_at,
                manifests.c.subject_digest,
            ).where(manifests.c.image_id == image_id, manifests.c.digest.in_(digests))
        )
    )
    children: dict[int, set[str]] = defaultdict(set)
    blob_references: dict[int, set[str]] = defaultdict(set)
    references = await conn.execute(
        select(
            manifest_references.c.manifest_id,
            manifest_references.c.digest,
            manifest_references.c.is_manifest,
        ).where(manifest_references.c.manifest_id.in_([row.id for row in rows]))
    )
    for manifest_id, digest, is_manifest in references:
        (children if is_manifest else blob_references)[manifest_id].add(digest)
    return [
        ManifestNode(
            row.id,
            row.digest,
            row.size,
            row.created_at,
            row.subject_digest,
            row.digest in tagged,
            frozenset(children[row.id]),
            frozenset(blob_references[row.id]),
        )
        for row in rows
    ]
