"""Manifests, tags, referrers and the catalog of one registry."""

from __future__ import annotations

import bisect
import json
from collections.abc import Sequence
from dataclasses import dataclass

from cargohold.db.metadata import (
    ManifestRecord,
    MetadataStore,
    MissingReferences,
    NewManifest,
    StillReferenced,
)
from cargohold.oci.digest import Digest, digest_of
from cargohold.oci.errors import ErrorCode, RegistryError
from cargohold.oci.manifest import Descriptor, Manifest, parse_manifest, referrers_index
from cargohold.oci.mediatypes import is_acceptable
from cargohold.oci.names import parse_reference, validate_tag
from cargohold.registry.cache import ContentCache
from cargohold.registry.content import StoredContent
from cargohold.registry.prefixes import PrefixTable
from cargohold.registry.quotas import check_room, quota_denials
from cargohold.registry.router import NameRouter, Target, require_hosted
from cargohold.storage import BlobStore

MANIFEST_CACHE_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class ManifestContent:
    digest: str
    media_type: str
    body: bytes


@dataclass(frozen=True, slots=True)
class StoredManifest:
    digest: str
    subject: str | None
    tags: tuple[str, ...]


def manifest_unknown(reference: str, name: str) -> RegistryError:
    return RegistryError(
        ErrorCode.MANIFEST_UNKNOWN, f"manifest {reference} is not in {name}", detail={"name": name}
    )


def _verified_digest(body: bytes, expected: Digest) -> str:
    digest = str(digest_of(body, expected.algorithm))
    if digest != str(expected):
        raise RegistryError(
            ErrorCode.DIGEST_INVALID,
            f"the manifest's digest is {digest}, not {expected}",
            detail={"expected": str(expected), "actual": digest},
        )
    return digest


def _new_manifest(digest: str, size: int, manifest: Manifest) -> NewManifest:
    return NewManifest(
        digest=digest,
        media_type=manifest.media_type,
        size=size,
        artifact_type=manifest.referrer_artifact_type,
        subject_digest=str(manifest.subject.digest) if manifest.subject else None,
        annotations=dict(manifest.annotations) if manifest.annotations else None,
        blob_digests=frozenset(str(d.digest) for d in manifest.blob_references),
        child_digests=frozenset(str(d.digest) for d in manifest.manifest_references),
    )


