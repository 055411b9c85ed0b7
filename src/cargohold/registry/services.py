"""The composition root: every service, built from the settings, sharing one store each."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from cargohold.auth.accounts import AccountService
from cargohold.auth.service import AuthService
from cargohold.auth.tokens import TokenIssuer
from cargohold.config import Settings
from cargohold.db.accounts import AccountStore
from cargohold.db.engine import Database, is_sqlite, open_database
from cargohold.db.gc import GcStore
from cargohold.db.integrity import IntegrityStore
from cargohold.db.leases import LeaseStore
from cargohold.db.locks import AdvisoryLocks
from cargohold.db.metadata import MetadataStore
from cargohold.registry import cleanup, gc
from cargohold.registry.blobs import BlobService
from cargohold.registry.cleanup import CleanupService
from cargohold.registry.content import StoredContent
from cargohold.registry.gc import GarbageCollector
from cargohold.registry.integrity import FsckService
from cargohold.registry.leases import Lease
from cargohold.registry.manifests import ManifestService
from cargohold.registry.projects import ProjectService
from cargohold.registry.proxy import ProxyService
from cargohold.registry.pulls import PullRecorder
from cargohold.registry.router import NameRouter
from cargohold.registry.singleflight import FileLocks, SharedLocks, SingleFlight
from cargohold.registry.uploads import UploadService
from cargohold.storage import BlobStore, FilesystemBlobStore

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Services:
    settings: Settings
    database: Database
    metadata: MetadataStore
    accounts: AccountStore
    store: BlobStore
    content: StoredContent
    router: NameRouter
    auth: AuthService
    accounts_admin: AccountService
    projects: ProjectService
    blobs: BlobService
    uploads: UploadService
    manifests: ManifestService
    proxy: ProxyService
    integrity: FsckService
    pulls: PullRecorder
    cleanup: CleanupService
    gc: GarbageCollector
    flight_locks: SharedLocks

    async def close(self) -> None:
        # Pulls counted since the last write are kept, not lost with the process.
        try:
            await self.pulls.flush()
        except Exception:
            log.exception("the pulls counted since the last write could not be written")
        await self.proxy.close()
        await self.flight_locks.close()
        await self.store.close()
        await self.database.dispose()


async def open_blob_store(settings: Settings) -> BlobStore:
    if settings.blob_store == "filesystem":
        return FilesystemBlobStore(settings.blob_dir, fsync=settings.fsync)
    # Imported only here: botocore is large, and a filesystem registry does without it.
    from cargohold.storage.s3 import S3BlobStore

    assert settings.s3_bucket is not None
    return await S3BlobStore.open(
        bucket=settings.s3_bucket,
        endpoint_url=settings.s3_endpoint_url,
        region=settings.s3_region,
        access_key_id=settings.s3_access_key_id,
        secret_access_key=settings.s3_secret_access_key,
        prefix=settings.s3_prefix,
        part_size=settings.s3_part_size,
        presigned_redirects=settings.s3_presigned_redirects,
    )


async def build_services(settings: Settings) -> Services:
    database = open_database(settings.metadata_url, settings.database_pool)
    leases = LeaseStore(database)
    metadata = MetadataStore(database)
    accounts = AccountStore(database)
    store = await open_blob_store(settings)
    router = NameRouter(metadata)
    # Proxy fetches are single-flight, requests to an upload session take turns, and stored
    # bytes are locked while written or removed, across the processes on one data folder
    # (file locks) or across every node over one PostgreSQL database (advisory locks).
    flight_locks: SharedLocks = (
        FileLocks(settings.lock_dir)
        if is_sqlite(settings.metadata_url)
        else AdvisoryLocks(settings.metadata_url, settings.database_lock_pool_size)
    )
    flights = SingleFlight(flight_locks)
    content = StoredContent(metadata, store, flights)
    issuer = await TokenIssuer.load(
        accounts, issuer=settings.token_issuer, ttl_seconds=settings.token_ttl_seconds
    )
    auth = AuthService(
        accounts,
        router,
        issuer,
        service=settings.token_service,
        failure_limit=settings.login_failure_limit,
        failure_window_seconds=settings.login_failure_window_seconds,
    )
    manifests = ManifestService(
        metadata, store, router, content, max_manifest_bytes=settings.max_manifest_bytes
    )
    blobs = BlobService(metadata, store, router)
    pulls = PullRecorder(
        metadata,
        router,
        flush_seconds=settings.pull_stats_flush_seconds,
        max_pending=settings.pull_stats_max_pending,
    )
    return Services(
        settings=settings,
        database=database,
        metadata=metadata,
        accounts=accounts,
        store=store,
        content=content,
        router=router,
        auth=auth,
        accounts_admin=AccountService(accounts, metadata, auth),
        projects=ProjectService(metadata, router),
        blobs=blobs,
        uploads=UploadService(
            metadata, store, router, content, flights, ttl_seconds=settings.upload_ttl_seconds
        ),
        manifests=manifests,
        proxy=ProxyService(
            metadata,
            store,
            router,
            manifests,
            blobs,
            content,
            flights=flights,
            timeout_seconds=settings.proxy_timeout_seconds,
            not_found_seconds=settings.proxy_not_found_seconds,
            docker_hub_hosts=settings.docker_hub_hosts,
        ),
        integrity=FsckService(
            IntegrityStore(database), store, upload_ttl_seconds=settings.upload_ttl_seconds
        ),
        pulls=pulls,
        cleanup=CleanupService(
            metadata, pulls, content, Lease(leases, cleanup.LEASE, cleanup.LEASE_SECONDS)
        ),
        gc=GarbageCollector(
            GcStore(database),
            store,
            content,
            Lease(leases, gc.LEASE, gc.LEASE_SECONDS),
            grace_seconds=settings.gc_grace_seconds,
        ),
        flight_locks=flight_locks,
    )
