"""The spec's Push section for blobs over a real socket: monolithic and chunked uploads, upload
status and cancellation, digest checks, sha512, cross-repository mounts and session scoping."""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator

import pytest
import requests

from tests.integration.oci_client import OciClient, sha256, sha512
from tests.integration.server import Server

FORMS = ["single POST", "POST then PUT", "chunked"]
"""The ways of pushing a blob, as `upload` performs them."""


def uploads(name: str) -> str:
    return f"/v2/{name}/blobs/uploads/"


def upload(
    oci: OciClient, name: str, data: bytes, digest: str, form: str, algorithm: str | None = None
) -> requests.Response:
    """Push `data` in one of the `FORMS`; return the answer to the request that closes it.

    `algorithm` is sent as `digest-algorithm` when a session is opened first.
    """
    if form == "single POST":
        return oci.request("POST", uploads(name), params={"digest": digest}, data=data)
    location = oci.start_upload(name, {"digest-algorithm": algorithm} if algorithm else None)
    if form == "POST then PUT":
        return oci.close_upload(location, digest, data)
    half = len(data) // 2
    if half:
        response = oci.patch_chunk(location, data[:half], start=0)
        assert response.status_code == 202, response.text
        location = response.headers["Location"]
    return oci.close_upload(location, digest, data[half:], start=half)


def assert_blob_created(oci: OciClient, response: requests.Response, data: bytes) -> None:
    """201 with the digest, and a Location from which the blob pulls back byte for byte."""
    assert response.status_code == 201, response.text
    digest = response.headers["Docker-Content-Digest"]
    pulled = oci.request("GET", response.headers["Location"])
    assert pulled.status_code == 200, pulled.text
    assert pulled.headers["Docker-Content-Digest"] == digest
    assert pulled.content == data


def assert_session(oci: OciClient, location: str, received: int) -> None:
    """The upload status: 204 with the session's Location and `Range: 0-<last byte>`."""
    response = oci.request("GET", location)
    assert response.status_code == 204, response.text
    assert response.headers["Range"] == f"0-{received - 1}"
    assert response.headers["Location"].split("?")[0] == location.split("?")[0]


def session_id(location: str) -> str:
    return location.split("?")[0].rstrip("/").rsplit("/", 1)[1]


# Monolithic


def test_post_then_put(oci: OciClient, name: str) -> None:
    data = os.urandom(4096)
    response = oci.request("POST", uploads(name))
    assert response.status_code == 202, response.text
    location = response.headers["Location"]
    assert re.fullmatch(rf"(https?://[^/]+)?/v2/{name}/blobs/uploads/[^/?]+(\?.*)?", location)
    uuid.UUID(session_id(location))  # the session id is a UUID
    put = oci.close_upload(location, sha256(data), data)
    assert put.headers["Docker-Content-Digest"] == sha256(data)
    assert_blob_created(oci, put, data)


def test_single_post(oci: OciClient, name: str) -> None:
    data = os.urandom(4096)
    response = oci.request("POST", uploads(name), params={"digest": sha256(data)}, data=data)
    assert response.headers["Docker-Content-Digest"] == sha256(data)
    assert_blob_created(oci, response, data)


# Chunked

CHUNK_PLANS = {
    # chunk sizes sent by PATCH, with (True) or without (False, streamed) a Content-Range,
    # then the final chunk sent with the closing PUT, if any.
    "ranges, empty PUT": ([(10, True), (15, True)], None),
    "range, final chunk in PUT": ([(10, True)], (15, True)),
    "streamed, empty PUT": ([(10, False), (15, False)], None),
    "streamed, final chunk in PUT without range": ([(10, False)], (15, False)),
    "range then streamed": ([(10, True), (15, False)], None),
    "no PATCH, whole blob in PUT with range": ([], (25, True)),
}


def _streamed(data: bytes) -> Iterator[bytes]:
    """A generator body: requests sends it with Transfer-Encoding: chunked."""
    yield data[:3]
    yield data[3:]


@pytest.mark.parametrize(("patches", "final"), CHUNK_PLANS.values(), ids=CHUNK_PLANS.keys())
def test_chunked_upload(
    oci: OciClient,
    name: str,
    patches: list[tuple[int, bool]],
    final: tuple[int, bool] | None,
) -> None:
    data = os.urandom(sum(size for size, _ in patches) + (final[0] if final else 0))
    location = oci.start_upload(name)
    offset = 0
    for size, ranged in patches:
        chunk = data[offset : offset + size]
        response = oci.patch_chunk(
            location, chunk if ranged else _streamed(chunk), offset if ranged else None
        )
        offset += size
        assert response.status_code == 202, response.text
        assert response.headers["Range"] == f"0-{offset - 1}"
        assert session_id(response.headers["Location"]) == session_id(location)
        location = response.headers["Location"]
    ranged = final is not None and final[1]
    closing = oci.close_upload(location, sha256(data), data[offset:], offset if ranged else None)
    assert_blob_created(oci, closing, data)


