"""The spec's Pull section over a real socket: manifests and blobs by GET and HEAD, name and
reference grammar, Range requests, content negotiation, and blobs readable only where pushed."""

from __future__ import annotations

import os
from dataclasses import dataclass

import pytest

from tests.integration.oci_client import (
    OCI_INDEX,
    OCI_MANIFEST,
    OciClient,
    Pushed,
    descriptor,
    sha256,
)
from tests.integration.server import Server

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_TYPES = f"{DOCKER_MANIFEST}, {DOCKER_MANIFEST_LIST}"
EVERY_MANIFEST_TYPE = f"{OCI_MANIFEST}, {OCI_INDEX}, {DOCKER_TYPES}"

UNKNOWN_DIGEST = sha256(b"never pushed anywhere")
BLOB = bytes(range(100))
METHODS = pytest.mark.parametrize("method", ["GET", "HEAD"])


@dataclass(frozen=True)
class Image:
    name: str
    tag: str
    manifest: Pushed
    media_type: str


def _push_docker_image(client: OciClient, name: str, tag: str) -> Pushed:
    """A Docker schema 2 image: Docker config and layer types, pushed as such."""
    config = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers"}}'
    layer = os.urandom(512)
    client.push_blob(name, config)
    client.push_blob(name, layer)
    manifest = {
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": descriptor(DOCKER_CONFIG, config),
        "layers": [descriptor(DOCKER_LAYER, layer)],
    }
    return client.push_manifest(name, tag, manifest, DOCKER_MANIFEST)


@pytest.fixture(scope="module")
def images(server: Server) -> dict[str, Image]:
    """One OCI and one Docker schema 2 image, each in an image name of its own, tagged `v1`.

    The OCI image's name also holds the blob `BLOB`.
    """
    client = OciClient(server.url, server.admin_auth)
    oci_name, docker_name = server.unique_name(), server.unique_name()
    client.push_blob(oci_name, BLOB)
    return {
        "oci": Image(oci_name, "v1", client.push_image(oci_name, "v1"), OCI_MANIFEST),
        "docker": Image(
            docker_name, "v1", _push_docker_image(client, docker_name, "v1"), DOCKER_MANIFEST
        ),
    }


@pytest.fixture
def image(images: dict[str, Image]) -> Image:
    return images["oci"]


# Manifests


@METHODS
@pytest.mark.parametrize("by", ["tag", "digest"])
@pytest.mark.parametrize("kind", ["oci", "docker"])
def test_manifest_pulled_by_tag_or_digest(
    oci: OciClient, images: dict[str, Image], kind: str, by: str, method: str
) -> None:
    image = images[kind]
    reference = image.tag if by == "tag" else image.manifest.digest
    response = oci.request(
        method,
        f"/v2/{image.name}/manifests/{reference}",
        headers={"Accept": EVERY_MANIFEST_TYPE},
    )
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == image.media_type
    assert response.headers["Docker-Content-Digest"] == image.manifest.digest
    assert response.headers["Content-Length"] == str(len(image.manifest.body))
    assert response.content == (image.manifest.body if method == "GET" else b"")


@METHODS
@pytest.mark.parametrize("reference", ["no-such-tag", UNKNOWN_DIGEST], ids=["tag", "digest"])
@pytest.mark.parametrize("pushed", [True, False], ids=["pushed image", "new image"])
def test_unknown_manifest(
    server: Server, oci: OciClient, image: Image, pushed: bool, reference: str, method: str
) -> None:
    name = image.name if pushed else server.unique_name()
    response = oci.request(method, f"/v2/{name}/manifests/{reference}")
    oci.expect_error(response, 404, "MANIFEST_UNKNOWN")


@METHODS
@pytest.mark.parametrize("path", ["manifests/latest", f"blobs/{UNKNOWN_DIGEST}"])
@pytest.mark.parametrize(
    "name",
    ["nope/hosted/app", "test/nope/app", "test/hosted"],
    ids=["unknown project", "unknown repository", "no image name"],
)
def test_unknown_name(oci: OciClient, name: str, path: str, method: str) -> None:
    oci.expect_error(oci.request(method, f"/v2/{name}/{path}"), 404, "NAME_UNKNOWN")


INVALID_NAMES = {
    "uppercase": "test/hosted/App",
    "empty component": "test/hosted/a//b",
    "trailing dash": "test/hosted/app-",
    "leading dot": "test/hosted/.app",
    "double dot": "test/hosted/a..b",
    "longer than 255": "test/hosted/" + "a" * 250,
}


