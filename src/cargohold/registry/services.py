"""The composition root: every service, built from the settings, sharing one store each."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from cargohold.config import Settings
from cargohold.db.engine import create_engine_for
from cargohold.db.metadata import MetadataStore
from cargohold.registry.blobs import BlobService
from cargohold.registry.manifests import ManifestService
from cargohold.registry.projects import ProjectService
from cargohold.registry.router import NameRouter
from cargohold.registry.uploads import UploadService
from cargohold.storage import BlobStore, FilesystemBlobStore


@dataclass(frozen=True, slots=True)
class Services:
    engine: AsyncEngine
    metadata: MetadataStore
    store: BlobStore
    router: NameRouter
    projects: ProjectService
    blobs: BlobService
    uploads: UploadService
    manifests: ManifestService

    async def close(self) -> None:
        await self.engine.dispose()


def build_services(settings: Settings) -> Services:
    engine = create_engine_for(settings.metadata_url)
    metadata = MetadataStore(engine)
    store = FilesystemBlobStore(settings.blob_dir, fsync=settings.fsync)
    router = NameRouter(metadata)
    return Services(
        engine=engine,
        metadata=metadata,
        store=store,
        router=router,
        projects=ProjectService(metadata, router),
        blobs=BlobService(metadata, store, router),
        uploads=UploadService(metadata, store, router, ttl_seconds=settings.upload_ttl_seconds),
        manifests=ManifestService(
            metadata, store, router, max_manifest_bytes=settings.max_manifest_bytes
        ),
    )
