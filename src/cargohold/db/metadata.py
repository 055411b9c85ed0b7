"""Every query the services run, behind one class; callers never see SQL.

Each public method is one transaction. Methods that check and then change (deleting a
manifest an index may still point to) do both inside that transaction.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    Select,
    and_,
    bindparam,
    case,
    delete,
    exists,
    func,
    insert,
    or_,
    select,
    union,
    update,
)
from sqlalchemy.exc import IntegrityError

from cargohold.db.candidates import (
    MANIFEST,
    CandidateKey,
    add_candidates,
    blob_candidates,
    freed_by_manifests,
    link_candidates,
    manifest_candidates,
)
from cargohold.db.engine import Reader, Writer
from cargohold.db.gc import DELETE_UNTAGGED
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
from cargohold.db.store import AlreadyExists, Store, dialect_insert


class MissingReferences(Exception):
    """A manifest points to content its image does not hold: the digests, in `missing`."""

    def __init__(self, missing: Sequence[str]) -> None:
        super().__init__(", ".join(missing))
        self.missing = list(missing)


class StillReferenced(Exception):
    """The row is still needed by others, named in `by`."""

    def __init__(self, by: Sequence[str]) -> None:
        super().__init__(", ".join(by))
        self.by = list(by)


class QuotaExceeded(Exception):
    """Storing `needed` more bytes would take the project past its quota."""

    def __init__(self, project: str, used: int, quota: int, needed: int) -> None:
        super().__init__(f"project {project}: {used} of {quota} bytes used, {needed} needed")
        self.project = project
        self.used = used
        self.quota = quota
        self.needed = needed


@dataclass(frozen=True, slots=True)
class ProjectRecord:
    id: int
    name: str
    created_at: float
    anonymous_read: bool
    quota_bytes: int | None = None


@dataclass(frozen=True, slots=True)
class RepositoryRecord:
    id: int
    project_id: int
    project: str
    name: str
    kind: str
    format: str
    created_at: float
    anonymous_read: bool
    project_anonymous_read: bool
    remote_url: str | None = None
    upstream_username: str | None = None
    upstream_password: str | None = None
    cache_ttl: int | None = None
    flat_alias_prefix: str | None = None
    is_catch_all: bool = False
    host_name: str | None = None
    cleanup_policy: dict[str, Any] | None = None
    cache_max_age_days: int | None = None
    cache_max_bytes: int | None = None
    untagged_manifests: str = "keep"

    @property
    def is_proxy(self) -> bool:
        return self.kind == "proxy"

    @property
    def prefix(self) -> str:
        """The canonical name prefix, `<project>/<repository>/`."""
        return f"{self.project}/{self.name}/"


@dataclass(frozen=True, slots=True)
class ManifestRecord:
    id: int
    digest: str
    media_type: str
    size: int
    artifact_type: str | None
    subject_digest: str | None
    annotations: dict[str, str] | None


@dataclass(frozen=True, slots=True)
class NewManifest:
    digest: str
    media_type: str
    size: int
    artifact_type: str | None
    subject_digest: str | None
    annotations: dict[str, str] | None
    blob_digests: frozenset[str]
    child_digests: frozenset[str]


@dataclass(frozen=True, slots=True)
class PullCount:
    """`count` pulls of a manifest of an image, by tag (or by digest: tag None)."""

    image_id: int
    tag: str | None
    digest: str
    count: int
    last_pulled_at: float

    def merged(self, other: PullCount) -> PullCount:
        return PullCount(
            self.image_id,
            self.tag,
            self.digest,
            self.count + other.count,
            max(self.last_pulled_at, other.last_pulled_at),
        )


@dataclass(frozen=True, slots=True)
class TagRecord:
    image: str
    name: str
    digest: str
    updated_at: float
    last_pulled_at: float | None
    pull_count: int


@dataclass(frozen=True, slots=True)
class CachedManifest:
    """A manifest a proxy cached, with what it takes in the cache."""

    image: str
    digest: str
    size: int
    cached_at: float
    last_pulled_at: float | None
    # The cached blobs it references (digest -> size), and the manifests it lists.
    blobs: Mapping[str, int] = field(default_factory=dict)
    children: frozenset[str] = frozenset()

    @property
    def last_used(self) -> float:
        return self.cached_at if self.last_pulled_at is None else self.last_pulled_at


@dataclass(frozen=True, slots=True)
class UploadRecord:
    id: str
    image_id: int
    algorithm: str
    created_at: float
    owner: str | None


_REPOSITORY_COLUMNS = (
    repositories.c.id,
    repositories.c.project_id,
    projects.c.name.label("project"),
    repositories.c.name,
    repositories.c.kind,
    repositories.c.format,
    repositories.c.created_at,
    repositories.c.anonymous_read,
    projects.c.anonymous_read.label("project_anonymous_read"),
    repositories.c.remote_url,
    repositories.c.upstream_username,
    repositories.c.upstream_password,
    repositories.c.cache_ttl,
    repositories.c.flat_alias_prefix,
    repositories.c.is_catch_all,
    repositories.c.host_name,
    repositories.c.cleanup_policy,
    repositories.c.cache_max_age_days,
    repositories.c.cache_max_bytes,
    repositories.c.untagged_manifests,
)
_MANIFEST_COLUMNS = (
    manifests.c.id,
    manifests.c.digest,
    manifests.c.media_type,
    manifests.c.size,
    manifests.c.artifact_type,
    manifests.c.subject_digest,
    manifests.c.annotations,
)


# The lookups behind every pull, built once: building a statement costs more than running it.
_MANIFEST_BY_DIGEST = select(*_MANIFEST_COLUMNS).where(
    manifests.c.image_id == bindparam("image_id"), manifests.c.digest == bindparam("digest")
)
_MANIFEST_BY_TAG = (
    select(*_MANIFEST_COLUMNS)
    .join(
        tags,
        and_(tags.c.image_id == manifests.c.image_id, tags.c.digest == manifests.c.digest),
    )
    .where(tags.c.image_id == bindparam("image_id"), tags.c.name == bindparam("tag"))
)
_BLOB_SIZE = (
    select(blobs.c.size)
    .join(image_blobs, image_blobs.c.digest == blobs.c.digest)
    .where(image_blobs.c.image_id == bindparam("image_id"), blobs.c.digest == bindparam("digest"))
)


def _repository(row: Sequence[Any]) -> RepositoryRecord:
    return RepositoryRecord(*row)


def _manifest(row: Sequence[Any]) -> ManifestRecord:
    return ManifestRecord(*row)


async def _refuse_if_referenced(
    conn: Writer, image_id: int, digest: str, *, by_index: bool
) -> None:
    """Raise StillReferenced when manifests of the image point to `digest`: as an index
    child (`by_index`) or as a config or layer."""
    users = await conn.execute(
        select(manifests.c.digest)
        .join(manifest_references, manifest_references.c.manifest_id == manifests.c.id)
        .where(
            manifests.c.image_id == image_id,
            manifest_references.c.digest == digest,
            manifest_references.c.is_manifest.is_(by_index),
        )
        .order_by(manifests.c.digest)
    )
    by = list(users.scalars())
    if by:
        raise StillReferenced(by)


async def _link(conn: Writer, image_id: int, digest: str, now: float) -> None:
    await conn.execute(
        dialect_insert(conn, image_blobs)
        .values(image_id=image_id, digest=digest, created_at=now)
        .on_conflict_do_update(
            index_elements=[image_blobs.c.image_id, image_blobs.c.digest],
            set_={"created_at": now},
        )
    )
    # No manifest may ever use it.
    await add_candidates(conn, link_candidates(image_id, [digest]))


async def _remove_manifest(conn: Writer, image_id: int, digest: str) -> bool:
    """Delete the image's manifest of `digest` with its tags (its references go with it),
    naming what that may leave unused; whether it was there."""
    await conn.execute(delete(tags).where(tags.c.image_id == image_id, tags.c.digest == digest))
    manifest_ids = list(
        (
            await conn.execute(
                select(manifests.c.id).where(
                    manifests.c.image_id == image_id, manifests.c.digest == digest
                )
            )
        ).scalars()
    )
    await add_candidates(conn, await freed_by_manifests(conn, manifest_ids))
    result = await conn.execute(delete(manifests).where(manifests.c.id.in_(manifest_ids)))
    return result.rowcount > 0


async def _missing_references(
    conn: Writer,
    image_id: int,
    blob_digests: Iterable[str],
    child_digests: Iterable[str],
) -> list[str]:
    """The digests among those given that the image holds neither as blob nor manifest."""
    wanted_blobs, wanted_children = set(blob_digests), set(child_digests)
    have_blobs = set(
        (
            await conn.execute(
                select(image_blobs.c.digest).where(
                    image_blobs.c.image_id == image_id, image_blobs.c.digest.in_(wanted_blobs)
                )
            )
        ).scalars()
    )
    have_children = set(
        (
            await conn.execute(
                select(manifests.c.digest).where(
                    manifests.c.image_id == image_id, manifests.c.digest.in_(wanted_children)
                )
            )
        ).scalars()
    )
    return sorted((wanted_blobs - have_blobs) | (wanted_children - have_children))


async def _untagged_manifests(conn: Writer, repository_id: int) -> list[CandidateKey]:
    untagged = await conn.execute(
        select(manifests.c.image_id, manifests.c.digest)
        .join(images, images.c.id == manifests.c.image_id)
        .where(
            images.c.repository_id == repository_id,
            ~exists().where(
                tags.c.image_id == manifests.c.image_id, tags.c.digest == manifests.c.digest
            ),
        )
    )
    return [CandidateKey(MANIFEST, image_id, digest) for image_id, digest in untagged]


def _hosted_content(project_ids: Collection[int] | None, digest: str | None = None) -> Any:
    """(project id, digest, size) of every blob and manifest the projects' hosted images
    hold (only those of `digest` when given), each once per project (UNION drops the
    duplicates)."""

    def held(table: Any, size: Any, *joins: Any) -> Select[Any]:
        query = select(repositories.c.project_id, table.c.digest, size).select_from(table)
        for joined, on in joins:
            query = query.join(joined, on)
        query = query.join(images, images.c.id == table.c.image_id).join(
            repositories, repositories.c.id == images.c.repository_id
        )
        query = query.where(repositories.c.kind == "hosted")
        if project_ids is not None:
            query = query.where(repositories.c.project_id.in_(project_ids))
        if digest is not None:
            query = query.where(table.c.digest == digest)
        return query

    blob_rows = held(image_blobs, blobs.c.size, (blobs, blobs.c.digest == image_blobs.c.digest))
    return union(blob_rows, held(manifests, manifests.c.size)).subquery()


async def _usage(conn: Reader, project_ids: Collection[int] | None) -> dict[int, int]:
    content = _hosted_content(project_ids)
    rows = await conn.execute(
        select(content.c.project_id, func.sum(content.c.size)).group_by(content.c.project_id)
    )
    return {project_id: int(used) for project_id, used in rows}


async def _check_quota(
    conn: Reader, project_id: int, digest: str | None, size: int, *, lock: bool
) -> None:
    """Raise QuotaExceeded when storing `size` bytes of `digest` (None: not known yet) in the
    project would take it past its quota; content the project holds already costs nothing.
    `lock` locks the project's row until the transaction ends (PostgreSQL; SQLite writes one
    at a time anyway), so that concurrent writes to one project are checked one by one."""
    quota_query = select(projects.c.name, projects.c.quota_bytes).where(projects.c.id == project_id)
    if lock:
        quota_query = quota_query.with_for_update()
    project = (await conn.execute(quota_query)).one()
    if project.quota_bytes is None:
        return
    if digest is not None:
        held = await conn.execute(select(_hosted_content([project_id], digest)).limit(1))
        if held.first() is not None:
            return
    used = (await _usage(conn, [project_id])).get(project_id, 0)
    if used + size > project.quota_bytes:
        raise QuotaExceeded(project.name, used, project.quota_bytes, size)


def _pulled(column: Any) -> Any:
    """The later of a row's last pull and the batch's (`b_last`)."""
    return case(
        (or_(column.is_(None), column < bindparam("b_last")), bindparam("b_last")), else_=column
    )


class MetadataStore(Store):
    # Projects and repositories

    async def create_project(
        self, name: str, anonymous_read: bool = False, quota_bytes: int | None = None
    ) -> ProjectRecord:
        now = time.time()
        try:
            async with self._write() as conn:
                result = await conn.execute(
                    insert(projects)
                    .values(
                        name=name,
                        created_at=now,
                        anonymous_read=anonymous_read,
                        quota_bytes=quota_bytes,
                    )
                    .returning(projects.c.id)
                )
                return ProjectRecord(result.scalar_one(), name, now, anonymous_read, quota_bytes)
        except IntegrityError as error:
            raise AlreadyExists(name) from error

    async def get_project(self, name: str) -> ProjectRecord | None:
        async with self._read() as conn:
            row = (await conn.execute(select(projects).where(projects.c.name == name))).first()
        return ProjectRecord(*row) if row else None

    async def list_projects(self) -> list[ProjectRecord]:
        async with self._read() as conn:
            rows = await conn.execute(select(projects).order_by(projects.c.name))
        return [ProjectRecord(*row) for row in rows]

    async def project_usage(self, project_ids: Collection[int] | None = None) -> dict[int, int]:
        """Bytes held by each project's hosted images (absent: none)."""
        async with self._read() as conn:
            return await _usage(conn, project_ids)

    async def check_quota(self, project_id: int, digest: str | None, size: int) -> None:
        """Raise QuotaExceeded when `size` more bytes (of `digest`, if known) do not fit."""
        async with self._read() as conn:
            await _check_quota(conn, project_id, digest, size, lock=False)

    async def create_repository(
        self, project: ProjectRecord, name: str, kind: str, format: str, **settings: Any
    ) -> RepositoryRecord:
        """A new repository; `settings` are further columns (anonymous_read, remote_url...)."""
        try:
            async with self._write() as conn:
                await conn.execute(
                    insert(repositories).values(
                        project_id=project.id,
                        name=name,
                        kind=kind,
                        format=format,
                        created_at=time.time(),
                        **settings,
                    )
                )
        except IntegrityError as error:
            raise AlreadyExists(f"{project.name}/{name}") from error
        found = await self.get_repository(project.name, name)
        assert found is not None
        return found

    async def get_repository(self, project: str, name: str) -> RepositoryRecord | None:
        query = (
            select(*_REPOSITORY_COLUMNS)
            .join(projects, projects.c.id == repositories.c.project_id)
            .where(projects.c.name == project, repositories.c.name == name)
        )
        async with self._read() as conn:
            row = (await conn.execute(query)).first()
        return _repository(row) if row else None

    async def update_project(self, name: str, **values: Any) -> bool:
        async with self._write() as conn:
            result = await conn.execute(
                update(projects).where(projects.c.name == name).values(**values)
            )
            return bool(result.rowcount)

    async def update_repository(self, repository_id: int, **values: Any) -> bool:
        try:
            async with self._write() as conn:
                result = await conn.execute(
                    update(repositories).where(repositories.c.id == repository_id).values(**values)
                )
                if values.get("untagged_manifests") == DELETE_UNTAGGED:
                    # Kept until now, its untagged manifests are for collection.
                    await add_candidates(conn, await _untagged_manifests(conn, repository_id))
                return bool(result.rowcount)
        except IntegrityError as error:
            raise AlreadyExists(str(values)) from error

    async def list_repositories(self) -> list[RepositoryRecord]:
        query = (
            select(*_REPOSITORY_COLUMNS)
            .join(projects, projects.c.id == repositories.c.project_id)
            .order_by(projects.c.name, repositories.c.name)
        )
        async with self._read() as conn:
            return [_repository(row) for row in await conn.execute(query)]

    async def has_prefix_among(self, prefixes: Sequence[str]) -> bool:
        """Whether a repository's canonical prefix or flat alias is one of `prefixes`
        (each `a/b/.../`)."""
        canonical = [p.split("/")[:2] for p in prefixes if p.count("/") == 2]
        query = (
            select(repositories.c.id)
            .join(projects, projects.c.id == repositories.c.project_id)
            .where(
                or_(
                    repositories.c.flat_alias_prefix.in_(prefixes),
                    *(
                        and_(projects.c.name == project, repositories.c.name == name)
                        for project, name in canonical
                    ),
                )
            )
            .limit(1)
        )
        async with self._read() as conn:
            return (await conn.execute(query)).first() is not None

    # Images

    async def image_id(self, repository_id: int, name: str) -> int | None:
        query = select(images.c.id).where(
            images.c.repository_id == repository_id, images.c.name == name
        )
        async with self._read() as conn:
            return (await conn.execute(query)).scalar_one_or_none()

    async def ensure_image(self, repository_id: int, name: str) -> int:
        found = await self.image_id(repository_id, name)
        if found is not None:
            return found
        async with self._write() as conn:
            await self._insert_ignoring_duplicates(
                conn,
                images,
                [{"repository_id": repository_id, "name": name, "created_at": time.time()}],
            )
            query = select(images.c.id).where(
                images.c.repository_id == repository_id, images.c.name == name
            )
            image_id: int = (await conn.execute(query)).scalar_one()
            return image_id

    async def catalog_images(self, repository_ids: set[int] | None) -> list[tuple[int, str]]:
        """(repository id, image name) of every image with content, in the given repositories
        (None: in all)."""
        query: Select[Any] = select(images.c.repository_id, images.c.name).where(
            exists().where(manifests.c.image_id == images.c.id)
        )
        if repository_ids is not None:
            query = query.where(images.c.repository_id.in_(repository_ids))
        async with self._read() as conn:
            return [(row.repository_id, row.name) for row in await conn.execute(query)]

    # Blobs

    async def blob_size(self, image_id: int, digest: str) -> int | None:
        async with self._read() as conn:
            found = await conn.execute(_BLOB_SIZE, {"image_id": image_id, "digest": digest})
            return found.scalar_one_or_none()

    async def link_blob(
        self, image_id: int, digest: str, size: int, *, quota_project: int | None = None
    ) -> None:
        """Record a blob stored (the caller holds its content lock) and readable through the
        image; with `quota_project`, only if it fits the project's quota (checked in the same
        transaction). Linking it again starts the link's grace period again."""
        now = time.time()
        async with self._write_references() as conn:
            if quota_project is not None:
                await _check_quota(conn, quota_project, digest, size, lock=True)
            await self._insert_ignoring_duplicates(
                conn, blobs, [{"digest": digest, "size": size, "created_at": now}]
            )
            await _link(conn, image_id, digest, now)

    async def mount_blob(
        self,
        source_image_id: int,
        image_id: int,
        digest: str,
        *,
        quota_project: int | None = None,
    ) -> bool:
        """Link a blob of the source image to another, if the source still holds it: in one
        transaction, so that garbage collection cannot remove the blob in between; with
        `quota_project`, only if it fits the project's quota."""
        async with self._write_references() as conn:
            size = await conn.execute(_BLOB_SIZE, {"image_id": source_image_id, "digest": digest})
            held = size.scalar_one_or_none()
            if held is None:
                return False
            if quota_project is not None:
                await _check_quota(conn, quota_project, digest, held, lock=True)
            await _link(conn, image_id, digest, time.time())
            return True

    async def described_among(self, digests: Collection[str]) -> set[str]:
        """Those of `digests` whose stored bytes a blob row or a manifest row (of any image)
        needs."""
        async with self._read() as conn:
            return await self._described_among(conn, digests)

    async def unlink_blob(self, image_id: int, digest: str) -> bool:
        """Remove a blob from an image, unless a manifest of that image still uses it."""
        async with self._write_references() as conn:
            await _refuse_if_referenced(conn, image_id, digest, by_index=False)
            result = await conn.execute(
                delete(image_blobs).where(
                    image_blobs.c.image_id == image_id, image_blobs.c.digest == digest
                )
            )
            if result.rowcount == 0:
                return False
            await add_candidates(conn, blob_candidates([digest]))
            return True

    # Manifests and tags

    async def manifest_by_digest(self, image_id: int, digest: str) -> ManifestRecord | None:
        async with self._read() as conn:
            found = await conn.execute(
                _MANIFEST_BY_DIGEST, {"image_id": image_id, "digest": digest}
            )
            row = found.first()
        return _manifest(row) if row else None

    async def manifest_by_tag(self, image_id: int, tag: str) -> ManifestRecord | None:
        async with self._read() as conn:
            row = (await conn.execute(_MANIFEST_BY_TAG, {"image_id": image_id, "tag": tag})).first()
        return _manifest(row) if row else None

    async def tag_checked_at(self, image_id: int, tag: str) -> float | None:
        """When a proxy's upstream last confirmed the tag; None if never or no such tag."""
        query = select(tags.c.checked_at).where(tags.c.image_id == image_id, tags.c.name == tag)
        async with self._read() as conn:
            checked_at: float | None = (await conn.execute(query)).scalar_one_or_none()
            return checked_at

    async def mark_tag_checked(self, image_id: int, tag: str) -> None:
        async with self._write() as conn:
            await conn.execute(
                update(tags)
                .where(tags.c.image_id == image_id, tags.c.name == tag)
                .values(checked_at=time.time())
            )

    async def put_manifest(
        self,
        image_id: int,
        new: NewManifest,
        tag_names: Sequence[str],
        *,
        checked_upstream: bool = False,
        quota_project: int | None = None,
        require_references: bool = True,
    ) -> None:
        """Store a manifest and point the tags at it; `checked_upstream` marks the tags as
        just confirmed by a proxy's upstream; with `quota_project`, only if the manifest's
        bytes fit the project's quota (checked in the same transaction). With
        `require_references`, raise MissingReferences when the image lacks content the
        manifest points to: checked in the same write transaction as the insert, so that
        garbage collection (which deletes only what no manifest uses, in write transactions
        too) cannot remove it in between.
        """
        now = time.time()
        checked_at = now if checked_upstream else None
        async with self._write_references() as conn:
            if require_references:
                missing = await _missing_references(
                    conn, image_id, new.blob_digests, new.child_digests
                )
                if missing:
                    raise MissingReferences(missing)
            if quota_project is not None:
                await _check_quota(conn, quota_project, new.digest, new.size, lock=True)
            await self._insert_ignoring_duplicates(
                conn,
                manifests,
                [
                    {
                        "image_id": image_id,
                        "digest": new.digest,
                        "media_type": new.media_type,
                        "size": new.size,
                        "artifact_type": new.artifact_type,
                        "subject_digest": new.subject_digest,
                        "annotations": new.annotations,
                        "created_at": now,
                    }
                ],
            )
            manifest_id = (
                await conn.execute(
                    select(manifests.c.id).where(
                        manifests.c.image_id == image_id, manifests.c.digest == new.digest
                    )
                )
            ).scalar_one()
            references = [
                {"manifest_id": manifest_id, "digest": digest, "is_manifest": False}
                for digest in new.blob_digests
            ] + [
                {"manifest_id": manifest_id, "digest": digest, "is_manifest": True}
                for digest in new.child_digests
            ]
            await self._insert_ignoring_duplicates(conn, manifest_references, references)
            # Untagged: the manifests the tags leave, or this one when pushed by digest.
            untagged = {new.digest}
            if tag_names:
                await self._one_writer_at_a_time(conn, f"tags:{image_id}")
                moved_from = await conn.execute(
                    select(tags.c.digest).where(
                        tags.c.image_id == image_id,
                        tags.c.name.in_(tag_names),
                        tags.c.digest != new.digest,
                    )
                )
                untagged = set(moved_from.scalars())
            await add_candidates(conn, manifest_candidates(image_id, untagged))
            for name in tag_names:
                moved = await conn.execute(
                    update(tags)
                    .where(tags.c.image_id == image_id, tags.c.name == name)
                    .values(digest=new.digest, updated_at=now, checked_at=checked_at)
                )
                if moved.rowcount == 0:
                    await conn.execute(
                        insert(tags).values(
                            image_id=image_id,
                            name=name,
                            digest=new.digest,
                            updated_at=now,
                            checked_at=checked_at,
                        )
                    )

    async def delete_manifest(self, image_id: int, digest: str) -> bool:
        """Delete a manifest and its tags, unless an index of the same image lists it."""
        async with self._write_references() as conn:
            await _refuse_if_referenced(conn, image_id, digest, by_index=True)
            return await _remove_manifest(conn, image_id, digest)

    async def delete_tag(self, image_id: int, tag: str) -> bool:
        async with self._write_references() as conn:
            result = await conn.execute(
                delete(tags)
                .where(tags.c.image_id == image_id, tags.c.name == tag)
                .returning(tags.c.digest)
            )
            untagged = list(result.scalars())
            await add_candidates(conn, manifest_candidates(image_id, untagged))
            return bool(untagged)

    async def list_tags(self, image_id: int, last: str | None, limit: int | None) -> list[str]:
        query = select(tags.c.name).where(tags.c.image_id == image_id).order_by(tags.c.name)
        if last is not None:
            query = query.where(tags.c.name > last)
        if limit is not None:
            query = query.limit(limit)
        async with self._read() as conn:
            return list((await conn.execute(query)).scalars())

    async def referrers(
        self, image_id: int, subject_digest: str, artifact_type: str | None
    ) -> list[ManifestRecord]:
        query = (
            select(*_MANIFEST_COLUMNS)
            .where(manifests.c.image_id == image_id, manifests.c.subject_digest == subject_digest)
            .order_by(manifests.c.created_at, manifests.c.digest)
        )
        if artifact_type is not None:
            query = query.where(manifests.c.artifact_type == artifact_type)
        async with self._read() as conn:
            return [_manifest(row) for row in await conn.execute(query)]

    async def tag_records(self, repository_id: int) -> list[TagRecord]:
        """Every tag of the repository's images, by image and tag name."""
        query = (
            select(
                images.c.name,
                tags.c.name,
                tags.c.digest,
                tags.c.updated_at,
                tags.c.last_pulled_at,
                tags.c.pull_count,
            )
            .join(images, images.c.id == tags.c.image_id)
            .where(images.c.repository_id == repository_id)
            .order_by(images.c.name, tags.c.name)
        )
        async with self._read() as conn:
            return [TagRecord(*row) for row in await conn.execute(query)]

    async def delete_tags(
        self, repository_id: int, doomed: Sequence[tuple[str, str, str]]
    ) -> list[tuple[str, str, str]]:
        """Delete tags given as (image, tag, digest), each only if it still points to that
        digest; the ones deleted. Their manifests stay, untagged, for garbage collection."""
        deleted = []
        async with self._write_references() as conn:
            for image, tag, digest in doomed:
                image_id = (
                    select(images.c.id)
                    .where(images.c.repository_id == repository_id, images.c.name == image)
                    .scalar_subquery()
                )
                result = await conn.execute(
                    delete(tags)
                    .where(tags.c.image_id == image_id, tags.c.name == tag, tags.c.digest == digest)
                    .returning(tags.c.image_id)
                )
                untagged_in = result.scalar_one_or_none()
                if untagged_in is not None:
                    await add_candidates(conn, manifest_candidates(untagged_in, [digest]))
                    deleted.append((image, tag, digest))
        return deleted

    async def cached_manifests(self, repository_id: int) -> list[CachedManifest]:
        """Every manifest of the repository's images, with the blobs its images hold for it
        and the manifests it lists."""
        in_repository = images.c.repository_id == repository_id
        async with self._read() as conn:
            rows = await conn.execute(
                select(
                    manifests.c.id,
                    images.c.name,
                    manifests.c.digest,
                    manifests.c.size,
                    manifests.c.created_at,
                    manifests.c.last_pulled_at,
                )
                .join(images, images.c.id == manifests.c.image_id)
                .where(in_repository)
                .order_by(images.c.name, manifests.c.digest)
            )
            found = {row.id: row for row in rows}
            blob_sizes: dict[int, dict[str, int]] = {}
            for manifest_id, digest, size in await conn.execute(
                select(manifest_references.c.manifest_id, blobs.c.digest, blobs.c.size)
                .join(manifests, manifests.c.id == manifest_references.c.manifest_id)
                .join(images, images.c.id == manifests.c.image_id)
                .join(
                    image_blobs,
                    and_(
                        image_blobs.c.image_id == manifests.c.image_id,
                        image_blobs.c.digest == manifest_references.c.digest,
                    ),
                )
                .join(blobs, blobs.c.digest == image_blobs.c.digest)
                .where(in_repository, manifest_references.c.is_manifest.is_(False))
            ):
                blob_sizes.setdefault(manifest_id, {})[digest] = size
            children: dict[int, set[str]] = {}
            for manifest_id, digest in await conn.execute(
                select(manifest_references.c.manifest_id, manifest_references.c.digest)
                .join(manifests, manifests.c.id == manifest_references.c.manifest_id)
                .join(images, images.c.id == manifests.c.image_id)
                .where(in_repository, manifest_references.c.is_manifest.is_(True))
            ):
                children.setdefault(manifest_id, set()).add(digest)
        return [
            CachedManifest(
                row.name,
                row.digest,
                row.size,
                row.created_at,
                row.last_pulled_at,
                blob_sizes.get(manifest_id, {}),
                frozenset(children.get(manifest_id, ())),
            )
            for manifest_id, row in found.items()
        ]

    async def evict_manifest(self, repository_id: int, image: str, digest: str) -> bool:
        """Remove a cached manifest, its tags, and the image's links to blobs no remaining
        manifest of the image uses (their bytes are then for garbage collection); not when
        an index of the image still lists it."""
        async with self._write_references() as conn:
            image_id = (
                await conn.execute(
                    select(images.c.id).where(
                        images.c.repository_id == repository_id, images.c.name == image
                    )
                )
            ).scalar_one_or_none()
            if image_id is None:
                return False
            try:
                await _refuse_if_referenced(conn, image_id, digest, by_index=True)
            except StillReferenced:
                return False
            removed = await _remove_manifest(conn, image_id, digest)
            still_used = (
                select(manifest_references.c.digest)
                .join(manifests, manifests.c.id == manifest_references.c.manifest_id)
                .where(manifests.c.image_id == image_id)
            )
            unlinked = await conn.execute(
                delete(image_blobs)
                .where(image_blobs.c.image_id == image_id, image_blobs.c.digest.not_in(still_used))
                .returning(image_blobs.c.digest)
            )
            await add_candidates(conn, blob_candidates(unlinked.scalars()))
            return removed

    # Pull statistics

    async def record_pulls(self, batch: Sequence[PullCount]) -> None:
        """Add counted pulls to their tags and manifests, in one transaction."""
        by_manifest: dict[tuple[int, str], PullCount] = {}
        for pulls in batch:
            key = (pulls.image_id, pulls.digest)
            known = by_manifest.get(key)
            by_manifest[key] = pulls if known is None else known.merged(pulls)
        tag_rows = [
            {"b_image": p.image_id, "b_name": p.tag, "b_count": p.count, "b_last": p.last_pulled_at}
            for p in batch
            if p.tag is not None
        ]
        manifest_rows = [
            {
                "b_image": p.image_id,
                "b_name": p.digest,
                "b_count": p.count,
                "b_last": p.last_pulled_at,
            }
            for p in by_manifest.values()
        ]
        async with self._write() as conn:
            for table, name, rows in (
                (tags, tags.c.name, tag_rows),
                (manifests, manifests.c.digest, manifest_rows),
            ):
                if rows:
                    await conn.execute(
                        update(table)
                        .where(
                            table.c.image_id == bindparam("b_image"), name == bindparam("b_name")
                        )
                        .values(
                            pull_count=table.c.pull_count + bindparam("b_count"),
                            last_pulled_at=_pulled(table.c.last_pulled_at),
                        ),
                        rows,
                    )

    # Upload sessions

    async def create_upload(
        self, upload_id: str, image_id: int, algorithm: str, owner: str | None
    ) -> UploadRecord:
        record = UploadRecord(upload_id, image_id, algorithm, time.time(), owner)
        async with self._write() as conn:
            await conn.execute(
                insert(uploads).values(
                    id=record.id,
                    image_id=record.image_id,
                    algorithm=record.algorithm,
                    created_at=record.created_at,
                    owner=record.owner,
                )
            )
        return record

    async def get_upload(self, upload_id: str) -> UploadRecord | None:
        async with self._read() as conn:
            row = (await conn.execute(select(uploads).where(uploads.c.id == upload_id))).first()
        return UploadRecord(*row) if row else None

    async def delete_upload(self, upload_id: str) -> None:
        async with self._write() as conn:
            await conn.execute(delete(uploads).where(uploads.c.id == upload_id))

    async def uploads_created_before(self, moment: float) -> list[str]:
        async with self._read() as conn:
            rows = await conn.execute(select(uploads.c.id).where(uploads.c.created_at < moment))
            return list(rows.scalars())

    async def upload_ids(self) -> set[str]:
        async with self._read() as conn:
            return set((await conn.execute(select(uploads.c.id))).scalars())