@METHODS
@pytest.mark.parametrize("path", ["manifests/latest", f"blobs/{UNKNOWN_DIGEST}"])
@pytest.mark.parametrize("name", INVALID_NAMES.values(), ids=INVALID_NAMES.keys())
def test_name_outside_the_grammar(oci: OciClient, name: str, path: str, method: str) -> None:
    oci.expect_error(oci.request(method, f"/v2/{name}/{path}"), 400, "NAME_INVALID")


@METHODS
@pytest.mark.parametrize(
    "tag", ["-bad", ".bad", "a" * 129, "bad!"], ids=["dash", "dot", "129 chars", "bang"]
)
def test_invalid_tag(oci: OciClient, image: Image, tag: str, method: str) -> None:
    response = oci.request(method, f"/v2/{image.name}/manifests/{tag}")
    oci.expect_error(response, 400, "TAG_INVALID")


def test_longest_tag_is_valid(oci: OciClient, image: Image) -> None:
    """128 characters is within the grammar: an unknown tag, not an invalid one."""
    response = oci.request("GET", f"/v2/{image.name}/manifests/{'a' * 128}")
    oci.expect_error(response, 404, "MANIFEST_UNKNOWN")


MALFORMED_DIGESTS = {
    "not hex": ("sha256:" + "z" * 64, "DIGEST_INVALID"),
    "uppercase hex": ("sha256:" + "A" * 64, "DIGEST_INVALID"),
    "too short": ("sha256:" + "a" * 63, "DIGEST_INVALID"),
    "no encoding": ("sha256:", "DIGEST_INVALID"),
    "no algorithm": (":" + "a" * 64, "DIGEST_INVALID"),
    "unsupported algorithm": ("md5:" + "a" * 32, "UNSUPPORTED"),
}


@METHODS
@pytest.mark.parametrize("endpoint", ["manifests", "blobs"])
@pytest.mark.parametrize(
    ("digest", "code"), MALFORMED_DIGESTS.values(), ids=MALFORMED_DIGESTS.keys()
)
def test_malformed_digest_reference(
    oci: OciClient, image: Image, endpoint: str, digest: str, code: str, method: str
) -> None:
    response = oci.request(method, f"/v2/{image.name}/{endpoint}/{digest}")
    oci.expect_error(response, 400, code)


@METHODS
def test_blob_reference_that_is_no_digest(oci: OciClient, image: Image, method: str) -> None:
    response = oci.request(method, f"/v2/{image.name}/blobs/latest")
    oci.expect_error(response, 400, "DIGEST_INVALID")


@pytest.mark.parametrize("path", ["app", "team/app", "team/app/api", "a/b/c/d/e/f/g"])
def test_image_names_of_any_depth(server: Server, oci: OciClient, path: str) -> None:
    name = server.unique_name(f"test/hosted/{path}")  # one level deeper: .../{path}/img-<id>
    pushed = oci.push_image(name, "depth")
    response = oci.request("GET", f"/v2/{name}/manifests/depth")
    assert response.status_code == 200, response.text
    assert response.content == pushed.body
    digest = oci.push_blob(name, BLOB)
    assert oci.request("GET", f"/v2/{name}/blobs/{digest}").content == BLOB


def test_nested_image_names_are_separate(server: Server, oci: OciClient) -> None:
    """`x` and `x/sub` are two images: neither sees the other's tags."""
    parent = server.unique_name()
    child = f"{parent}/sub"
    parent_manifest = oci.push_image(parent, "parent")
    child_manifest = oci.push_image(child, "child")
    for name, own, others in [
        (parent, parent_manifest, "child"),
        (child, child_manifest, "parent"),
    ]:
        response = oci.request("GET", f"/v2/{name}/manifests/{own.digest}")
        assert response.content == own.body
        oci.expect_error(
            oci.request("GET", f"/v2/{name}/manifests/{others}"), 404, "MANIFEST_UNKNOWN"
        )


