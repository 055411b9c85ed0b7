"""A registry on S3-compatible object storage (moto on a local port) through a relay that
can go down: while the object store is unreachable or failing, requests fail with 503 and
Retry-After; once it is back, everything stored before is there and pushes work again,
without a restart. A store that refuses the registry's settings (a missing bucket, unknown
credentials) is said to be so: in the log, by /readyz and to clients. Also: blob downloads
redirected to presigned URLs."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.integration.oci_client import OciClient, sha256
from tests.integration.server import Server
from tests.integration.test_fsck import pull_whole
from tests.integration.upstream import FaultRelay
from tests.s3server import S3Server


@pytest.fixture
def relay(s3_server: S3Server) -> Iterator[FaultRelay]:
    instance = FaultRelay(s3_server.endpoint_url)
    instance.start()
    yield instance
    instance.close()


def s3_registry(s3_server: S3Server, data_dir: Path, **settings: str) -> Server:
    server = Server(data_dir)
    server.env = {**s3_server.settings(s3_server.create_bucket()), **settings}
    server.create_repository("test", "hosted")
    return server


def expect_unavailable(response: requests.Response) -> None:
    assert response.status_code == 503, (response.status_code, response.text)
    assert response.headers["Retry-After"] == "5"
    if response.request.method != "HEAD":
        message = response.json()["errors"][0]["message"]
        assert "object store is unavailable" in message, message


def test_an_outage_of_the_object_store_is_a_503_and_nothing_is_lost(
    s3_server: S3Server, relay: FaultRelay, tmp_path: Path
) -> None:
    server = s3_registry(s3_server, tmp_path / "data", CARGOHOLD_S3_ENDPOINT_URL=relay.url)
    server.start()
    try:
        client = OciClient(server.url, server.admin_auth)
        name = server.unique_name()
        image = client.push_image(name, layers=2)
        layer = json.loads(image.body)["layers"][0]["digest"]
        upload = client.start_upload(name)

        relay.stop()  # connections refused
        ready = requests.get(f"{server.url}/readyz", timeout=30)
        assert ready.status_code == 503 and ready.json()["reason"] == "blob store does not answer"
        for method in ("GET", "HEAD"):
            expect_unavailable(client.request(method, f"/v2/{name}/blobs/{layer}"))
        expect_unavailable(client.request("PATCH", upload, data=b"a chunk"))
        expect_unavailable(
            client.request(
                "POST", f"/v2/{name}/blobs/uploads/", params={"digest": sha256(b"x")}, data=b"x"
            )
        )
        relay.start()
        relay.fail(500, ".*")  # up, but failing
        expect_unavailable(client.request("GET", f"/v2/{name}/blobs/{layer}"))
        relay.clear()

        assert requests.get(f"{server.url}/readyz", timeout=30).status_code == 200
        pull_whole(client, name, image)
        client.push_image(server.unique_name(), layers=2)
        assert client.request("PATCH", upload, data=b"a chunk").status_code == 202
    finally:
        server.stop()


def expect_refused(response: requests.Response, answer: str) -> None:
    """A 503 that says the store refused, with its answer, and no Retry-After: waiting alone
    does not fix a setting."""
    assert response.status_code == 503, (response.status_code, response.text)
    assert "Retry-After" not in response.headers
    error = response.json()["errors"][0]
    assert error["code"] == "UNAVAILABLE"
    assert "object store refused the request" in error["message"], error
    assert answer in error["message"], error


def expect_not_ready(server: Server, answer: str) -> None:
    ready = requests.get(f"{server.url}/readyz", timeout=30)
    assert ready.status_code == 503 and "Retry-After" not in ready.headers
    assert ready.json()["reason"].startswith(f"blob store refused: {answer}"), ready.json()


def push_one_blob(client: OciClient, name: str) -> requests.Response:
    data = uuid.uuid4().bytes
    return client.request(
        "POST", f"/v2/{name}/blobs/uploads/", params={"digest": sha256(data)}, data=data
    )


def test_a_missing_bucket_is_said_until_it_is_created(s3_server: S3Server, tmp_path: Path) -> None:
    """The node starts (as distribution does) and logs what the store answered, for which
    bucket at which endpoint; once the bucket exists it serves, without a restart."""
    bucket = f"cargohold-missing-{uuid.uuid4().hex[:12]}"
    server = s3_registry(s3_server, tmp_path / "data", CARGOHOLD_S3_BUCKET=bucket)
    server.start()
    try:
        client = OciClient(server.url, server.admin_auth)
        name = server.unique_name()
        expect_not_ready(server, "NoSuchBucket")
        expect_refused(push_one_blob(client, name), "NoSuchBucket")
        log = server.log()
        assert "the blob store cannot serve" in log  # at start
        assert f"at {s3_server.endpoint_url} refused ListObjectsV2 on bucket {bucket}" in log
        assert f"refused PutObject on bucket {bucket}: 404 NoSuchBucket" in log

        s3_server.create_bucket(bucket)
        assert requests.get(f"{server.url}/readyz", timeout=30).status_code == 200
        pushed = push_one_blob(client, name)
        assert pushed.status_code == 201

        # Gone again: a blob the registry holds is not "unknown", the store refuses.
        s3_server.delete_bucket(bucket)
        for method in ("GET", "HEAD"):
            answer = client.request(method, pushed.headers["Location"])
            assert answer.status_code == 503 and "Retry-After" not in answer.headers
        expect_refused(client.request("GET", pushed.headers["Location"]), "NoSuchBucket")
    finally:
        server.stop()


def test_credentials_the_store_refuses_are_said(s3_server: S3Server, tmp_path: Path) -> None:
    server = s3_registry(s3_server, tmp_path / "data")
    client = OciClient(server.url, server.admin_auth)
    name = server.unique_name()
    bucket = server.env["CARGOHOLD_S3_BUCKET"]
    try:
        with s3_server.refusing_every_credential():
            server.start()
            expect_not_ready(server, "InvalidAccessKeyId")
            expect_refused(push_one_blob(client, name), "InvalidAccessKeyId")
            assert f"refused PutObject on bucket {bucket}: 403 InvalidAccessKeyId" in server.log()
        assert requests.get(f"{server.url}/readyz", timeout=30).status_code == 200
        assert push_one_blob(client, name).status_code == 201
    finally:
        server.stop()


def test_presigned_redirects_send_clients_to_the_object_store(
    s3_server: S3Server, tmp_path: Path
) -> None:
    server = s3_registry(s3_server, tmp_path / "data", CARGOHOLD_S3_PRESIGNED_REDIRECTS="true")
    server.start()
    try:
        client = OciClient(server.url, server.admin_auth)
        name = server.unique_name()
        data = b"a layer fetched from the object store"
        digest = client.push_blob(name, data)
        redirect = client.request("GET", f"/v2/{name}/blobs/{digest}", allow_redirects=False)
        assert redirect.status_code == 307
        assert redirect.headers["Location"].startswith(s3_server.endpoint_url)
        assert redirect.headers["Docker-Content-Digest"] == digest
        head = client.request("HEAD", f"/v2/{name}/blobs/{digest}")
        assert head.status_code == 200 and head.headers["Content-Length"] == str(len(data))
        followed = requests.get(redirect.headers["Location"], timeout=10)
        assert followed.status_code == 200 and followed.content == data
    finally:
        server.stop()
