"""A 1 GiB blob pushed monolithic and in chunks, then pulled, with the server's memory flat:
everything streams, nothing is held whole."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.oci_client import OciClient
from tests.integration.server import Server

GIB = 1024**3
CHUNK = 8 * 1024 * 1024
PEAK_RSS_LIMIT = 150 * 1024 * 1024


# One random block per seed, so the hashing pass and the upload pass see the same bytes.
_BLOCKS: dict[bytes, bytes] = {}


def _chunks(seed: bytes) -> Iterator[bytes]:
    """1 GiB of incompressible bytes, made 8 MiB at a time."""
    block = bytearray(_BLOCKS.setdefault(seed, os.urandom(CHUNK)))
    for index in range(GIB // CHUNK):
        block[: len(seed) + 8] = seed + index.to_bytes(8, "big")
        yield bytes(block)


def _digest(seed: bytes) -> str:
    hasher = hashlib.sha256()
    for chunk in _chunks(seed):
        hasher.update(chunk)
    return "sha256:" + hasher.hexdigest()


def _peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc status")


def _pull_digest(client: OciClient, name: str, digest: str) -> str:
    hasher = hashlib.sha256()
    with client.request("GET", f"/v2/{name}/blobs/{digest}", stream=True) as response:
        assert response.status_code == 200
        assert int(response.headers["Content-Length"]) == GIB
        for data in response.iter_content(CHUNK):
            hasher.update(data)
    return "sha256:" + hasher.hexdigest()


@pytest.mark.timeout(900)
def test_one_gib_blob_monolithic_and_chunked_with_flat_memory(own_server: Server) -> None:
    client = OciClient(own_server.url, own_server.admin_auth)
    name = own_server.unique_name()

    monolithic = _digest(b"monolithic")
    location = client.request("POST", f"/v2/{name}/blobs/uploads/").headers["Location"]
    response = client.request(
        "PUT",
        f"{location}?digest={monolithic}",
        data=_chunks(b"monolithic"),
        headers={"Content-Type": "application/octet-stream"},
        timeout=600,
    )
    assert response.status_code == 201, response.text

    chunked = _digest(b"chunked")
    location = client.request("POST", f"/v2/{name}/blobs/uploads/").headers["Location"]
    offset = 0
    for data in _chunks(b"chunked"):
        response = client.request(
            "PATCH",
            location,
            data=data,
            headers={"Content-Range": f"{offset}-{offset + len(data) - 1}"},
        )
        assert response.status_code == 202, response.text
        offset += len(data)
        location = response.headers["Location"]
    response = client.request("PUT", f"{location}?digest={chunked}")
    assert response.status_code == 201, response.text

    for digest in (monolithic, chunked):
        assert _pull_digest(client, name, digest) == digest

    peak = _peak_rss(own_server.pid)
    print(f"server peak RSS after 2 GiB in and out: {peak / 2**20:.1f} MiB")
    assert peak < PEAK_RSS_LIMIT
