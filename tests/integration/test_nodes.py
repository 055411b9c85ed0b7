"""Several nodes behind a load balancer: two `cargohold serve` processes on different ports
over one PostgreSQL database and one blob store, each with a data folder of its own, so that
nothing but the database and the blobs is shared (not the file locks). Every test runs with
the blobs in one folder (`storage_dir`, shared storage) and in one S3 bucket (moto). Any
node serves any request."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from tests.integration.auth_support import create_user, expect, fetch_token, repository_scope
from tests.integration.clients import oci_image
from tests.integration.oci_client import OciClient, sha256
from tests.integration.postgres import Postgres
from tests.integration.server import Server
from tests.integration.upstream import ReferenceRegistry
from tests.s3server import S3Server

CONCURRENT_PULLS = 20
LOGIN_FAILURE_LIMIT = 3
CHUNK = 64 * 1024


@dataclass(frozen=True)
class Nodes:
    a: Server
    b: Server

    @property
    def both(self) -> tuple[Server, Server]:
        return (self.a, self.b)


@pytest.fixture(scope="module", params=["folder", "bucket"])
def s3(request: pytest.FixtureRequest) -> S3Server | None:
    """The S3 server whose bucket the nodes share, or None: they share a blob folder."""
    return request.getfixturevalue("s3_server") if request.param == "bucket" else None


@contextlib.contextmanager
def two_nodes(
    database: Postgres, s3: S3Server | None, workdir: Path, *setup: list[str]
) -> Iterator[Nodes]:
    """Two nodes over a fresh database and a fresh blob folder or bucket, after the `setup`
    commands, with failed sign-ins throttled after a few."""
    url = database.create_database()
    blobs = {} if s3 is None else s3.settings(s3.create_bucket())
    pair = Nodes(
        *(
            Server(
                workdir / name, database_url=url, storage_dir=workdir / "storage", blob_store=blobs
            )
            for name in ("a", "b")
        )
    )
    for command in setup:
        pair.a.cli(*command)
    try:
        for node in pair.both:
            node.start(env={"CARGOHOLD_LOGIN_FAILURE_LIMIT": str(LOGIN_FAILURE_LIMIT)})
        yield pair
    finally:
        for node in pair.both:
            node.stop()


HOSTED = (["project", "create", "test"], ["repo", "create", "test", "hosted", "--type", "hosted"])


@pytest.fixture(scope="module")
def nodes(
    database: Postgres, s3: S3Server | None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Nodes]:
    """Two nodes the module's tests share, with the hosted repository `test/hosted`."""
    with two_nodes(database, s3, tmp_path_factory.mktemp("nodes"), *HOSTED) as pair:
        yield pair


@pytest.fixture
def own_nodes(database: Postgres, s3: S3Server | None, tmp_path: Path) -> Iterator[Nodes]:
    """Two nodes of the test's own, for a test that kills one."""
    with two_nodes(database, s3, tmp_path, *HOSTED) as pair:
        yield pair


def _path(location: str) -> str:
    """A Location without its node: the client sends it to whichever node it likes."""
    parts = urlsplit(location)
    return f"{parts.path}?{parts.query}" if parts.query else parts.path


def test_pushed_through_one_node_pulled_through_the_other(nodes: Nodes) -> None:
    name = nodes.a.unique_name()
    pushed = OciClient(nodes.a.url, nodes.a.admin_auth).push_image(name, "v1", layers=2)
    other = OciClient(nodes.b.url, nodes.b.admin_auth)
    manifest = other.get_manifest(name, "v1")
    assert manifest.status_code == 200
    assert manifest.content == pushed.body
    assert manifest.headers["Docker-Content-Digest"] == pushed.digest
    for layer in manifest.json()["layers"]:
        blob = other.request("GET", f"/v2/{name}/blobs/{layer['digest']}")
        assert blob.status_code == 200
        assert sha256(blob.content) == layer["digest"]
        # In the folder or the bucket both nodes are configured with.
        assert nodes.b.blobs.read(layer["digest"]) == blob.content
    assert other.tags(name) == ["v1"]