def test_upload_status(oci: OciClient, name: str) -> None:
    data = os.urandom(20)
    location = oci.start_upload(name)
    assert oci.patch_chunk(location, data[:10], start=0).status_code == 202
    assert_session(oci, location, 10)
    # The status's Location continues the upload.
    location = oci.request("GET", location).headers["Location"]
    assert oci.patch_chunk(location, data[10:], start=10).status_code == 202
    assert_blob_created(oci, oci.close_upload(location, sha256(data)), data)


@pytest.mark.parametrize("method", ["GET", "PATCH", "PUT", "DELETE"])
def test_cancelled_upload_is_gone(oci: OciClient, name: str, method: str) -> None:
    data = os.urandom(10)
    location = oci.start_upload(name)
    assert oci.patch_chunk(location, data, start=0).status_code == 202
    response = oci.request("DELETE", location, headers={"Content-Length": "0"})
    assert response.status_code == 204, response.text
    response = oci.request(method, location, params={"digest": sha256(data)}, data=data)
    oci.expect_error(response, 404, "BLOB_UPLOAD_UNKNOWN")
    oci.expect_error(oci.request("GET", f"/v2/{name}/blobs/{sha256(data)}"), 404, "BLOB_UNKNOWN")


BAD_CHUNKS = {
    # (bytes already uploaded, method, Content-Range of a 10-byte chunk, status, code)
    "first chunk not at 0": (0, "PATCH", "5-14", 416, "BLOB_UPLOAD_INVALID"),
    "gap": (10, "PATCH", "11-20", 416, "BLOB_UPLOAD_INVALID"),
    "chunk sent again": (10, "PATCH", "0-9", 416, "BLOB_UPLOAD_INVALID"),
    "overlap": (10, "PATCH", "5-14", 416, "BLOB_UPLOAD_INVALID"),
    "final chunk in PUT out of order": (10, "PUT", "20-29", 416, "BLOB_UPLOAD_INVALID"),
    "end before start": (10, "PATCH", "19-10", 416, "BLOB_UPLOAD_INVALID"),
    "malformed range": (10, "PATCH", "ten-twenty", 400, "BLOB_UPLOAD_INVALID"),
    "range disagrees with length": (10, "PATCH", "10-29", 400, "SIZE_INVALID"),
}


@pytest.mark.parametrize(
    ("received", "method", "content_range", "status", "code"),
    BAD_CHUNKS.values(),
    ids=BAD_CHUNKS.keys(),
)
def test_bad_chunk_is_refused_and_the_upload_goes_on(
    oci: OciClient,
    name: str,
    received: int,
    method: str,
    content_range: str,
    status: int,
    code: str,
) -> None:
    data = os.urandom(received + 10)
    location = oci.start_upload(name)
    if received:
        assert oci.patch_chunk(location, data[:received], start=0).status_code == 202
    response = oci.request(
        method,
        location,
        params={"digest": sha256(data)} if method == "PUT" else None,
        data=data[received:],
        headers={"Content-Range": content_range, "Content-Type": "application/octet-stream"},
    )
    oci.expect_error(response, status, code)
    if received:
        assert_session(oci, location, received)
    closing = oci.close_upload(location, sha256(data), data[received:], start=received)
    assert_blob_created(oci, closing, data)


def test_streamed_chunk_longer_than_its_range_is_refused(oci: OciClient, name: str) -> None:
    """Without Content-Length the server counts: nothing past the declared range is kept."""
    data = os.urandom(20)
    location = oci.start_upload(name)
    response = oci.request(
        "PATCH",
        location,
        data=iter([data[:15]]),  # a generator body goes out with chunked transfer encoding
        headers={"Content-Range": "0-9", "Content-Type": "application/octet-stream"},
    )
    oci.expect_error(response, 400, "SIZE_INVALID")
    status = oci.request("GET", location)
    assert (status.status_code, status.headers["Range"]) == (204, "0-0")  # nothing kept
    closing = oci.close_upload(location, sha256(data), data, start=0)
    assert_blob_created(oci, closing, data)


# Digests


@pytest.mark.parametrize("form", FORMS)
def test_digest_mismatch_stores_nothing(oci: OciClient, name: str, form: str) -> None:
    data, claimed = os.urandom(100), sha256(os.urandom(100))
    oci.expect_error(upload(oci, name, data, claimed, form), 400, "DIGEST_INVALID")
    for digest in [claimed, sha256(data)]:
        response = oci.request("GET", f"/v2/{name}/blobs/{digest}")
        oci.expect_error(response, 404, "BLOB_UNKNOWN")


