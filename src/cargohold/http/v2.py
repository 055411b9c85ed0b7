"""The OCI Distribution API under /v2/."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncIterator
from urllib.parse import urlencode

from aiohttp import web

from cargohold.auth.service import AccessDenied
from cargohold.http.auth import authorized, caller
from cargohold.http.context import services as _services
from cargohold.oci.auth import DELETE, PULL, PUSH
from cargohold.oci.digest import digest_algorithm_param
from cargohold.oci.errors import ErrorCode, RegistryError
from cargohold.oci.mediatypes import OCI_INDEX, parse_accept
from cargohold.oci.ranges import (
    parse_content_range,
    pulled_range,
    range_not_satisfiable,
    upload_range_header,
)
from cargohold.registry.blobs import BlobContent, blob_unknown
from cargohold.registry.manifests import tags_body
from cargohold.registry.proxy import UpstreamBlob
from cargohold.registry.router import Target
from cargohold.registry.upstream import UpstreamError, upstream_host
from cargohold.storage import LocalFile, Redirect

log = logging.getLogger(__name__)

BODY_CHUNK = 1 << 20
MAX_PAGE_SIZE = 1 << 31


READ = (PULL,)
WRITE = (PULL, PUSH)
REMOVE = (DELETE,)


async def _upload_target(request: web.Request) -> Target:
    target, _ = await authorized(request, WRITE, upload_id=request.match_info["upload_id"])
    return target


def _body(request: web.Request) -> AsyncIterator[bytes]:
    return request.content.iter_chunked(BODY_CHUNK)


def _has_body(request: web.Request) -> bool:
    return bool(request.content_length) or (request.content_length is None and request.body_exists)


def _upload_location(name: str, upload_id: str) -> str:
    return f"/v2/{name}/blobs/uploads/{upload_id}"


def _upload_headers(name: str, upload_id: str, received: int) -> dict[str, str]:
    return {
        "Location": _upload_location(name, upload_id),
        "Range": upload_range_header(received),
        "Docker-Upload-UUID": upload_id,
    }


def _blob_created(name: str, digest: str) -> web.Response:
    return web.Response(
        status=201,
        headers={
            "Location": f"/v2/{name}/blobs/{digest}",
            "Docker-Content-Digest": digest,
        },
    )


def _page_size(request: web.Request) -> int | None:
    raw = request.query.get("n")
    if raw is None:
        return None
    if not (raw.isascii() and raw.isdigit()):
        raise RegistryError(
            ErrorCode.UNSUPPORTED, f"n={raw!r} is not a non-negative integer", status=400
        )
    # Beyond this a page is everything anyway; larger values overflow the database's LIMIT.
    return MAX_PAGE_SIZE if len(raw) > 10 else min(int(raw), MAX_PAGE_SIZE)


def _paged(request: web.Request, items: list[str], limit: int | None, body: bytes) -> web.Response:
    """A page of a listing, with a `Link` to the next one when the listing goes on."""
    headers: dict[str, str] = {}
    if limit and len(items) == limit:
        query = urlencode({"n": limit, "last": items[-1]})
        headers["Link"] = f'<{request.path}?{query}>; rel="next"'
    return web.Response(body=body, content_type="application/json", headers=headers)


async def api_version(request: web.Request) -> web.Response:
    """200 to a caller with valid credentials; a challenge to anyone else, even where
    anonymous pulls are allowed (docker sends credentials only after a challenge)."""
    if not (await caller(request)).authenticated:
        raise AccessDenied("unauthenticated", "authentication required")
    return web.json_response({})


def _proxy_headers(request: web.Request, target: Target, warning: str | None) -> dict[str, str]:
    """A stale answer's `Warning`, and `OCI-Namespace` when the request's `ns` names the
    proxy's upstream (the spec's Registry Proxying section)."""
    headers = {"Warning": warning} if warning else {}
    namespace = request.query.get("ns")
    remote_url = target.repository.remote_url
    hub_hosts = _services(request).proxy.docker_hub_hosts
    if namespace and remote_url and namespace == upstream_host(remote_url, hub_hosts):
        headers["OCI-Namespace"] = namespace
    return headers


async def get_manifest(request: web.Request) -> web.Response:
    services = _services(request)
    target, _ = await authorized(request, READ)
    accepted = parse_accept(request.headers.getall("Accept", []))
    reference = request.match_info["reference"]
    headers: dict[str, str] = {}
    if target.repository.is_proxy:
        served = await services.proxy.manifest(target, reference, accepted)
        manifest = served.manifest
        headers = _proxy_headers(request, target, served.warning)
    else:
        manifest = await services.manifests.get(target, reference, accepted)
    if request.method == "GET":
        await services.pulls.record(target, reference, manifest.digest)
    return web.Response(
        body=manifest.body,
        headers={
            **headers,
            "Content-Type": manifest.media_type,
            "Docker-Content-Digest": manifest.digest,
            "ETag": f'"{manifest.digest}"',
        },
    )


async def _read_manifest_body(request: web.Request, limit: int) -> bytes:
    too_large = RegistryError(
        ErrorCode.SIZE_INVALID, f"manifests are limited to {limit} bytes", status=413
    )
    if request.content_length is not None and request.content_length > limit:
        raise too_large
    parts: list[bytes] = []
    size = 0
    async for data in request.content.iter_chunked(BODY_CHUNK):
        size += len(data)
        if size > limit:
            raise too_large
        parts.append(data)
    return b"".join(parts)


async def put_manifest(request: web.Request) -> web.Response:
    services = _services(request)
    target, _ = await authorized(request, WRITE)
    body = await _read_manifest_body(request, services.manifests.max_manifest_bytes)
    stored = await services.manifests.put(
        target,
        request.match_info["reference"],
        body,
        request.headers.get("Content-Type"),
        request.query.getall("tag", []),
    )
    headers = {
        "Location": f"/v2/{target.name}/manifests/{stored.digest}",
        "Docker-Content-Digest": stored.digest,
    }
    if stored.subject:
        headers["OCI-Subject"] = stored.subject
    if stored.tags:
        headers["OCI-Tag"] = ", ".join(stored.tags)
    return web.Response(status=201, headers=headers)


async def delete_manifest(request: web.Request) -> web.Response:
    target, _ = await authorized(request, REMOVE)
    await _services(request).manifests.delete(target, request.match_info["reference"])
    return web.Response(status=202)


def _pulled_range(request: web.Request, size: int) -> tuple[int, int] | None:
    """The (start, length) a Range asks for, or None for the whole blob: no Range, or an
    If-Range, which is answered with the whole blob (a stream has no validator to compare)."""
    if "Range" not in request.headers or request.if_range is not None:
        return None
    header = request.headers["Range"]
    try:
        requested = request.http_range
    except ValueError:
        raise range_not_satisfiable(header, size) from None
    return pulled_range(header, requested.start, requested.stop, size)


async def get_blob(request: web.Request) -> web.StreamResponse:
    services = _services(request)
    target, _ = await authorized(request, READ)
    reference = request.match_info["digest"]
    blob: BlobContent | UpstreamBlob
    if not target.repository.is_proxy:
        blob = await services.blobs.get(target, reference)
    elif request.method == "HEAD":
        digest, size = await services.proxy.blob_size(target, reference)
        headers = {"Docker-Content-Digest": digest, "Content-Length": str(size)}
        return web.Response(headers={**headers, **_proxy_headers(request, target, None)})
    else:
        blob = await services.proxy.blob(target, reference)
    if isinstance(blob, UpstreamBlob):
        return await _relay_blob(request, target, blob)
    # Checked here for every delivery, so that a bad Range gets the OCI error body.
    requested = _pulled_range(request, blob.size)
    headers = {"Content-Type": "application/octet-stream", "Docker-Content-Digest": blob.digest}
    if isinstance(blob.delivery, LocalFile):
        return web.FileResponse(blob.delivery.path, headers=headers)
    if request.method == "HEAD":
        headers.update({"Content-Length": str(blob.size), "Accept-Ranges": "bytes"})
        return web.Response(headers=headers)
    if isinstance(blob.delivery, Redirect):
        return web.Response(status=307, headers={**headers, "Location": blob.delivery.url})
    return await _stream_blob(request, blob, headers, requested)


async def _stream_blob(
    request: web.Request,
    blob: BlobContent,
    headers: dict[str, str],
    requested: tuple[int, int] | None,
) -> web.StreamResponse:
    """Stream a blob from the store, the `requested` (start, length) of it with 206. A store
    failure before the first byte is a clean error; one midway cuts the connection."""
    start, length = requested or (0, blob.size)
    response = web.StreamResponse(status=200 if requested is None else 206, headers=headers)
    response.headers["Accept-Ranges"] = "bytes"
    if requested is not None:
        response.headers["Content-Range"] = f"bytes {start}-{start + length - 1}/{blob.size}"
    response.content_length = length
    async with contextlib.aclosing(blob.read(start, length)) as chunks:
        try:
            first = await anext(chunks, b"")
        except FileNotFoundError:  # deleted since it was found
            raise blob_unknown(blob.digest) from None
        return await _send(request, response, chunks, first)


async def _send(
    request: web.Request,
    response: web.StreamResponse,
    chunks: AsyncIterator[bytes],
    first: bytes = b"",
) -> web.StreamResponse:
    """Send the response with `first`, then `chunks`, as its body. A failure of the source
    midway cuts the connection, so that the client sees a short transfer, never wrong bytes
    presented as whole."""
    try:
        await response.prepare(request)
        await response.write(first)
        async for data in chunks:
            await response.write(data)
    except (RegistryError, UpstreamError) as error:
        log.warning("cut %s %s: %s", request.method, request.path, error)
        if request.transport is not None:
            request.transport.abort()
        return response
    except ConnectionResetError:
        log.info("client went away during %s %s", request.method, request.path)
        return response
    await response.write_eof()
    return response


async def _relay_blob(
    request: web.Request, target: Target, blob: UpstreamBlob
) -> web.StreamResponse:
    """Stream a blob from a proxy's upstream while it is cached."""
    response = web.StreamResponse(
        headers={
            "Content-Type": "application/octet-stream",
            "Docker-Content-Digest": str(blob.digest),
            **_proxy_headers(request, target, None),
        }
    )
    response.content_length = blob.size
    try:
        async with contextlib.aclosing(blob.stream()) as chunks:
            return await _send(request, response, chunks)
    finally:
        await blob.close()  # also when the client went away, or before the stream began


