"""Storage lifecycle on a real server: pull statistics written in batches and at a
graceful stop, project quotas refused with DENIED and freed by deletes, cleanup policies
whose dry run lists exactly what the real run deletes, proxy caches evicted by age and size."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

from tests.integration.oci_client import OciClient
from tests.integration.server import Server

API = "/api/v1"
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
