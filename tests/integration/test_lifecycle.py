"""Storage lifecycle on a real server: pull statistics written in batches and at a
graceful stop, project quotas refused with DENIED and freed by deletes, cleanup policies
whose dry run lists exactly what the real run deletes, proxy caches evicted by age and size."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

from tests.integration.oci_client import (
    EMPTY_JSON,
    OCI_EMPTY,
    OCI_MANIFEST,
    OciClient,
    descriptor,
    sha256,
)
from tests.integration.server import Server

API = "/api/v1"
LAYER = "application/vnd.oci.image.layer.v1.tar"
WAIT_SECONDS = 10.0


def api(server: Server, method: str, path: str, body: Any = None) -> Any:
    response = requests.request(
        method, server.url + API + path, json=body, auth=server.admin_auth, timeout=60
    )
    assert response.ok, (response.status_code, response.text)
    return response.json()


def tags_of(server: Server, repository: str) -> dict[str, dict[str, Any]]:
    """`image:tag` -> the API's tag entry (digest, updated_at, pull statistics)."""
    listed = api(server, "GET", f"/repos/{repository}/tags")
    return {f"{entry['image']}:{entry['tag']}": entry for entry in listed}


def eventually(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():
        assert time.monotonic() < deadline, f"not within {WAIT_SECONDS}s: {what}"
        time.sleep(0.05)


def pull_counts(server: Server, repository: str) -> dict[str, int]:
    return {key: entry["pull_count"] for key, entry in tags_of(server, repository).items()}


def test_pulls_are_counted_after_a_flush_and_head_is_not_a_pull(tmp_path: Path) -> None:
    server = Server(tmp_path / "data")
    server.create_repository("test", "hosted")
    server.start(env={"CARGOHOLD_PULL_STATS_FLUSH_SECONDS": "0.2"})
    try:
        client = OciClient(server.url, server.admin_auth)
        image = server.unique_name()
        pushed = client.push_image(image, tag="v1")
        client.push_image(image, tag="v2")
        before = time.time()
        for _ in range(3):
            assert client.get_manifest(image, "v1").status_code == 200
        assert client.request("HEAD", f"/v2/{image}/manifests/v2").status_code == 200
        assert client.get_manifest(image, pushed.digest).status_code == 200  # by digest
        short = image.removeprefix("test/hosted/")
        expected = {f"{short}:v1": 3, f"{short}:v2": 0}
        eventually(lambda: pull_counts(server, "test/hosted") == expected, "3 pulls of v1")
        v1 = tags_of(server, "test/hosted")[f"{short}:v1"]
        assert int(before) <= v1["last_pulled_at"] <= time.time()
        assert v1["digest"] == pushed.digest
        assert tags_of(server, "test/hosted")[f"{short}:v2"]["last_pulled_at"] is None
    finally:
        server.stop()


def test_a_graceful_stop_writes_the_pulls_counted_since_the_last_flush(tmp_path: Path) -> None:
    server = Server(tmp_path / "data")
    server.create_repository("test", "hosted")
    server.start(env={"CARGOHOLD_PULL_STATS_FLUSH_SECONDS": "3600"})
    try:
        client = OciClient(server.url, server.admin_auth)
        image = server.unique_name()
        client.push_image(image, tag="v1")
        for _ in range(2):
            assert client.get_manifest(image, "v1").status_code == 200
        short = image.removeprefix("test/hosted/")
        assert pull_counts(server, "test/hosted") == {f"{short}:v1": 0}
        server.stop()  # SIGTERM: the server shuts down in order
        server.start()
        assert pull_counts(server, "test/hosted") == {f"{short}:v1": 2}
    finally:
        server.stop()


def usage(server: Server, project: str) -> int:
    used: int = api(server, "GET", f"/projects/{project}")["usage_bytes"]
    return used


def stored(server: Server, digest: str) -> bool:
    algorithm, encoded = digest.split(":")
    return (server.data_dir / "storage" / "blobs" / algorithm / encoded[:2] / encoded).exists()


def denied(response: requests.Response, needs: str) -> str:
    entry = OciClient.error_entry(response, 403, "DENIED")
    message: str = entry["message"]
    assert message.startswith("project team quota exceeded: "), message
    assert f"needs {needs}" in message, message
    return message


def image_manifest(layers: list[bytes]) -> bytes:
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": descriptor(OCI_EMPTY, EMPTY_JSON),
            "layers": [descriptor(LAYER, layer) for layer in layers],
        }
    ).encode()


