"""The queries of garbage collection (`cargohold gc`); callers never see SQL.

Candidates are found by reading (no lock is held against pushes); each deletion runs in a
write transaction that asks again, in its WHERE clause, whether the rows are still unused,
so what a push made used in between stays. Those writes run one at a time (SQLite's single
writer; on PostgreSQL the lock of `Store._write_references`), so a deletion and a push that
makes its rows used again never interleave.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, delete, exists, func, select, tuple_

from cargohold.db.engine import Reader
from cargohold.db.schema import (
    blobs,
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
    """Every manifest of one image, and when each of its blobs was last linked there."""

    image_id: int
    name: str  # project/repository/image
    manifests: list[ManifestNode]
    links: dict[str, float]


@dataclass(frozen=True, slots=True)
class LinkRow:
    image_id: int
    digest: str


@dataclass(frozen=True, slots=True)
class BlobRow:
    digest: str
    size: int
    created_at: float


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


async def _counts(conn: Reader, column: Any, digests: Collection[str]) -> dict[str, int]:
    query = select(column, func.count()).where(column.in_(digests)).group_by(column)
    return {digest: count for digest, count in await conn.execute(query)}


class GcStore(Store):
    # Manifests

    async def images_to_prune(self, cutoff: float, after: int, limit: int) -> list[int]:
        """The next `limit` images (by id, after `after`) of repositories that delete
        untagged manifests, holding an untagged manifest pushed before `cutoff`."""
        untagged = exists().where(
            manifests.c.image_id == images.c.id,
            manifests.c.created_at < cutoff,
            ~exists().where(
                tags.c.image_id == manifests.c.image_id, tags.c.digest == manifests.c.digest
            ),
        )
        query = (
            select(images.c.id)
            .join(repositories, repositories.c.id == images.c.repository_id)
            .where(
                repositories.c.untagged_manifests == DELETE_UNTAGGED,
                images.c.id > after,
                untagged,
            )
            .order_by(images.c.id)
            .limit(limit)
        )
        async with self._read() as conn:
            return list((await conn.execute(query)).scalars())

    async def prune_manifests(
        self,
        image_id: int,
        choose: Callable[[ImageManifests], list[ManifestNode]],
        *,
        delete_chosen: bool,
    ) -> tuple[ImageManifests, list[ManifestNode]]:
        """Load every manifest of the image, let `choose` pick those to remove and, with
        `delete_chosen`, delete them (their references go with them): all in one write
        transaction, so that the choice is made on what is there when they go."""
        transaction = self._write_references if delete_chosen else self._read
        async with transaction() as conn:
            image = await _image_manifests(conn, image_id)
            chosen = choose(image)
            if delete_chosen and chosen:
                await conn.execute(
                    delete(manifests).where(manifests.c.id.in_([node.id for node in chosen]))
                )
        return image, chosen

    # Links and blobs

    async def unused_links(self, after: LinkRow | None, cutoff: float, limit: int) -> list[LinkRow]:
        """The next `limit` unused links (by image and digest, after `after`)."""
        query = (
            select(image_blobs.c.image_id, image_blobs.c.digest)
            .where(_unused_link(cutoff))
            .order_by(image_blobs.c.image_id, image_blobs.c.digest)
            .limit(limit)
        )
        if after is not None:
            query = query.where(
                tuple_(image_blobs.c.image_id, image_blobs.c.digest)
                > tuple_(after.image_id, after.digest)
            )
        async with self._read() as conn:
            return [LinkRow(row.image_id, row.digest) for row in await conn.execute(query)]

    async def delete_unused_links(self, rows: Collection[LinkRow], cutoff: float) -> int:
        """Delete those of `rows` that are still unused; how many went."""
        by_image: dict[int, list[str]] = defaultdict(list)
        for row in rows:
            by_image[row.image_id].append(row.digest)
        deleted = 0
        async with self._write_references() as conn:
            for image_id, digests in by_image.items():
                result = await conn.execute(
                    delete(image_blobs).where(
                        image_blobs.c.image_id == image_id,
                        image_blobs.c.digest.in_(digests),
                        _unused_link(cutoff),
                    )
                )
                deleted += result.rowcount
        return deleted

    async def unlinked_blobs(self, after: str | None, cutoff: float, limit: int) -> list[BlobRow]:
        """The next `limit` blob rows no image links to (by digest, after `after`)."""
        query = (
            select(blobs.c.digest, blobs.c.size, blobs.c.created_at)
            .where(_unlinked_blob(cutoff))
            .order_by(blobs.c.digest)
            .limit(limit)
        )
        if after is not None:
            query = query.where(blobs.c.digest > after)
        async with self._read() as conn:
            return [BlobRow(*row) for row in await conn.execute(query)]

    async def delete_unlinked_blobs(self, digests: Collection[str], cutoff: float) -> list[BlobRow]:
        """Delete the blob rows of `digests` that no image links to still; those that went."""
        async with self._write_references() as conn:
            result = await conn.execute(
                delete(blobs)
                .where(blobs.c.digest.in_(digests), _unlinked_blob(cutoff))
                .returning(blobs.c.digest, blobs.c.size, blobs.c.created_at)
            )
            return [BlobRow(*row) for row in result]

    # What a dry run asks to tell what a real run would delete

    async def link_counts(self, digests: Collection[str]) -> dict[str, int]:
        """How many images link to each of `digests` (absent: none)."""
        async with self._read() as conn:
            return await _counts(conn, image_blobs.c.digest, digests)

    async def manifest_counts(self, digests: Collection[str]) -> dict[str, int]:
        """How many images hold each of `digests` as a manifest (absent: none)."""
        async with self._read() as conn:
            return await _counts(conn, manifests.c.digest, digests)

    async def blob_rows(self, digests: Collection[str]) -> dict[str, BlobRow]:
        query = select(blobs.c.digest, blobs.c.size, blobs.c.created_at).where(
            blobs.c.digest.in_(digests)
        )
        async with self._read() as conn:
            return {row.digest: BlobRow(*row) for row in await conn.execute(query)}


async def _image_manifests(conn: Reader, image_id: int) -> ImageManifests:
    name = (
        await conn.execute(
            select(projects.c.name + "/" + repositories.c.name + "/" + images.c.name)
            .select_from(images)
            .join(repositories, repositories.c.id == images.c.repository_id)
            .join(projects, projects.c.id == repositories.c.project_id)
            .where(images.c.id == image_id)
        )
    ).scalar_one()
    tagged = set(
        (await conn.execute(select(tags.c.digest).where(tags.c.image_id == image_id))).scalars()
    )
    children: dict[int, set[str]] = defaultdict(set)
    blob_references: dict[int, set[str]] = defaultdict(set)
    references = await conn.execute(
        select(
            manifest_references.c.manifest_id,
            manifest_references.c.digest,
            manifest_references.c.is_manifest,
        )
        .join(manifests, manifests.c.id == manifest_references.c.manifest_id)
        .where(manifests.c.image_id == image_id)
    )
    for manifest_id, digest, is_manifest in references:
        (children if is_manifest else blob_references)[manifest_id].add(digest)
    rows = await conn.execute(
        select(
            manifests.c.id,
            manifests.c.digest,
            manifests.c.size,
            manifests.c.created_at,
            manifests.c.subject_digest,
        ).where(manifests.c.image_id == image_id)
    )
    nodes = [
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
    links = await conn.execute(
        select(image_blobs.c.digest, image_blobs.c.created_at).where(
            image_blobs.c.image_id == image_id
        )
    )
    return ImageManifests(image_id, name, nodes, {row.digest: row.created_at for row in links})