class ManifestService:
    def __init__(
        self,
        metadata: MetadataStore,
        store: BlobStore,
        router: NameRouter,
        content: StoredContent,
        *,
        max_manifest_bytes: int,
    ) -> None:
        self._metadata = metadata
        self._blob_store = store
        self._content = content
        self._router = router
        self.max_manifest_bytes = max_manifest_bytes
        self._cache = ContentCache(MANIFEST_CACHE_BYTES)

    async def _find(self, target: Target, reference: str) -> ManifestRecord:
        parsed = parse_reference(reference)
        image_id = await self._router.image_id(target)
        record = None
        if image_id is not None:
            if isinstance(parsed, Digest):
                record = await self._metadata.manifest_by_digest(image_id, str(parsed))
            else:
                record = await self._metadata.manifest_by_tag(image_id, parsed)
        if record is None:
            raise manifest_unknown(reference, target.name)
        return record

    async def get(self, target: Target, reference: str, accepted: Sequence[str]) -> ManifestContent:
        record = await self._find(target, reference)
        if not is_acceptable(record.media_type, accepted):
            raise RegistryError(
                ErrorCode.MANIFEST_UNKNOWN,
                f"manifest {record.digest} is of type {record.media_type}, which the request's"
                f" Accept header does not list ({', '.join(accepted)})",
            )
        body = self._cache.get(record.digest)
        if body is None:
            body = await self._blob_store.read_bytes(record.digest)
            self._cache.put(record.digest, body)
        return ManifestContent(record.digest, record.media_type, body)

    async def put(
        self,
        target: Target,
        reference: str,
        body: bytes,
        content_type: str | None,
        extra_tags: Sequence[str] = (),
    ) -> StoredManifest:
        """A push: everything the manifest references must be in the image already."""
        require_hosted(target)
        parsed = parse_reference(reference)
        tag_names = [validate_tag(tag) for tag in extra_tags]
        if isinstance(parsed, Digest):
            digest = _verified_digest(body, parsed)
        else:
            digest = str(digest_of(body))
            tag_names.insert(0, parsed)
        manifest = parse_manifest(body, content_type)
        image_id = await self._router.image_id(target, create=True)
        assert image_id is not None
        new = _new_manifest(digest, len(body), manifest)
        await check_room(self._metadata, target, digest, len(body), "manifest")
        try:
            await self._keep(
                image_id, new, body, tag_names, quota_project=target.repository.project_id
            )
        except MissingReferences as error:
            raise RegistryError(
                ErrorCode.MANIFEST_BLOB_UNKNOWN,
                f"the manifest references content that is not in {target.name}:"
                f" {', '.join(error.missing)}; push it first",
                detail={"missing": error.missing},
            ) from None
        return StoredManifest(digest, new.subject_digest, tuple(tag_names))

    async def cache(
        self, target: Target, expected: Digest, body: bytes, media_type: str | None, tag: str | None
    ) -> None:
        """Keep a manifest a proxy fetched: what it references is fetched when asked for."""
        digest = _verified_digest(body, expected)
        manifest = parse_manifest(body, media_type)
        image_id = await self._router.image_id(target, create=True)
        assert image_id is not None
        new = _new_manifest(digest, len(body), manifest)
        await self._keep(image_id, new, body, [tag] if tag else [], checked_upstream=True)

    async def _keep(
        self,
        image_id: int,
        new: NewManifest,
        body: bytes,
        tag_names: Sequence[str],
        *,
        checked_upstream: bool = False,
        quota_project: int | None = None,
    ) -> None:
        """Store a manifest; `quota_project` is checked in the transaction that links it."""
        # The bytes first: a row is never visible before what it describes. A proxy's
        # manifest may point to what is fetched later; a pushed one may not.
        try:
            async with self._content.hold(new.digest):
                await self._blob_store.put_bytes(new.digest, body)
                with quota_denials("manifest"):
                    await self._metadata.put_manifest(
                        image_id,
                        new,
                        tag_names,
                        checked_upstream=checked_upstream,
                        quota_project=quota_project,
                        require_references=not checked_upstream,
                    )
        except (MissingReferences, RegistryError):
            # Refused: the bytes go again, unless another image holds the same manifest.
            await self._content.remove_unless_described([new.digest])
            raise
        self._cache.put(new.digest, body)

    async def delete(self, target: Target, reference: str) -> None:
        require_hosted(target)
        parsed = parse_reference(reference)
        image_id = await self._router.image_id(target)
        if image_id is None:
            raise manifest_unknown(reference, target.name)
        if not isinstance(parsed, Digest):
            if not await self._metadata.delete_tag(image_id, parsed):
                raise manifest_unknown(reference, target.name)
            return
        try:
            deleted = await self._metadata.delete_manifest(image_id, str(parsed))
        except StillReferenced as error:
            raise RegistryError(
                ErrorCode.DENIED,
                f"manifest {parsed} is listed by index {', '.join(error.by)} in {target.name};"
                " delete the index first",
                status=409,
                detail={"indexes": error.by},
            ) from None
        if not deleted:
            raise manifest_unknown(reference, target.name)
        await self._content.remove_unless_described([str(parsed)])

    async def tags(self, target: Target, last: str | None, limit: int | None) -> list[str]:
        image_id = await self._router.image_id(target)
        if image_id is None:
            raise RegistryError(
                ErrorCode.NAME_UNKNOWN,
                f"{target.name} holds nothing yet",
                detail={"name": target.name},
            )
        return await self._metadata.list_tags(image_id, last, limit)

    async def referrers(self, target: Target, reference: str, artifact_type: str | None) -> bytes:
        subject = Digest.parse(reference)
        image_id = await self._router.image_id(target)
        records = (
            await self._metadata.referrers(image_id, str(subject), artifact_type)
            if image_id is not None
            else []
        )
        return referrers_index(
            Descriptor(
                media_type=record.media_type,
                digest=Digest.parse(record.digest),
                size=record.size,
                artifact_type=record.artifact_type,
                annotations=record.annotations,
            )
            for record in records
        )

    async def catalog(
        self, last: str | None, limit: int | None, repository_ids: set[int] | None
    ) -> list[str]:
        """Names with content, in the given repositories (None: in all), as clients use them
        (`PrefixTable.name_of`), sorted: the page after `last`."""
        table = PrefixTable(await self._metadata.list_repositories())
        by_id = {repository.id: repository for repository in table.repositories}
        names = sorted(
            {
                table.name_of(by_id[repository_id], image)
                for repository_id, image in await self._metadata.catalog_images(repository_ids)
                if repository_id in by_id
            }
        )
        start = 0 if last is None else bisect.bisect_right(names, last)
        return names[start : None if limit is None else start + limit]


def tags_body(name: str, tag_names: Sequence[str]) -> bytes:
    return json.dumps({"name": name, "tags": list(tag_names)}).encode()