def test_closing_put_without_digest(oci: OciClient, name: str) -> None:
    data = os.urandom(100)
    location = oci.start_upload(name)
    oci.expect_error(oci.close_upload(location, None, data), 400, "DIGEST_INVALID")
    # The session is untouched: the client may close it properly.
    assert_blob_created(oci, oci.close_upload(location, sha256(data), data), data)


BAD_DIGESTS = {
    "not hex": ("sha256:" + "z" * 64, "DIGEST_INVALID"),
    "uppercase hex": ("sha256:" + "A" * 64, "DIGEST_INVALID"),
    "too short": ("sha256:" + "a" * 63, "DIGEST_INVALID"),
    "no algorithm": ("a" * 64, "DIGEST_INVALID"),
    "empty": ("", "DIGEST_INVALID"),
    "md5": ("md5:" + "a" * 32, "UNSUPPORTED"),
    "sha384": ("sha384:" + "a" * 96, "UNSUPPORTED"),
}


@pytest.mark.parametrize("form", [*FORMS, "mount"])
@pytest.mark.parametrize(("digest", "code"), BAD_DIGESTS.values(), ids=BAD_DIGESTS.keys())
def test_malformed_or_unsupported_digest(
    oci: OciClient, name: str, digest: str, code: str, form: str
) -> None:
    data = os.urandom(100)
    if form == "mount":
        response = oci.request(
            "POST", uploads(name), params={"mount": digest, "from": "test/hosted/x"}
        )
    else:
        response = upload(oci, name, data, digest, form)
    oci.expect_error(response, 400, code)


@pytest.mark.parametrize("algorithm", ["md5", "SHA256", ""])
def test_unsupported_digest_algorithm_parameter(oci: OciClient, name: str, algorithm: str) -> None:
    response = oci.request("POST", uploads(name), params={"digest-algorithm": algorithm})
    oci.expect_error(response, 400, "UNSUPPORTED")


@pytest.mark.parametrize(
    ("form", "algorithm"),
    [
        ("single POST", None),
        ("POST then PUT", "sha512"),
        ("chunked", "sha512"),
        ("POST then PUT", None),
        ("chunked", None),
    ],
    ids=[
        "single POST",
        "POST then PUT, sha512 session",
        "chunked, sha512 session",
        "POST then PUT, sha256 session",
        "chunked, sha256 session",
    ],
)
def test_sha512_end_to_end(oci: OciClient, name: str, form: str, algorithm: str | None) -> None:
    data = os.urandom(3000)
    response = upload(oci, name, data, sha512(data), form, algorithm)
    assert response.headers["Docker-Content-Digest"] == sha512(data)
    assert_blob_created(oci, response, data)
    pulled = oci.request("GET", f"/v2/{name}/blobs/{sha512(data)}")
    assert pulled.status_code == 200
    assert pulled.headers["Docker-Content-Digest"] == sha512(data)
    assert pulled.content == data
    # Only what was pushed is addressable: not the sha256 of the same bytes.
    oci.expect_error(oci.request("HEAD", f"/v2/{name}/blobs/{sha256(data)}"), 404, "BLOB_UNKNOWN")


def test_sha512_session_closed_with_wrong_digest(oci: OciClient, name: str) -> None:
    data = os.urandom(100)
    wrong = sha512(os.urandom(100))
    response = upload(oci, name, data, wrong, "chunked", "sha512")
    oci.expect_error(response, 400, "DIGEST_INVALID")
    oci.expect_error(oci.request("GET", f"/v2/{name}/blobs/{sha512(data)}"), 404, "BLOB_UNKNOWN")


@pytest.mark.parametrize("form", FORMS)
def test_zero_length_blob(oci: OciClient, name: str, form: str) -> None:
    response = upload(oci, name, b"", sha256(b""), form)
    assert_blob_created(oci, response, b"")
    head = oci.request("HEAD", f"/v2/{name}/blobs/{sha256(b'')}")
    assert head.status_code == 200
    assert head.headers["Content-Length"] == "0"


@pytest.mark.parametrize("form", FORMS)
def test_same_blob_pushed_twice(oci: OciClient, name: str, form: str) -> None:
    data = os.urandom(1000)
    for _ in range(2):
        assert_blob_created(oci, upload(oci, name, data, sha256(data), form), data)


# Mounts


