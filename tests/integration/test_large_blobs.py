"""A 1 GiB blob pushed monolithic and in chunks, then pulled, with the server's memory flat:
everything streams, nothing is held whole."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

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


def _patch_chunks(
    client: OciClient, name: str, seed: bytes, finish_after: float | None = None
) -> str:
    """Open an upload and PATCH the 1 GiB of `seed` in 8 MiB chunks, spread until the
    monotonic time `finish_after` when given; returns the session's Location."""
    location = client.request("POST", f"/v2/{name}/blobs/uploads/").headers["Location"]
    offset = 0
    chunks = GIB // CHUNK
    for index, data in enumerate(_chunks(seed)):
        if finish_after is not None:
            time.sleep(max(0.0, (finish_after - time.monotonic()) / (chunks - index)))
        response = client.request(
            "PATCH",
            location,
            data=data,
            headers={"Content-Range": f"{offset}-{offset + len(data) - 1}"},
        )
        assert response.status_code == 202, response.text
        offset += len(data)
        location = response.headers["Location"]
    return location


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
    location = _patch_chunks(client, name, b"chunked")
    response = client.request("PUT", f"{location}?digest={chunked}")
    assert response.status_code == 201, response.text

    for digest in (monolithic, chunked):
        assert _pull_digest(client, name, digest) == digest

    peak = _peak_rss(own_server.pid)
    print(f"server peak RSS after 2 GiB in and out: {peak / 2**20:.1f} MiB")
    assert peak < PEAK_RSS_LIMIT


@pytest.mark.timeout(900)
def test_one_gib_chunked_push_outlives_its_token(tmp_path: Path) -> None:
    """Clients do not renew a token in the middle of a blob: a session opened under a valid
    token must finish after that token expired. The PATCHes are paced past its expiry."""
    server = Server(tmp_path / "data")
    server.create_repository("test", "hosted")
    server.start(env={"CARGOHOLD_TOKEN_TTL_SECONDS": "60"})
    try:
        name = server.unique_name()
        answer = requests.get(
            f"{server.url}/v2/token",
            params={"service": "cargohold", "scope": f"repository:{name}:pull,push"},
            auth=server.admin_auth,
            timeout=30,
        ).json()
        assert answer["expires_in"] == 60
        expires_at = time.monotonic() + answer["expires_in"]
        bearer = OciClient(server.url)
        bearer.http.headers["Authorization"] = f"Bearer {answer['token']}"

        digest = _digest(b"paced")
        # Spread the chunks so that the last one goes out after the token expired.
        location = _patch_chunks(bearer, name, b"paced", finish_after=expires_at + 6)

        expired = bearer.request("GET", f"/v2/{name}/tags/list")
        assert expired.status_code == 401
        assert 'error="invalid_token"' in expired.headers["WWW-Authenticate"]
        response = bearer.request("PUT", f"{location}?digest={digest}")
        assert response.status_code == 201, response.text
        assert _pull_digest(OciClient(server.url, server.admin_auth), name, digest) == digest
    finally:
        server.stop()