async def delete_blob(request: web.Request) -> web.Response:
    target, _ = await authorized(request, REMOVE)
    await _services(request).blobs.delete(target, request.match_info["digest"])
    return web.Response(status=202)


async def start_upload(request: web.Request) -> web.Response:
    services = _services(request)
    target, who = await authorized(request, WRITE)
    query = request.query
    if "mount" in query and "from" in query:
        source = await services.router.find(query["from"], request.host)
        if source is not None and PULL in await services.auth.allowed(who, source):
            mounted = await services.blobs.mount(target, query["mount"], source)
            if mounted is not None:
                return _blob_created(target.name, mounted)
    elif "digest" in query:
        digest = await services.uploads.push_whole(
            target, query["digest"], _body(request), request.content_length
        )
        return _blob_created(target.name, digest)
    algorithm = digest_algorithm_param(query.get("digest-algorithm"))
    session = await services.uploads.start(target, algorithm, who.principal.subject)
    return web.Response(
        status=202, headers=_upload_headers(target.name, session.id, session.received)
    )


async def upload_status(request: web.Request) -> web.Response:
    target = await _upload_target(request)
    status = await _services(request).uploads.status(target, request.match_info["upload_id"])
    return web.Response(
        status=204, headers=_upload_headers(target.name, status.id, status.received)
    )


