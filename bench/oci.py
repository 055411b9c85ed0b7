"""Small OCI images and their upload with aiohttp: many requests at once, one client."""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
import yarl

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
TIMEOUT = aiohttp.ClientTimeout(total=600, sock_connect=30)


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class SmallImage:
    """A config, some layers of random bytes, and the manifest naming them."""

    blobs: tuple[bytes, ...]
    manifest: bytes

    @classmethod
    def make(cls, rng: random.Random, layers: int, layer_size: int) -> SmallImage:
        contents = [rng.randbytes(layer_size) for _ in range(layers)]
        config = json.dumps(
            {
                "architecture": "amd64",
                "os": "linux",
                "rootfs": {"type": "layers", "diff_ids": [sha256(c) for c in contents]},
                "config": {"Labels": {"bench.nonce": f"{rng.getrandbits(64):016x}"}},
            },
            sort_keys=True,
        ).encode()

        def descriptor(media_type: str, data: bytes) -> dict[str, Any]:
            return {"mediaType": media_type, "digest": sha256(data), "size": len(data)}

        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": descriptor(OCI_CONFIG, config),
                "layers": [descriptor(OCI_LAYER, c) for c in contents],
            },
            sort_keys=True,
        ).encode()
        return cls((config, *contents), manifest)

    @property
    def digest(self) -> str:
        return sha256(self.manifest)


async def _check(response: aiohttp.ClientResponse, expect: int, what: str) -> None:
    if response.status != expect:
        text = await response.text()
        raise RuntimeError(f"{what}: {response.status} {text[:300]}")


async def push_blob(
    session: aiohttp.ClientSession,
    base: str,
    name: str,
    data: bytes,
    headers: Mapping[str, str],
) -> None:
    """POST, then PUT with the whole blob (the monolithic upload every registry takes)."""
    async with session.post(f"{base}/v2/{name}/blobs/uploads/", headers=headers) as response:
        await _check(response, 202, f"POST {name} uploads")
        location = response.headers["Location"]
    url = yarl.URL(base).join(yarl.URL(location)).update_query(digest=sha256(data))
    put_headers = {**headers, "Content-Type": "application/octet-stream"}
    async with session.put(url, data=data, headers=put_headers) as response:
        await _check(response, 201, f"PUT {name} upload")


async def push_manifest(
    session: aiohttp.ClientSession,
    base: str,
    name: str,
    reference: str,
    manifest: bytes,
    headers: Mapping[str, str],
) -> None:
    put_headers = {**headers, "Content-Type": OCI_MANIFEST}
    url = f"{base}/v2/{name}/manifests/{reference}"
    async with session.put(url, data=manifest, headers=put_headers) as response:
        await _check(response, 201, f"PUT {name}:{reference}")


async def push_image(
    session: aiohttp.ClientSession,
    base: str,
    name: str,
    tag: str,
    image: SmallImage,
    headers: Mapping[str, str],
) -> None:
    for blob in image.blobs:
        await push_blob(session, base, name, blob, headers)
    await push_manifest(session, base, name, tag, image.manifest, headers)


def session(connections: int) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=connections), timeout=TIMEOUT)


async def push_images(
    base: str,
    jobs: Sequence[tuple[str, str, SmallImage, Mapping[str, str]]],
    concurrency: int,
) -> None:
    """Push (name, tag, image, headers) jobs, ``concurrency`` at a time, each job's
    requests one after the other."""
    queue: asyncio.Queue[tuple[str, str, SmallImage, Mapping[str, str]]] = asyncio.Queue()
    for job in jobs:
        queue.put_nowait(job)

    async def worker(client: aiohttp.ClientSession) -> None:
        while not queue.empty():
            name, tag, image, headers = queue.get_nowait()
            await push_image(client, base, name, tag, image, headers)

    async with session(concurrency) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))


async def put_tags(
    base: str,
    name: str,
    manifest: bytes,
    tags: Sequence[str],
    headers: Mapping[str, str],
    concurrency: int,
) -> None:
    """The same manifest under many tags."""
    queue: asyncio.Queue[str] = asyncio.Queue()
    for tag in tags:
        queue.put_nowait(tag)

    async def worker(client: aiohttp.ClientSession) -> None:
        while not queue.empty():
            await push_manifest(client, base, name, queue.get_nowait(), manifest, headers)

    async with session(concurrency) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