@pytest.mark.parametrize(
    ("source_in_other", "target_in_other"),
    [(False, False), (True, False), (False, True)],
    ids=["same repository", "from other repository", "into other repository"],
)
def test_mount(
    server: Server,
    oci: OciClient,
    other_repository: str,
    source_in_other: bool,
    target_in_other: bool,
) -> None:
    repository = {False: "test/hosted", True: other_repository}
    source = server.unique_name(repository[source_in_other])
    target = server.unique_name(repository[target_in_other])
    data = os.urandom(500)
    digest = oci.push_blob(source, data)
    response = oci.request("POST", uploads(target), params={"mount": digest, "from": source})
    assert response.headers["Docker-Content-Digest"] == digest
    assert response.headers["Location"].split("?")[0] == f"/v2/{target}/blobs/{digest}"
    assert_blob_created(oci, response, data)
    assert oci.request("GET", f"/v2/{source}/blobs/{digest}").content == data


MOUNT_FALLBACKS = {
    "image lacking the blob": "lacking",
    "new image": "new",
    "nonexistent repository": "test/nope/img",
    "nonexistent project": "nope/nope/img",
    "invalid name": "Not/A/Name",
    "no from": None,
}


@pytest.mark.parametrize("source", MOUNT_FALLBACKS.values(), ids=MOUNT_FALLBACKS.keys())
def test_mount_falls_back_to_an_upload(
    server: Server, oci: OciClient, other_repository: str, name: str, source: str | None
) -> None:
    """The blob exists in the registry, but not in the `from` name: no mount, an upload."""
    data = os.urandom(500)
    digest = oci.push_blob(server.unique_name(other_repository), data)
    if source == "lacking":
        source = server.unique_name()
        oci.push_blob(source, os.urandom(10))
    elif source == "new":
        source = server.unique_name()
    params = {"mount": digest, **({"from": source} if source is not None else {})}
    response = oci.request("POST", uploads(name), params=params)
    assert response.status_code == 202, response.text
    location = response.headers["Location"]
    oci.expect_error(oci.request("GET", f"/v2/{name}/blobs/{digest}"), 404, "BLOB_UNKNOWN")
    assert_blob_created(oci, oci.close_upload(location, digest, data), data)


# Session scoping and names


@pytest.mark.parametrize("method", ["GET", "PATCH", "PUT", "DELETE"])
@pytest.mark.parametrize("elsewhere", ["same repository", "other repository"])
def test_session_used_under_another_name(
    server: Server,
    oci: OciClient,
    other_repository: str,
    name: str,
    elsewhere: str,
    method: str,
) -> None:
    data = os.urandom(20)
    location = oci.start_upload(name)
    assert oci.patch_chunk(location, data[:10], start=0).status_code == 202
    other = server.unique_name(
        "test/hosted" if elsewhere == "same repository" else other_repository
    )
    oci.push_blob(other, b"other exists")
    foreign = location.replace(f"/v2/{name}/", f"/v2/{other}/")
    response = oci.request(method, foreign, params={"digest": sha256(data)}, data=data[10:])
    oci.expect_error(response, 404, "BLOB_UPLOAD_UNKNOWN")
    assert_session(oci, location, 10)
    closing = oci.close_upload(location, sha256(data), data[10:], start=10)
    assert_blob_created(oci, closing, data)


@pytest.mark.parametrize("method", ["GET", "PATCH", "PUT", "DELETE"])
@pytest.mark.parametrize(
    "upload_id",
    ["5f0c3e1e7a1b4c7e9d2a6b8c0d1e2f3a", "5f0c3e1e-7a1b-4c7e-9d2a-6b8c0d1e2f3a", "not-a-session"],
    ids=["hex uuid", "dashed uuid", "no uuid"],
)
def test_unknown_session(oci: OciClient, name: str, upload_id: str, method: str) -> None:
    data = b"data"
    response = oci.request(
        method, uploads(name) + upload_id, params={"digest": sha256(data)}, data=data
    )
    oci.expect_error(response, 404, "BLOB_UPLOAD_UNKNOWN")


@pytest.mark.parametrize(
    ("target", "status", "code"),
    [
        ("nope/hosted/app", 404, "NAME_UNKNOWN"),
        ("test/nope/app", 404, "NAME_UNKNOWN"),
        ("test/hosted/App", 400, "NAME_INVALID"),
        ("test/hosted/a//b", 400, "NAME_INVALID"),
        ("test/hosted/app-", 400, "NAME_INVALID"),
    ],
    ids=["unknown project", "unknown repository", "uppercase", "empty component", "dash"],
)
@pytest.mark.parametrize("form", ["open session", "single POST", "mount"])
def test_push_to_bad_name(oci: OciClient, target: str, status: int, code: str, form: str) -> None:
    data = os.urandom(10)
    params = {
        "open session": {},
        "single POST": {"digest": sha256(data)},
        "mount": {"mount": sha256(data), "from": "test/hosted/x"},
    }[form]
    response = oci.request("POST", uploads(target), params=params, data=data)
    oci.expect_error(response, status, code)
