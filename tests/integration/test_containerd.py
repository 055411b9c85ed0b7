"""containerd's ctr against the real server: an index pulled with every platform, pushed under a
new name by mounting every blob, pulled back with every platform, one digest everywhere."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.access_log import (
    Access,
    any_access,
    fetched_blobs,
    log_mark,
    served_manifest,
    wait_for_access,
)
from tests.integration.clients import Containerd, OciImage, Skopeo, oci_index
from tests.integration.server import Server

pytestmark = pytest.mark.clients

OCI_INDEX = "application/vnd.oci.image.index.v1+json"


@pytest.fixture(scope="module")
def ctr(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Containerd]:
    """One containerd for the module; every test uses images of fresh content and fresh names."""
    with Containerd(tmp_path_factory.mktemp("containerd")) as daemon:
        yield daemon


@pytest.fixture
def skopeo(tmp_path: Path, server: Server) -> Skopeo:
    """skopeo logged in to the server as the administrator."""
    client = Skopeo(tmp_path / "skopeo")
    client.login(server.host, *server.admin_auth)
    return client


def content(ctr: Containerd) -> set[str]:
    """Digests in containerd's content store."""
    rows = ctr("content", "ls", "--quiet").split()
    return {row for row in rows if row.startswith("sha256:")}


def every_digest(image: OciImage) -> set[str]:
    """The index, each platform's manifest, and every config and layer."""
    return {image.digest, *(m.digest for m in image.manifests), *(b.digest for b in image.blobs)}


def skopeo_digest(skopeo: Skopeo, ref: str) -> str:
    """The top-level digest skopeo reports for ``docker://REF``, checked against the hash of
    the raw manifest skopeo reads."""
    digest: str = skopeo.inspect(f"docker://{ref}")["Digest"]
    raw = skopeo("inspect", "--tls-verify=false", "--raw", f"docker://{ref}").encode()
    assert "sha256:" + hashlib.sha256(raw).hexdigest() == digest
    return digest


def assert_pushed_by_mounts(log: list[Access], name: str, source: str, image: OciImage) -> None:
    """ctr mounted every config and layer from ``source`` (201) and uploaded no bytes; it put
    each platform's manifest by digest and the index by tag."""
    uploads = [a for a in log if a.in_image(name, "blobs/uploads")]
    mounted = {
        a.query["mount"]
        for a in uploads
        if a.method == "POST" and a.query.get("from") == source and a.status == 201
    }
    assert mounted == {b.digest for b in image.blobs}, uploads
    assert not [a for a in uploads if a.method in ("PATCH", "PUT")], uploads
    manifests = {
        a.last_segment: a.status for a in log if a.method == "PUT" and a.in_image(name, "manifests")
    }
    assert manifests == {**{m.digest: 201 for m in image.manifests}, "v1": 201}, manifests


def test_index_pushed_by_ctr_pulls_back_with_every_platform(
    ctr: Containerd, skopeo: Skopeo, server: Server, name: str, tmp_path: Path
) -> None:
    image = oci_index(tmp_path / "layout", "v1")
    assert len(image.manifests) == 2
    source, target = f"{name}/src", f"{name}/mirror/app"
    source_ref, target_ref = f"{server.host}/{source}:v1", f"{server.host}/{target}:v1"
    skopeo.copy(image.ref, f"docker://{source_ref}", all_images=True)
    assert served_manifest(server, source, "v1").digest == image.digest

    ctr.pull(source_ref, user=server.admin_creds, all_platforms=True)
    assert ctr.images() == {source_ref: image.digest}
    assert every_digest(image) <= content(ctr)

    mark = log_mark(server)
    ctr.push(target_ref, source_ref, user=server.admin_creds)
    log = wait_for_access(
        server,
        any_access(
            lambda a: (
                a.method == "PUT" and a.in_image(target, "manifests") and a.last_segment == "v1"
            )
        ),
        after=mark,
    )
    assert_pushed_by_mounts(log, target, source, image)

    served = served_manifest(server, target, "v1")
    assert (served.digest, served.media_type) == (image.digest, OCI_INDEX)
    assert served.body == image.read_blob(image.digest)
    for child in image.manifests:
        assert served_manifest(server, target, child.digest).digest == child.digest
    assert skopeo_digest(skopeo, target_ref) == image.digest

    # A push names no local image: the source is the only one, and its content goes with it
    # (--sync waits for the garbage collection).
    ctr("images", "rm", "--sync", source_ref)
    assert ctr.images() == {}
    assert not every_digest(image) & content(ctr), "removing the images left their content"

    mark = log_mark(server)
    ctr.pull(target_ref, user=server.admin_creds, all_platforms=True)
    assert ctr.images() == {target_ref: image.digest}
    assert every_digest(image) <= content(ctr)
    blobs = {b.digest for b in image.blobs}
    log = wait_for_access(server, lambda found: blobs <= fetched_blobs(found, target), after=mark)
    fetched_manifests = {
        a.last_segment
        for a in log
        if a.method == "GET" and a.status == 200 and a.in_image(target, "manifests")
    }
    assert {m.digest for m in image.manifests} <= fetched_manifests
    assert not [a for a in log if a.in_image(source, "blobs")], "pulled from the source name"
