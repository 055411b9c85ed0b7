"""PostgreSQL out of reach for a while: requests that need it fail cleanly (503, Retry-After,
an error naming the problem), nothing acknowledged is lost, no half-written rows remain, and
Cargohold recovers without a restart. The database server here is this module's own, since
it is stopped and started again."""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests.integration.oci_client import OCI_MANIFEST, descriptor, sha256
from tests.integration.postgres import MISSING, Postgres, binaries
from tests.integration.server import Server

PUSHERS = 4
OUTAGE_SECONDS = 2.0
RECOVERY_SECONDS = 30.0
# Every pusher stops after this many attempts, or when told.
MAX_PUSHES = 400
RETRY_PAUSE_SECONDS = 0.05


@pytest.fixture
def own_database() -> Iterator[Postgres]:
    bin_dir = binaries()
    if bin_dir is None:
        pytest.skip(MISSING)
    instance = Postgres.launch(bin_dir)
    yield instance
    instance.remove()


@pytest.fixture
def on_postgres(own_database: Postgres, tmp_path: Path) -> Iterator[Server]:
    server = Server(tmp_path / "data", database_url=own_database.create_database())
    server.create_repository("test", "hosted")
    server.start()
    yield server
    server.stop()


def _expect_unavailable(response: requests.Response, code_in_body: bool = True) -> None:
    context = (response.request.method, response.url, response.status_code, response.text)
    assert response.status_code == 503, context
    assert 1 <= int(response.headers["Retry-After"]) <= 60, context
    text = json.dumps(response.json())
    assert "metadata database is unavailable" in text, context
    if code_in_body:
        assert [e["code"] for e in response.json()["errors"]] == ["UNAVAILABLE"], context


def _wait_until_ready(server: Server) -> None:
    deadline = time.monotonic() + RECOVERY_SECONDS
    while requests.get(server.url + "/readyz", timeout=10).status_code != 200:
        assert time.monotonic() < deadline, "not ready again after the database came back"
        time.sleep(0.1)


def test_requests_fail_cleanly_while_the_database_is_down_and_succeed_after(
    own_database: Postgres, on_postgres: Server
) -> None:
    server, auth = on_postgres, on_postgres.admin_auth
    name = server.unique_name()
    uploads = f"{server.url}/v2/{name}/blobs/uploads/"
    assert requests.post(uploads, auth=auth, timeout=30).status_code == 202
    own_database.stop()
    try:
        _expect_unavailable(requests.post(uploads, auth=auth, timeout=30))
        _expect_unavailable(
            requests.get(f"{server.url}/v2/{name}/tags/list", auth=auth, timeout=30)
        )
        _expect_unavailable(
            requests.get(f"{server.url}/api/v1/projects", auth=auth, timeout=30),
            code_in_body=False,
        )
        ready = requests.get(server.url + "/readyz", timeout=30)
        assert ready.status_code == 503
        assert requests.get(server.url + "/healthz", timeout=30).status_code == 200
    finally:
        own_database.start()
    _wait_until_ready(server)
    assert requests.post(uploads, auth=auth, timeout=30).status_code == 202
    assert requests.get(f"{server.url}/api/v1/projects", auth=auth, timeout=30).status_code == 200


@dataclass(frozen=True)
class Acknowledged:
    name: str
    tag: str
    manifest: bytes
    layers: tuple[str, ...]


class Pusher(threading.Thread):
    """Pushes small images one after the other; keeps those whose manifest got 201, and
    every other answer, until told to stop."""

    def __init__(self, server: Server, stop: threading.Event) -> None:
        super().__init__()
        self.server = server
        self.stop_pushing = stop
        self.http = requests.Session()
        self.http.auth = server.admin_auth
        self.acknowledged: list[Acknowledged] = []
        self.refused: list[requests.Response] = []

    def _ok(self, response: requests.Response, status: int) -> bool:
        if response.status_code == status:
            return True
        self.refused.append(response)
        # As a client retrying would, and so that refusals that come back at once during
        # the outage do not use up MAX_PUSHES before the database is back.
        time.sleep(RETRY_PAUSE_SECONDS)
        return False

    def push(self) -> None:
        name = self.server.unique_name()
        base = f"{self.server.url}/v2/{name}"
        layers = [os.urandom(2048) for _ in range(2)]
        for data in [b"{}", *layers]:
            pushed = self.http.post(
                f"{base}/blobs/uploads/", params={"digest": sha256(data)}, data=data, timeout=30
            )
            if not self._ok(pushed, 201):
                return
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": descriptor("application/vnd.oci.empty.v1+json", b"{}"),
                "layers": [descriptor("application/vnd.oci.image.layer.v1.tar", d) for d in layers],
            }
        ).encode()
        tag = f"t-{uuid.uuid4().hex[:8]}"
        put = self.http.put(
            f"{base}/manifests/{tag}",
            data=manifest,
            headers={"Content-Type": OCI_MANIFEST},
            timeout=30,
        )
        if self._ok(put, 201):
            digests = tuple(sha256(d) for d in layers)
            self.acknowledged.append(Acknowledged(name, tag, manifest, digests))

    def run(self) -> None:
        for _ in range(MAX_PUSHES):
            if self.stop_pushing.is_set():
                return
            self.push()


def test_a_database_restart_during_pushes_loses_nothing_acknowledged(
    own_database: Postgres, on_postgres: Server
) -> None:
    server = on_postgres
    stop = threading.Event()
    pushers = [Pusher(server, stop) for _ in range(PUSHERS)]
    for pusher in pushers:
        pusher.start()
    try:
        time.sleep(1.0)
        own_database.stop()
        time.sleep(OUTAGE_SECONDS)
        own_database.start()
        _wait_until_ready(server)
        before = sum(len(p.acknowledged) for p in pushers)
        deadline = time.monotonic() + RECOVERY_SECONDS
        while sum(len(p.acknowledged) for p in pushers) < before + PUSHERS:
            assert time.monotonic() < deadline, "pushes do not succeed after the restart"
            time.sleep(0.1)
    finally:
        stop.set()
        for pusher in pushers:
            pusher.join(60)
    refused = [response for pusher in pushers for response in pusher.refused]
    assert refused, "no push failed: the database was not down while pushing"
    for response in refused:
        _expect_unavailable(response)
    acknowledged = [image for pusher in pushers for image in pusher.acknowledged]
    for image in acknowledged:
        base = f"{server.url}/v2/{image.name}"
        pulled = requests.get(f"{base}/manifests/{image.tag}", auth=server.admin_auth, timeout=30)
        assert pulled.content == image.manifest
        for digest in image.layers:
            blob = requests.get(f"{base}/blobs/{digest}", auth=server.admin_auth, timeout=30)
            assert sha256(blob.content) == digest
    fsck = server.cli("fsck", "--json", check=False)
    report = json.loads(fsck.stdout)
    assert fsck.returncode == 0, fsck.stderr
    assert report["clean"], report
    assert report["incomplete_manifests"] == [], report