@METHODS
@pytest.mark.parametrize(
    ("stored", "accept", "served"),
    [
        ("docker", DOCKER_MANIFEST, True),
        ("docker", DOCKER_TYPES, True),
        ("docker", f"{OCI_MANIFEST}, {DOCKER_MANIFEST};q=0.5", True),
        ("docker", OCI_MANIFEST, False),
        ("oci", DOCKER_TYPES, False),
        ("oci", f"{DOCKER_MANIFEST}, {OCI_MANIFEST};q=0", False),
        ("oci", OCI_MANIFEST, True),
        ("oci", "*/*", True),
        ("oci", "application/*", True),
        ("oci", None, True),
    ],
    ids=[
        "docker to docker client",
        "docker to docker client with lists",
        "docker to client of both",
        "docker to oci-only client",
        "oci to docker-only client",
        "oci refused with q=0",
        "oci to oci client",
        "oci to */*",
        "oci to application/*",
        "oci without Accept",
    ],
)
def test_accept_negotiation(
    oci: OciClient,
    images: dict[str, Image],
    stored: str,
    accept: str | None,
    served: bool,
    method: str,
) -> None:
    image = images[stored]
    # requests leaves out a header whose value is None, and sends `*/*` when none is given.
    response = oci.request(method, f"/v2/{image.name}/manifests/v1", headers={"Accept": accept})
    assert response.request.headers.get("Accept") == accept
    if not served:
        oci.expect_error(response, 404, "MANIFEST_UNKNOWN")
        return
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == image.media_type
    assert response.headers["Docker-Content-Digest"] == image.manifest.digest


# Blobs


@METHODS
def test_blob_pulled(oci: OciClient, image: Image, method: str) -> None:
    response = oci.request(method, f"/v2/{image.name}/blobs/{sha256(BLOB)}")
    assert response.status_code == 200, response.text
    assert response.headers["Docker-Content-Digest"] == sha256(BLOB)
    assert response.headers["Content-Length"] == str(len(BLOB))
    assert response.content == (BLOB if method == "GET" else b"")


@pytest.mark.parametrize(
    ("header", "first", "last"),
    [
        ("bytes=10-19", 10, 19),
        ("bytes=0-0", 0, 0),
        ("bytes=90-", 90, 99),
        ("bytes=-5", 95, 99),
        ("bytes=95-1000", 95, 99),
    ],
)
def test_blob_range(oci: OciClient, image: Image, header: str, first: int, last: int) -> None:
    response = oci.request(
        "GET", f"/v2/{image.name}/blobs/{sha256(BLOB)}", headers={"Range": header}
    )
    assert response.status_code == 206, response.text
    assert response.headers["Content-Range"] == f"bytes {first}-{last}/{len(BLOB)}"
    assert response.headers["Content-Length"] == str(last - first + 1)
    assert response.content == BLOB[first : last + 1]


@pytest.mark.parametrize("header", ["bytes=100-", "bytes=200-300"])
def test_blob_range_past_the_end(oci: OciClient, image: Image, header: str) -> None:
    response = oci.request(
        "GET", f"/v2/{image.name}/blobs/{sha256(BLOB)}", headers={"Range": header}
    )
    oci.expect_error(response, 416, "SIZE_INVALID")
    assert response.headers["Content-Range"] == f"bytes */{len(BLOB)}"


@METHODS
@pytest.mark.parametrize("pushed", [True, False], ids=["pushed image", "new image"])
def test_unknown_blob(
    server: Server, oci: OciClient, image: Image, pushed: bool, method: str
) -> None:
    name = image.name if pushed else server.unique_name()
    response = oci.request(method, f"/v2/{name}/blobs/{UNKNOWN_DIGEST}")
    oci.expect_error(response, 404, "BLOB_UNKNOWN")


@METHODS
@pytest.mark.parametrize(
    "elsewhere",
    ["same repository", "other repository", "same image name in other repository"],
)
def test_content_readable_only_where_pushed(
    server: Server,
    oci: OciClient,
    other_repository: str,
    name: str,
    elsewhere: str,
    method: str,
) -> None:
    """Blobs and manifests are global by digest but readable only through their image."""
    blob = os.urandom(64)
    oci.push_blob(name, blob)
    manifest = oci.push_image(name, "here")
    other = {
        "same repository": server.unique_name(),
        "other repository": server.unique_name(other_repository),
        "same image name in other repository": f"{other_repository}/{name.rsplit('/', 1)[1]}",
    }[elsewhere]
    assert oci.request(method, f"/v2/{name}/blobs/{sha256(blob)}").status_code == 200
    oci.expect_error(oci.request(method, f"/v2/{other}/blobs/{sha256(blob)}"), 404, "BLOB_UNKNOWN")
    for reference in ["here", manifest.digest]:
        response = oci.request(method, f"/v2/{other}/manifests/{reference}")
        oci.expect_error(response, 404, "MANIFEST_UNKNOWN")
