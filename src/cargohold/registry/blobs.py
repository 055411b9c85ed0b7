"""Reading, mounting and deleting blobs: each readable only through images that hold it."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass

from cargohold.db.metadata import MetadataStore, StillReferenced
from cargohold.oci.digest import Digest
from cargohold.oci.errors import ErrorCode, RegistryError
from cargohold.registry.quotas import quota_denials
from cargohold.registry.router import NameRouter, Target, require_hosted
from cargohold.storage import BlobStore, Delivery


@dataclass(frozen=True, slots=True)
class BlobContent:
    digest: str
    size: int
    delivery: Delivery
    store: BlobStore

    def read(self, offset: int, length: int) -> AsyncGenerator[bytes, None]:
        """The bytes of a blob delivered `Streamed`."""
        return self.store.read(self.digest, offset, length)


def blob_unknown(digest: str) -> RegistryError:
    return RegistryError(ErrorCode.BLOB_UNKNOWN, f"blob {digest} is not in this repository")


class BlobService:
    def __init__(self, metadata: MetadataStore, store: BlobStore, router: NameRouter) -> None:
        self._metadata = metadata
        self._store = store
        self._router = router

    async def _linked_size(self, target: Target, digest: str) -> int | None:
        image_id = await self._router.image_id(target)
        if image_id is None:
            return None
        return await self._metadata.blob_size(image_id, digest)

    async def get(self, target: Target, reference: str) -> BlobContent:
        digest = str(Digest.parse(reference))
        size = await self._linked_size(target, digest)
        if size is None:
            raise blob_unknown(digest)
        if await self._store.size(digest) is None:
            # Described but not stored: lost, or a store that cannot serve at all (an S3
            # HEAD cannot tell a missing bucket from a missing object), which ping says.
            await self._store.ping()
            raise blob_unknown(digest)
        return BlobContent(digest, size, await self._store.delivery(digest), self._store)

    async def mount(self, target: Target, reference: str, source: Target) -> str | None:
        """Link a blob of another image here; None when the source does not hold it."""
        require_hosted(target)
        digest = str(Digest.parse(reference))
        source_id = await self._router.image_id(source)
        if source_id is None or await self._store.size(digest) is None:
            return None
        image_id = await self._router.image_id(target, create=True)
        assert image_id is not None
        with quota_denials("blob"):
            mounted = await self._metadata.mount_blob(
                source_id, image_id, digest, quota_project=target.repository.project_id
            )
        if not mounted:
            return None
        return digest

    async def delete(self, target: Target, reference: str) -> None:
        require_hosted(target)
        digest = str(Digest.parse(reference))
        image_id = await self._router.image_id(target)
        try:
            deleted = image_id is not None and await self._metadata.unlink_blob(image_id, digest)
        except StillReferenced as error:
            raise RegistryError(
                ErrorCode.DENIED,
                f"blob {digest} is still used by manifest {', '.join(error.by)} in"
                f" {target.name}; delete the manifest first",
                status=409,
                detail={"manifests": error.by},
            ) from None
        if not deleted:
            raise blob_unknown(digest)
