"""Proxy repositories: a pull-through cache of an upstream registry that keeps serving
what it cached when the upstream fails.

- A tag is served from the cache for `cache_ttl` seconds after the upstream last confirmed
  it; then a HEAD asks the upstream for its digest (Docker Hub does not count a HEAD against
  its pull limit), and the manifest is fetched again only when the digest changed.
- Digests are immutable: a cached manifest or blob is never checked again.
- A blob streams to the client while it is written to the cache; its digest is verified
  before the cached copy becomes visible.
- One fetch per missing manifest or blob at a time, in this process and in every other
  process on the same data folder or node over the same PostgreSQL database (`SingleFlight`).
- When the upstream is down, slow, or answers 5xx or 429, cached content is served with a
  `Warning`; content never cached gets an error that names the upstream's problem.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
import uuid
from collections.abc import AsyncGenerator, Collection, Sequence
from dataclasses import dataclass

import aiohttp

from cargohold.db.metadata import MetadataStore
from cargohold.oci.digest import Digest, new_hasher
from cargohold.oci.errors import ErrorCode, RegistryError
from cargohold.oci.mediatypes import OCI_INDEX
from cargohold.oci.names import parse_reference
from cargohold.registry.blobs import BlobContent, BlobService
from cargohold.registry.content import StoredContent
from cargohold.registry.manifests import ManifestContent, ManifestService
from cargohold.registry.router import NameRouter, Target
from cargohold.registry.singleflight import SingleFlight
from cargohold.registry.upstream import (
    UpstreamClient,
    UpstreamError,
    UpstreamManifest,
    is_docker_hub,
)
from cargohold.storage import BlobStore

log = logging.getLogger(__name__)

BLOB_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class Served:
    """What the proxy answers, and the warning to send with it when it is stale."""

    manifest: ManifestContent
    warning: str | None = None


@dataclass(frozen=True, slots=True)
class Listing:
    tags: list[str]
    warning: str | None = None


@dataclass(frozen=True, slots=True)
class Referrers:
    body: bytes
    warning: str | None = None


def stale_warning(error: UpstreamError) -> str:
    text = f"{error}; serving cached content".replace('"', "'")
    return f'299 - "{text}"'


def upstream_failure(error: UpstreamError, what: str) -> RegistryError:
    """The answer for content that is not cached when the upstream fails."""
    message = f"{what} is not cached and the upstream failed: {error}"
    if error.status == 429:
        headers = {"Retry-After": error.retry_after} if error.retry_after else {}
        return RegistryError(ErrorCode.TOOMANYREQUESTS, message, headers=headers)
    # 502: this registry works, the one behind it did not.
    return RegistryError(ErrorCode.UNSUPPORTED, message, status=502)


class UpstreamBlob:
    """A blob on its way from the upstream: streamed to one client while it is cached.

    It holds the blob's single flight until `close()`: other requests for the blob wait,
    then find it cached (or fetch it themselves if this transfer failed)."""

    def __init__(
        self,
        proxy: ProxyService,
        target: Target,
        digest: Digest,
        response: aiohttp.ClientResponse,
        size: int,
        flight: contextlib.AsyncExitStack,
    ) -> None:
        self._proxy = proxy
        self._target = target
        self.digest = digest
        self._response = response
        self.size = size
        self._flight = flight

    async def close(self) -> None:
        """Release the upstream response and the single flight (idempotent)."""
        self._response.release()
        await self._flight.aclose()

    async def stream(self) -> AsyncGenerator[bytes, None]:
        """The bytes as they arrive; the cached copy is kept only if all of them came and
        their digest matches. A failure midway raises, which cuts the client's transfer.
        The last chunk is held back until the digest is verified, so that a client never
        gets the whole length of wrong bytes."""
        store = self._proxy.store
        upload_id = uuid.uuid4().hex
        hasher = new_hasher(self.digest.algorithm)
        received = 0
        kept = False
        held = b""
        await store.start_upload(upload_id)
        try:
            async with self._response as response, store.upload_writer(upload_id, 0) as writer:
                async for data in response.content.iter_chunked(BLOB_CHUNK):
                    await writer.write(data)
                    hasher.update(data)
                    received += len(data)
                    if held:
                        yield held
                    held = data
            actual = f"{self.digest.algorithm}:{hasher.hexdigest()}"
            if received != self.size or actual != str(self.digest):
                self._proxy.count(
                    "corrupt", self._target, f"blob {self._target.name}@{self.digest}"
                )
                raise RegistryError(
                    ErrorCode.DIGEST_INVALID,
                    f"the upstream sent {received} bytes with digest {actual} for {self.digest};"
                    " they were not cached",
                )
            async with self._proxy.content.hold(actual):
                await store.commit_upload(upload_id, actual, received)
                await self._proxy.link(self._target, actual, received)
            kept = True
        except aiohttp.ClientError as error:
            raise UpstreamError(
                f"{self._proxy.describe(self._target)} broke off: {error}"
            ) from None
        finally:
            if not kept:
                await store.discard_upload(upload_id)
            await self.close()
        if held:
            yield held


class ProxyService:
    def __init__(
        self,
        metadata: MetadataStore,
        store: BlobStore,
        router: NameRouter,
        manifests: ManifestService,
        blobs: BlobService,
        content: StoredContent,
        *,
        flights: SingleFlight,
        timeout_seconds: float,
        not_found_seconds: float,
        docker_hub_hosts: Collection[str],
    ) -> None:
        self._metadata = metadata
        self.store = store
        self._router = router
        self._manifests = manifests
        self._blobs = blobs
        self.content = content
        self._flights = flights
        self._timeout = timeout_seconds
        self._not_found_seconds = not_found_seconds
        self.docker_hub_hosts = docker_hub_hosts
        self._not_found: dict[str, float] = {}
        self._session: aiohttp.ClientSession | None = None
        self._clients: dict[tuple[object, ...], UpstreamClient] = {}
        self.counts: dict[str, int] = {}

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def count(self, event: str, target: Target | None = None, what: str = "") -> None:
        """Hits, misses, revalidations, stale serves...: counted, and logged as fields."""
        self.counts[event] = self.counts.get(event, 0) + 1
        if target is not None:
            log.info("proxy event=%s name=%s what=%s", event, target.name, what)

    def describe(self, target: Target) -> str:
        return f"upstream {target.repository.remote_url}"

    def _client(self, target: Target) -> UpstreamClient:
        repository = target.repository
        key = (
            repository.id,
            repository.remote_url,
            repository.upstream_username,
            repository.upstream_password,
        )
        client = self._clients.get(key)
        if client is None:
            if self._session is None:
                self._session = aiohttp.ClientSession(auto_decompress=False)
            assert repository.remote_url is not None
            client = self._clients[key] = UpstreamClient(
                self._session,
                repository,
                timeout=self._timeout,
                docker_hub=is_docker_hub(repository.remote_url, self.docker_hub_hosts),
            )
        return client

    def upstream_name(self, target: Target) -> str:
        return self._client(target).name(target.image)

    async def _image_id(self, target: Target) -> int:
        image_id = await self._router.image_id(target, create=True)
        assert image_id is not None
        return image_id

    def _known_missing(self, key: str) -> bool:
        until = self._not_found.get(key)
        return until is not None and until > time.monotonic()

    def _missing(self, key: str, what: str) -> RegistryError:
        self._not_found[key] = time.monotonic() + self._not_found_seconds
        return RegistryError(ErrorCode.MANIFEST_UNKNOWN, f"{what} is not in the upstream")

    # Manifests

    async def manifest(self, target: Target, reference: str, accepted: Sequence[str]) -> Served:
        parsed = parse_reference(reference)
        image_id = await self._image_id(target)
        key = f"manifest:{target.repository.id}:{target.image}:{reference}"
        what = f"manifest {target.name}:{reference}"
        if isinstance(parsed, Digest):
            if await self._metadata.manifest_by_digest(image_id, str(parsed)) is None:
                if self._known_missing(key):
                    raise RegistryError(ErrorCode.MANIFEST_UNKNOWN, f"{what} is not upstream")
                async with self._flights.hold_then_forget(key):
                    if await self._metadata.manifest_by_digest(image_id, str(parsed)) is None:
                        await self._fetch_manifest(target, str(parsed), parsed, None, key)
                        return Served(await self._manifests.get(target, reference, accepted))
            self.count("hit", target, what)
            return Served(await self._manifests.get(target, reference, accepted))
        if await self._fresh(target, image_id, parsed):
            self.count("hit", target, what)
            return Served(await self._manifests.get(target, reference, accepted))
        async with self._flights.hold_then_forget(key):
            if await self._fresh(target, image_id, parsed):  # another request just did it
                self.count("hit", target, what)
                return Served(await self._manifests.get(target, reference, accepted))
            warning = await self._revalidate(target, image_id, parsed, key)
        return Served(await self._manifests.get(target, reference, accepted), warning)

    async def _fresh(self, target: Target, image_id: int, tag: str) -> bool:
        checked_at = await self._metadata.tag_checked_at(image_id, tag)
        ttl = target.repository.cache_ttl or 0
        return checked_at is not None and time.time() - checked_at < ttl

    async def _revalidate(self, target: Target, image_id: int, tag: str, key: str) -> str | None:
        """Make the cached tag current; the warning to send when it could not be checked."""
        cached = await self._metadata.manifest_by_tag(image_id, tag)
        what = f"manifest {target.name}:{tag}"
        if cached is None and self._known_missing(key):
            raise RegistryError(ErrorCode.MANIFEST_UNKNOWN, f"{what} is not upstream")
        client = self._client(target)
        max_bytes = self._manifests.max_manifest_bytes
        try:
            head = await client.manifest(target.image, tag, head=True, max_bytes=max_bytes)
        except UpstreamError as error:
            if cached is None:
                self.count("upstream_error", target, what)
                raise upstream_failure(error, what) from None
            self.count("stale", target, what)
            return stale_warning(error)
        if head is None:
            raise self._missing(key, what)
        if cached is not None and head.digest == cached.digest:
            await self._metadata.mark_tag_checked(image_id, tag)
            self.count("revalidated", target, what)
            return None
        expected = Digest.parse(head.digest) if head.digest else None
        try:
            await self._fetch_manifest(target, head.digest or tag, expected, tag, key)
        except UpstreamError as error:
            if cached is None:
                raise upstream_failure(error, what) from None
            self.count("stale", target, what)
            return stale_warning(error)
        return None

    async def _fetch_manifest(
        self,
        target: Target,
        reference: str,
        expected: Digest | None,
        tag: str | None,
        key: str,
    ) -> None:
        what = f"manifest {target.name}@{reference}"
        try:
            fetched: UpstreamManifest | None = await self._client(target).manifest(
                target.image, reference, head=False, max_bytes=self._manifests.max_manifest_bytes
            )
        except UpstreamError as error:
            if tag is not None:
                raise
            self.count("upstream_error", target, what)
            raise upstream_failure(error, what) from None
        if fetched is None or fetched.body is None:
            raise self._missing(key, what)
        if expected is None:
            expected = Digest.parse(fetched.digest) if fetched.digest else None
        if expected is None:
            raise upstream_failure(UpstreamError("it sent no Docker-Content-Digest"), what)
        await self._manifests.cache(target, expected, fetched.body, fetched.media_type, tag)
        self.count("miss", target, what)

    # Blobs

    async def link(self, target: Target, digest: str, size: int) -> None:
        await self._metadata.link_blob(await self._image_id(target), digest, size)

    async def blob(self, target: Target, reference: str) -> BlobContent | UpstreamBlob:
        """The cached blob, or one to stream from the upstream while it is cached."""
        digest = Digest.parse(reference)
        what = f"blob {target.name}@{digest}"
        try:
            cached = await self._blobs.get(target, str(digest))
            self.count("hit", target, what)
            return cached
        except RegistryError:
            pass
        # The flight is held until the blob is cached, not only until its fetch started:
        # the UpstreamBlob takes it over and releases it when its transfer ends.
        flight = contextlib.AsyncExitStack()
        await flight.enter_async_context(self._flights.hold_then_forget(f"blob:{digest}"))
        async with flight:
            try:
                return await self._blobs.get(target, str(digest))  # another request fetched it
            except RegistryError:
                pass
            client = self._client(target)
            try:
                response = await client.request("GET", target.image, f"blobs/{digest}")
            except UpstreamError as error:
                self.count("upstream_error", target, what)
                raise upstream_failure(error, what) from None
            if response.status != 200:
                response.release()
                raise RegistryError(
                    ErrorCode.BLOB_UNKNOWN,
                    f"{what} is not in the upstream ({response.status})",
                )
            self.count("miss", target, what)
            size = response.content_length
            if size is None:
                response.release()
                raise upstream_failure(UpstreamError("it sent no Content-Length"), what)
            return UpstreamBlob(self, target, digest, response, size, flight.pop_all())

    async def blob_size(self, target: Target, reference: str) -> tuple[str, int]:
        """For a HEAD: the cached size, or what the upstream says, without fetching."""
        digest = str(Digest.parse(reference))
        try:
            cached = await self._blobs.get(target, digest)
            return cached.digest, cached.size
        except RegistryError:
            pass
        what = f"blob {target.name}@{digest}"
        try:
            response = await self._client(target).request("HEAD", target.image, f"blobs/{digest}")
        except UpstreamError as error:
            raise upstream_failure(error, what) from None
        async with response:
            if response.status != 200 or response.content_length is None:
                raise RegistryError(ErrorCode.BLOB_UNKNOWN, f"{what} is not in the upstream")
            return digest, response.content_length

    # Listings

    async def tags(self, target: Target, last: str | None, limit: int | None) -> Listing:
        """The upstream's tags when it answers, else the cached ones."""
        query = "&".join(
            f"{name}={value}" for name, value in (("n", limit), ("last", last)) if value is not None
        )
        try:
            answer = await self._client(target).json(
                target.image, "tags/list" + (f"?{query}" if query else "")
            )
        except UpstreamError as error:
            try:
                cached = await self._manifests.tags(target, last, limit)
            except RegistryError:  # nothing cached under this name
                raise upstream_failure(error, f"the tag list of {target.name}") from None
            return Listing(cached, stale_warning(error))
        if answer is None:
            raise RegistryError(ErrorCode.NAME_UNKNOWN, f"{target.name} is not in the upstream")
        names = answer[0].get("tags") or [] if isinstance(answer[0], dict) else []
        return Listing(sorted(name for name in names if isinstance(name, str)))

    async def referrers(
        self, target: Target, reference: str, artifact_type: str | None
    ) -> Referrers:
        """The upstream's referrers when it has the API, else the cached ones."""
        digest = Digest.parse(reference)
        try:
            answer = await self._client(target).json(target.image, f"referrers/{digest}")
        except UpstreamError as error:
            body = await self._manifests.referrers(target, reference, artifact_type)
            return Referrers(body, stale_warning(error))
        if answer is None or not isinstance(answer[0], dict):
            return Referrers(await self._manifests.referrers(target, reference, artifact_type))
        descriptors = [
            entry
            for entry in answer[0].get("manifests") or []
            if isinstance(entry, dict)
            and (artifact_type is None or entry.get("artifactType") == artifact_type)
        ]
        index = {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": descriptors,
        }
        return Referrers(json.dumps(index).encode())