def test_a_chunked_upload_whose_patches_alternate_between_the_nodes(nodes: Nodes) -> None:
    name = nodes.a.unique_name()
    clients = [OciClient(node.url, node.admin_auth) for node in nodes.both]
    data = os.urandom(6 * CHUNK + 123)
    location = _path(clients[0].start_upload(name))
    for index, offset in enumerate(range(0, len(data), CHUNK)):
        response = clients[index % 2].patch_chunk(
            location, data[offset : offset + CHUNK], start=offset
        )
        assert response.status_code == 202, response.text
        assert response.headers["Range"] == f"0-{min(offset + CHUNK, len(data)) - 1}"
        location = _path(response.headers["Location"])
    closed = clients[1].close_upload(location, sha256(data))
    assert closed.status_code == 201, closed.text
    pulled = clients[0].request("GET", f"/v2/{name}/blobs/{sha256(data)}")
    assert pulled.content == data


def test_two_patches_to_one_upload_at_once_on_the_two_nodes_one_is_refused(
    nodes: Nodes,
) -> None:
    """Both PATCHes start at byte 0 and stream at the same time, one to each node: one is
    taken whole, the other is answered 416 with the Range the upload then holds (the spec's
    answer to a chunk out of order), and the bytes never mix."""
    name = nodes.a.unique_name()
    clients = [OciClient(node.url, node.admin_auth) for node in nodes.both]
    location = _path(clients[0].start_upload(name))
    chunks = [os.urandom(4 * CHUNK) for _ in clients]
    both_streaming = threading.Barrier(len(clients))

    def streamed(data: bytes) -> Iterator[bytes]:
        yield data[:CHUNK]
        # Each node has the first bytes of its request before either has the rest.
        both_streaming.wait(30)
        time.sleep(0.3)
        yield data[CHUNK:]

    def patch(index: int) -> None:
        answers[index] = clients[index].request(
            "PATCH",
            location,
            data=streamed(chunks[index]),
            headers={
                "Content-Type": "application/octet-stream",
                "Content-Range": f"0-{len(chunks[index]) - 1}",
            },
        )

    answers: list[requests.Response | None] = [None, None]
    threads = [threading.Thread(target=patch, args=(index,)) for index in range(len(clients))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    # (A response is false when its status is an error.)
    statuses = [None if answer is None else answer.status_code for answer in answers]
    assert sorted(statuses, key=str) == [202, 416], statuses
    taken = chunks[statuses.index(202)]
    refused = answers[statuses.index(416)]
    assert refused is not None
    assert refused.json()["errors"][0]["code"] == "BLOB_UPLOAD_INVALID"
    assert refused.headers["Range"] == f"0-{len(taken) - 1}"
    closed = clients[1].close_upload(location, sha256(taken))
    assert closed.status_code == 201, closed.text
    assert clients[0].request("GET", f"/v2/{name}/blobs/{sha256(taken)}").content == taken


def test_a_node_killed_in_the_middle_of_an_upload_the_client_goes_on_with_the_other(
    own_nodes: Nodes,
) -> None:
    """The node dies while a PATCH streams to it; the client asks the other node where the
    upload stands and sends the rest there."""
    nodes = own_nodes
    name = nodes.a.unique_name()
    first, second = (OciClient(node.url, node.admin_auth) for node in nodes.both)
    data = os.urandom(8 * CHUNK)
    location = _path(first.start_upload(name))
    assert first.patch_chunk(location, data[:CHUNK], start=0).status_code == 202
    half_sent, killed = threading.Event(), threading.Event()

    def streamed() -> Iterator[bytes]:
        yield data[CHUNK : 2 * CHUNK]
        half_sent.set()
        killed.wait(30)
        yield data[2 * CHUNK :]

    def kill() -> None:
        half_sent.wait(30)
        time.sleep(0.2)  # for the node to write what it received
        nodes.a.kill()
        killed.set()

    killer = threading.Thread(target=kill)
    killer.start()
    with pytest.raises(requests.ConnectionError):
        first.patch_chunk(location, streamed())
    killer.join(30)
    status = second.request("GET", location)
    assert status.status_code == 204, status.text
    received = int(status.headers["Range"].split("-")[1]) + 1
    assert CHUNK <= received <= 2 * CHUNK
    rest = second.patch_chunk(location, data[received:], start=received)
    assert rest.status_code == 202, rest.text
    closed = second.close_upload(_path(rest.headers["Location"]), sha256(data))
    assert closed.status_code == 201, closed.text
    assert second.request("GET", f"/v2/{name}/blobs/{sha256(data)}").content == data


def test_a_token_issued_by_one_node_is_accepted_by_the_other(nodes: Nodes) -> None:
    """The signing key is in the database: every node signs with it and checks with it."""
    name = nodes.a.unique_name()
    token = fetch_token(nodes.a, nodes.a.admin_auth, [repository_scope(name, "pull,push")])
    keys = [requests.get(n.url + "/.well-known/jwks.json", timeout=30).json() for n in nodes.both]
    assert keys[0] == keys[1]
    bearer = {"Authorization": f"Bearer {token}"}
    blob = os.urandom(1000)
    pushed = requests.post(
        f"{nodes.b.url}/v2/{name}/blobs/uploads/",
        params={"digest": sha256(blob)},
        data=blob,
        headers=bearer,
        timeout=30,
    )
    assert pushed.status_code == 201, pushed.text
    pulled = requests.get(
        f"{nodes.a.url}/v2/{name}/blobs/{sha256(blob)}", headers=bearer, timeout=30
    )
    assert pulled.content == blob


def test_failed_sign_ins_are_counted_across_the_nodes(nodes: Nodes) -> None:
    create_user(nodes.a, "mallory-target", "the-right-password")
    for attempt in range(LOGIN_FAILURE_LIMIT):
        node = nodes.both[attempt % 2]
        response = requests.get(node.url + "/v2/", auth=("mallory-target", "wrong"), timeout=30)
        expect(response, 401, "UNAUTHORIZED")
    for node in nodes.both:
        response = requests.get(
            node.url + "/v2/", auth=("mallory-target", "the-right-password"), timeout=30
        )
        expect(response, 429, "TOOMANYREQUESTS")


def test_cold_proxy_pulls_spread_over_both_nodes_fetch_each_blob_once(
    database: Postgres, s3: S3Server | None, tmp_path: Path
) -> None:
    """20 concurrent pulls of each blob, half through each node: one upstream request per
    blob. Each node has its own data folder, so only PostgreSQL's advisory locks are shared."""
    with ReferenceRegistry(tmp_path / "upstream") as upstream:
        image = oci_image(tmp_path / "layout", "v1", layers=3, layer_size=256 * 1024)
        upstream.seed(image, "team/app", "v1")
        proxy = ["repo", "create", "test", "hub", "--type", "proxy", "--remote-url", upstream.url]
        with two_nodes(database, s3, tmp_path, ["project", "create", "test"], proxy) as pair:
            digests = sorted(blob.digest for blob in image.blobs)
            failures: list[str] = []

            def pull(node: Server, digest: str, barrier: threading.Barrier) -> None:
                barrier.wait(timeout=30)
                response = requests.get(
                    f"{node.url}/v2/test/hub/team/app/blobs/{digest}",
                    auth=node.admin_auth,
                    timeout=60,
                )
                if response.status_code != 200 or sha256(response.content) != digest:
                    failures.append(f"{node.url} {digest}: {response.status_code}")

            for digest in digests:
                barrier = threading.Barrier(CONCURRENT_PULLS)
                threads = [
                    threading.Thread(target=pull, args=(pair.both[i % 2], digest, barrier))
                    for i in range(CONCURRENT_PULLS)
                ]
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join(timeout=120)
            assert failures == []
            upstream.wait_for_log(lambda _: sum(upstream.blob_requests().values()) >= len(digests))
            assert upstream.blob_requests() == {digest: 1 for digest in digests}