async def patch_upload(request: web.Request) -> web.Response:
    target = await _upload_target(request)
    content_range = request.headers.get("Content-Range")
    status = await _services(request).uploads.append(
        target,
        request.match_info["upload_id"],
        _body(request),
        parse_content_range(content_range) if content_range else None,
        request.content_length,
    )
    return web.Response(
        status=202, headers=_upload_headers(target.name, status.id, status.received)
    )


async def finish_upload(request: web.Request) -> web.Response:
    target = await _upload_target(request)
    if "digest" not in request.query:
        raise RegistryError(
            ErrorCode.DIGEST_INVALID, "the closing PUT needs the blob's ?digest= parameter"
        )
    content_range = request.headers.get("Content-Range")
    digest = await _services(request).uploads.finish(
        target,
        request.match_info["upload_id"],
        request.query["digest"],
        _body(request) if _has_body(request) else None,
        parse_content_range(content_range) if content_range else None,
        request.content_length,
    )
    return _blob_created(target.name, digest)


async def cancel_upload(request: web.Request) -> web.Response:
    target = await _upload_target(request)
    await _services(request).uploads.cancel(target, request.match_info["upload_id"])
    return web.Response(status=204)


async def list_tags(request: web.Request) -> web.Response:
    services = _services(request)
    target, _ = await authorized(request, READ)
    limit, last = _page_size(request), request.query.get("last")
    tag_names: list[str] = []
    warning = None
    if limit == 0:
        pass
    elif target.repository.is_proxy:
        listing = await services.proxy.tags(target, last, limit)
        tag_names, warning = listing.tags, listing.warning
    else:
        tag_names = await services.manifests.tags(target, last, limit)
    response = _paged(request, tag_names, limit, tags_body(target.name, tag_names))
    response.headers.update(_proxy_headers(request, target, warning))
    return response


