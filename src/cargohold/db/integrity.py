"""The queries of the integrity check (`cargohold fsck`): rows walked in batches, questions
asked of a batch of digests at once, and the repairs. Callers never see SQL.

Listings of problems (dangling tags, incomplete manifests) return only the rows at fault.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, and_, delete, exists, func, select, update

from cargohold.db.candidates import add_candidates, freed_by_manifests
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
    uploads,
)
from cargohold.db.store import Store


@dataclass(frozen=True, slots=True)
class ContentRow:
    """A digest the metadata describes, with the sizes recorded for it."""

    digest: str
    smallest: int
    largest: int


@dataclass(frozen=True, slots=True)
class UploadRow:
    id: str
    created_at: float


@dataclass(frozen=True, slots=True)
class TagRow:
    image_id: int
    image: str
    tag: str
    digest: str


@dataclass(frozen=True, slots=True)
class MissingReference:
    """A manifest of a hosted repository whose image lacks content it points to."""

    image: str
    manifest: str
    digest: str
    is_manifest: bool


def _image_name() -> Any:
    return (projects.c.name + "/" + repositories.c.name + "/" + images.c.name).label("image")


def _with_image_names(query: Select[Any], image_id: Any) -> Select[Any]:
    return (
        query.join(images, images.c.id == image_id)
        .join(repositories, repositories.c.id == images.c.repository_id)
        .join(projects, projects.c.id == repositories.c.project_id)
    )


class IntegrityStore(Store):
    # Walking the content

    async def blob_rows(self, after: str | None, limit: int) -> list[ContentRow]:
        """The next `limit` blob rows, by digest, after `after`."""
        query = select(blobs.c.digest, blobs.c.size).order_by(blobs.c.digest).limit(limit)
        if after is not None:
            query = query.where(blobs.c.digest > after)
        async with self._read() as conn:
            return [ContentRow(row.digest, row.size, row.size) for row in await conn.execute(query)]

    async def manifest_digests(self, after: str | None, limit: int) -> list[ContentRow]:
        """The next `limit` distinct manifest digests (in any image), after `after`."""
        query = (
            select(
                manifests.c.digest,
                func.min(manifests.c.size).label("smallest"),
                func.max(manifests.c.size).label("largest"),
            )
            .group_by(manifests.c.digest)
            .order_by(manifests.c.digest)
            .limit(limit)
        )
        if after is not None:
            query = query.where(manifests.c.digest > after)
        async with self._read() as conn:
            return [
                ContentRow(row.digest, row.smallest, row.largest)
                for row in await conn.execute(query)
            ]

    async def blob_rows_among(self, digests: Collection[str]) -> set[str]:
        """Those of `digests` that have a blob row."""
        async with self._read() as conn:
            return await _blob_rows_among(conn, digests)

    async def described_among(self, digests: Collection[str]) -> set[str]:
        """Those of `digests` that a blob row or a manifest row (of any image) describes."""
        async with self._read() as conn:
            return await self._described_among(conn, digests)

    async def holders(self, digest: str) -> tuple[list[str], list[str]]:
        """The images (`project/repository/image`) that hold `digest`: as a blob, as a
        manifest."""
        as_blob = _with_image_names(
            select(_image_name()).select_from(image_blobs), image_blobs.c.image_id
        ).where(image_blobs.c.digest == digest)
        as_manifest = _with_image_names(
            select(_image_name()).select_from(manifests), manifests.c.image_id
        ).where(manifests.c.digest == digest)
        async with self._read() as conn:
            blob_holders = sorted((await conn.execute(as_blob)).scalars())
            manifest_holders = sorted((await conn.execute(as_manifest)).scalars())
        return blob_holders, manifest_holders

    # Upload sessions

    async def upload_rows(self, after: str | None, limit: int) -> list[UploadRow]:
        query = select(uploads.c.id, uploads.c.created_at).order_by(uploads.c.id).limit(limit)
        if after is not None:
            query = query.where(uploads.c.id > after)
        async with self._read() as conn:
            return [UploadRow(row.id, row.created_at) for row in await conn.execute(query)]

    async def upload_rows_among(self, upload_ids: Collection[str]) -> set[str]:
        async with self._read() as conn:
            query = select(uploads.c.id).where(uploads.c.id.in_(upload_ids))
            return set((await conn.execute(query)).scalars())

    # References

    async def dangling_tags(self) -> list[TagRow]:
        """Tags that point to a manifest their image does not hold."""
        query = _with_image_names(
            select(tags.c.image_id, _image_name(), tags.c.name, tags.c.digest).select_from(tags),
            tags.c.image_id,
        ).where(
            ~exists().where(
                manifests.c.image_id == tags.c.image_id, manifests.c.digest == tags.c.digest
            )
        )
        async with self._read() as conn:
            rows = await conn.execute(query.order_by("image", tags.c.name))
            return [TagRow(row.image_id, row.image, row.name, row.digest) for row in rows]

    async def missing_references(self) -> list[MissingReference]:
        """What manifests of hosted repositories point to but their image lacks: a blob it
        holds no link to, or a child manifest it does not hold. (A proxy repository fetches
        what a manifest references when it is first asked for: its gaps are normal.)"""
        lacks_blob = and_(
            manifest_references.c.is_manifest.is_(False),
            ~exists().where(
                image_blobs.c.image_id == manifests.c.image_id,
                image_blobs.c.digest == manifest_references.c.digest,
            ),
        )
        manifest_alias = manifests.alias("child")
        lacks_child = and_(
            manifest_references.c.is_manifest.is_(True),
            ~exists().where(
                manifest_alias.c.image_id == manifests.c.image_id,
                manifest_alias.c.digest == manifest_references.c.digest,
            ),
        )
        query = (
            _with_image_names(
                select(
                    _image_name(),
                    manifests.c.digest.label("manifest"),
                    manifest_references.c.digest,
                    manifest_references.c.is_manifest,
                )
                .select_from(manifest_references)
                .join(manifests, manifests.c.id == manifest_references.c.manifest_id),
                manifests.c.image_id,
            )
            .where(repositories.c.kind == "hosted", lacks_blob | lacks_child)
            .order_by("image", "manifest", manifest_references.c.digest)
        )
        async with self._read() as conn:
            return [
                MissingReference(row.image, row.manifest, row.digest, row.is_manifest)
                for row in await conn.execute(query)
            ]

    # Repairs

    async def forget_blob(self, digest: str) -> None:
        """Remove a blob row and every image's link to it."""
        async with self._write_references() as conn:
            await conn.execute(delete(image_blobs).where(image_blobs.c.digest == digest))
            await conn.execute(delete(blobs).where(blobs.c.digest == digest))

    async def forget_manifest(self, digest: str) -> None:
        """Remove a manifest from every image that holds it, with the tags that point to it
        (its references go with it)."""
        async with self._write_references() as conn:
            await conn.execute(delete(tags).where(tags.c.digest == digest))
            manifest_ids = list(
                (
                    await conn.execute(select(manifests.c.id).where(manifests.c.digest == digest))
                ).scalars()
            )
            await add_candidates(conn, await freed_by_manifests(conn, manifest_ids))
            await conn.execute(delete(manifests).where(manifests.c.id.in_(manifest_ids)))

    async def correct_size(self, digest: str, size: int) -> None:
        async with self._write() as conn:
            await conn.execute(update(blobs).where(blobs.c.digest == digest).values(size=size))
            await conn.execute(
                update(manifests).where(manifests.c.digest == digest).values(size=size)
            )

    async def delete_dangling_tag(self, image_id: int, tag: str, digest: str) -> None:
        """Delete the tag if it still points to `digest` and its image still lacks it."""
        async with self._write_references() as conn:
            await conn.execute(
                delete(tags).where(
                    tags.c.image_id == image_id,
                    tags.c.name == tag,
                    tags.c.digest == digest,
                    ~exists().where(manifests.c.image_id == image_id, manifests.c.digest == digest),
                )
            )

    async def delete_upload(self, upload_id: str) -> None:
        async with self._write() as conn:
            await conn.execute(delete(uploads).where(uploads.c.id == upload_id))


async def _blob_rows_among(conn: Reader, digests: Collection[str]) -> set[str]:
    query = select(blobs.c.digest).where(blobs.c.digest.in_(digests))
    return set((await conn.execute(query)).scalars())