def test_a_project_quota_refuses_the_push_that_exceeds_it_and_deletes_free_it(
    tmp_path: Path,
) -> None:
    server = Server(tmp_path / "data")
    server.cli("project", "create", "team", "--quota-bytes", "10000")
    server.cli("repo", "create", "team", "apps")
    outside = server.create_repository("other", "apps")
    server.start()
    try:
        client = OciClient(server.url, server.admin_auth)
        first, second = "team/apps/first", "team/apps/second"
        a, b, c, d = (os.urandom(size) for size in (4000, 4000, 4000, 1900))
        client.push_blob(first, a)
        client.push_blob(second, a)  # the project holds it already: counted once
        assert usage(server, "team") == 4000
        location = client.start_upload(first)
        assert client.patch_chunk(location, b, start=0).status_code == 202
        assert client.close_upload(location, sha256(b)).status_code == 201
        client.push_blob(first, EMPTY_JSON)
        client.push_blob(first, d)
        assert usage(server, "team") == 9902
        listed = {p["name"]: p for p in api(server, "GET", "/projects")}
        assert (listed["team"]["quota_bytes"], listed["team"]["usage_bytes"]) == (10000, 9902)

        # Refused before a byte is stored: a whole blob, a chunk, a mount, a manifest.
        too_much = client.request(
            "POST", f"/v2/{first}/blobs/uploads/", params={"digest": sha256(c)}, data=c
        )
        assert "9.7 KiB used of 9.8 KiB" in denied(too_much, "3.9 KiB")
        location = client.start_upload(first)
        denied(client.patch_chunk(location, c, start=0), "3.9 KiB")
        client.push_blob(f"{outside}/source", c)
        mount = client.request(
            "POST",
            f"/v2/{first}/blobs/uploads/",
            params={"mount": sha256(c), "from": f"{outside}/source"},
        )
        denied(mount, "3.9 KiB")
        manifest = image_manifest([a, b, d])
        denied(client.put_manifest(first, "v1", manifest), f"{len(manifest)} bytes")
        # Without a declared length, refused once the digest is known, and not kept.
        location = client.start_upload(second)
        assert client.patch_chunk(location, iter([c])).status_code == 202
        denied(client.close_upload(location, sha256(c)), "3.9 KiB")
        assert client.request("HEAD", f"/v2/{second}/blobs/{sha256(c)}").status_code == 404
        assert usage(server, "team") == 9902

        # Deleting frees: the unused blob, then the image and its blobs.
        assert client.request("DELETE", f"/v2/{first}/blobs/{sha256(d)}").status_code == 202
        assert usage(server, "team") == 8002
        pushed = client.push_manifest(first, "v1", image_manifest([a, b]))
        assert usage(server, "team") == 8002 + len(pushed.body)
        denied(
            client.request(
                "POST", f"/v2/{second}/blobs/uploads/", params={"digest": sha256(c)}, data=c
            ),
            "3.9 KiB",
        )
        assert client.request("DELETE", f"/v2/{first}/manifests/{pushed.digest}").status_code == 202
        for name, blob in ((first, a), (first, b), (second, a)):
            assert client.request("DELETE", f"/v2/{name}/blobs/{sha256(blob)}").status_code == 202
        assert usage(server, "team") == 2
        client.push_blob(second, c)
        assert usage(server, "team") == 4002
        assert stored(server, sha256(c))
    finally:
        server.stop()