async def list_referrers(request: web.Request) -> web.Response:
    target, _ = await authorized(request, READ)
    services = _services(request)
    artifact_type = request.query.get("artifactType")
    reference = request.match_info["digest"]
    warning = None
    if target.repository.is_proxy:
        referrers = await services.proxy.referrers(target, reference, artifact_type)
        body, warning = referrers.body, referrers.warning
    else:
        body = await services.manifests.referrers(target, reference, artifact_type)
    headers = {"Content-Type": OCI_INDEX, **_proxy_headers(request, target, warning)}
    if artifact_type is not None:
        headers["OCI-Filters-Applied"] = "artifactType"
    return web.Response(body=body, headers=headers)


async def catalog(request: web.Request) -> web.Response:
    """The names the caller may pull from."""
    services = _services(request)
    limit = _page_size(request)
    visible = await services.auth.readable_repository_ids(await caller(request))
    names = (
        []
        if limit == 0
        else await services.manifests.catalog(request.query.get("last"), limit, visible)
    )
    return _paged(request, names, limit, json.dumps({"repositories": names}).encode())


async def _api_version_header(request: web.Request, response: web.StreamResponse) -> None:
    if request.path.startswith("/v2/"):
        response.headers["Docker-Distribution-API-Version"] = "registry/2.0"


def add_routes(app: web.Application) -> None:
    app.on_response_prepare.append(_api_version_header)
    router = app.router
    name = "/v2/{name:[^{}]+?}"
    router.add_get("/v2/", api_version)
    router.add_get("/v2/_catalog", catalog)
    router.add_get(name + "/manifests/{reference}", get_manifest)
    router.add_route("PUT", name + "/manifests/{reference}", put_manifest)
    router.add_route("DELETE", name + "/manifests/{reference}", delete_manifest)
    router.add_route("POST", name + "/blobs/uploads/", start_upload)
    router.add_route("GET", name + "/blobs/uploads/{upload_id}", upload_status)
    router.add_route("PATCH", name + "/blobs/uploads/{upload_id}", patch_upload)
    router.add_route("PUT", name + "/blobs/uploads/{upload_id}", finish_upload)
    router.add_route("DELETE", name + "/blobs/uploads/{upload_id}", cancel_upload)
    router.add_get(name + "/blobs/{digest}", get_blob)
    router.add_route("DELETE", name + "/blobs/{digest}", delete_blob)
    router.add_route("GET", name + "/tags/list", list_tags)
    router.add_route("GET", name + "/referrers/{digest}", list_referrers)
