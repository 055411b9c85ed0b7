"""skopeo 1.9 against the real server: a multi-arch OCI index pushed with ``copy --all``,
inspected, listed, pulled back out byte for byte, copied between names by cross-repository
mount, and deleted by digest, including the refusal to delete a child an index still lists."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.integration.access_log import accesses
from tests.integration.clients import (
    OCI_INDEX,
    OCI_LAYER,
    REF_NAME,
    ClientError,
    Descriptor,
    OciImage,
    Skopeo,
    oci_image,
    oci_index,
)
from tests.integration.server import Server

pytestmark = pytest.mark.clients

TAGS = ("v1", "latest")
"""The tags the shared index is pushed under."""

LAYER_SIZE = 16 * 1024
"""Small layers keep the suite fast; the protocol paths do not depend on size."""


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def raw_manifest(skopeo: Skopeo, ref: str) -> bytes:
    """The bytes ``skopeo inspect --raw`` prints for ``ref``, unparsed."""
    return skopeo("inspect", "--tls-verify=false", "--raw", ref).encode()


def inspect_for(skopeo: Skopeo, ref: str, os_name: str, arch: str) -> Any:
    """``skopeo inspect`` of the image an index offers for one platform."""
    out = skopeo(
        "--override-os", os_name, "--override-arch", arch, "inspect", "--tls-verify=false", ref
    )
    return json.loads(out)


def layout_blob_digests(layout: Path) -> set[str]:
    """Every blob file of an OCI layout, checked against its own name."""
    found = set()
    for path in (layout / "blobs" / "sha256").iterdir():
        digest = f"sha256:{path.name}"
        assert sha256(path.read_bytes()) == digest, f"{path} does not hash to its name"
        found.add(digest)
    return found


def layout_tag(layout: Path, tag: str) -> dict[str, Any]:
    """The descriptor ``tag`` names in the layout's index.json."""
    index = json.loads((layout / "index.json").read_text())
    tagged = [m for m in index["manifests"] if m.get("annotations", {}).get(REF_NAME) == tag]
    assert len(tagged) == 1, index
    entry: dict[str, Any] = tagged[0]
    return entry


def manifest_layers(image: OciImage, manifest: Descriptor) -> list[str]:
    body = json.loads(image.read_blob(manifest.digest))
    return [layer["digest"] for layer in body["layers"]]


# --- the server's access log ------------------------------------------------------------------


def wait_for_mounts(server: Server, uploads: str, digests: list[str]) -> set[str]:
    """The ``digests`` that a ``POST <uploads>?mount=<digest>`` brought in with 201. Polls
    the log briefly (bounded): aiohttp writes a line only after its answer has gone out."""
    deadline = time.monotonic() + 5.0
    while True:
        mounted = {
            a.query.get("mount")
            for a in accesses(server)
            if a.method == "POST" and a.path == uploads and a.status == 201
        }
        found = {d for d in digests if d in mounted}
        if found == set(digests) or time.monotonic() >= deadline:
            return found
        time.sleep(0.05)


# --- shared set-up: one index pushed once for the module ---------------------------------------


@dataclass(frozen=True)
class Pushed:
    image: OciImage
    name: str
    """``test/hosted/img-...``"""
    repo: str
    """``docker://HOST/name`` without a tag or digest."""

    def at(self, reference: str) -> str:
        separator = "@" if reference.startswith("sha256:") else ":"
        return f"{self.repo}{separator}{reference}"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("skopeo")


@pytest.fixture(scope="module")
def skopeo(workdir: Path, server: Server) -> Skopeo:
    """skopeo logged in to the server as the administrator (``skopeo login``)."""
    client = Skopeo(workdir / "client")
    client.login(server.host, *server.admin_auth)
    return client


@pytest.fixture(scope="module")
def pushed(server: Server, skopeo: Skopeo, workdir: Path) -> Pushed:
    """A two-platform OCI index, pushed with ``copy --all`` under every tag of ``TAGS``."""
    image = oci_index(workdir / "source", TAGS[0], layer_size=LAYER_SIZE)
    name = server.unique_name()
    repo = f"docker://{server.host}/{name}"
    for tag in TAGS:
        skopeo.copy(image.ref, f"{repo}:{tag}", all_images=True)
    return Pushed(image, name, repo)


# --- tests ------------------------------------------------------------------------------------


def test_copy_all_keeps_the_index_bytes_and_digest(
    pushed: Pushed, skopeo: Skopeo, server: Server
) -> None:
    source = pushed.image.read_blob(pushed.image.digest)
    for tag in TAGS:
        raw = raw_manifest(skopeo, pushed.at(tag))
        assert sha256(raw) == pushed.image.digest, tag
        assert raw == source, tag
    assert raw_manifest(skopeo, pushed.at(pushed.image.digest)) == source

    index = json.loads(source)
    assert index["mediaType"] == OCI_INDEX
    assert [m["digest"] for m in index["manifests"]] == [m.digest for m in pushed.image.manifests]

    # skopeo's own summary names the index digest, and the server's header agrees.
    assert skopeo.inspect(pushed.at(TAGS[0]))["Digest"] == pushed.image.digest
    head = requests.head(
        f"{server.url}/v2/{pushed.name}/manifests/{TAGS[0]}",
        headers={"Accept": OCI_INDEX},
        auth=server.admin_auth,
        timeout=30,
    )
    assert head.status_code == 200
    assert head.headers["Docker-Content-Digest"] == pushed.image.digest
    assert head.headers["Content-Type"] == OCI_INDEX


def test_each_child_pulls_by_digest(pushed: Pushed, skopeo: Skopeo, tmp_path: Path) -> None:
    for child in pushed.image.manifests:
        assert child.platform is not None
        os_name, arch = child.platform
        ref = pushed.at(child.digest)

        assert raw_manifest(skopeo, ref) == pushed.image.read_blob(child.digest)
        summary = skopeo.inspect(ref)
        assert (summary["Digest"], summary["Os"], summary["Architecture"]) == (
            child.digest,
            os_name,
            arch,
        )
        # Through the tag, platform selection in the index lands on the same child.
        chosen = inspect_for(skopeo, pushed.at(TAGS[0]), os_name, arch)
        assert chosen["Layers"] == manifest_layers(pushed.image, child)

        # A real pull: every blob of the child comes down and verifies.
        out = tmp_path / arch
        skopeo.copy(ref, f"oci:{out}:{arch}")
        assert layout_tag(out, arch)["digest"] == child.digest
        config = json.loads(pushed.image.read_blob(child.digest))["config"]["digest"]
        expected = {child.digest, config, *manifest_layers(pushed.image, child)}
        assert layout_blob_digests(out) == expected


def test_list_tags_shows_the_pushed_tags(pushed: Pushed, skopeo: Skopeo) -> None:
    assert sorted(skopeo.list_tags(pushed.repo)) == sorted(TAGS)


def test_round_trip_to_a_new_layout_keeps_every_digest(
    pushed: Pushed, skopeo: Skopeo, tmp_path: Path
) -> None:
    out = tmp_path / "pulled"
    skopeo.copy(pushed.at(TAGS[0]), f"oci:{out}:back", all_images=True)

    entry = layout_tag(out, "back")
    assert (entry["digest"], entry["mediaType"]) == (pushed.image.digest, OCI_INDEX)
    image = pushed.image
    expected = {
        image.digest,
        *(m.digest for m in image.manifests),
        *(b.digest for b in image.blobs),
    }
    # Exactly the source's content: nothing converted, recompressed or left out.
    assert layout_blob_digests(out) == expected == layout_blob_digests(image.layout)
    for digest in expected:
        name = digest.removeprefix("sha256:")
        assert (out / "blobs" / "sha256" / name).read_bytes() == image.read_blob(digest)


@pytest.mark.parametrize("destination", ["same repository", "other repository"])
def test_copy_between_names_mounts_the_layers(
    pushed: Pushed,
    skopeo: Skopeo,
    server: Server,
    request: pytest.FixtureRequest,
    destination: str,
) -> None:
    prefix = (
        "test/hosted"
        if destination == "same repository"
        else request.getfixturevalue("other_repository")
    )
    target = server.unique_name(prefix)
    skopeo.copy(pushed.at(TAGS[0]), f"docker://{server.host}/{target}:copied", all_images=True)

    copied = raw_manifest(skopeo, f"docker://{server.host}/{target}:copied")
    assert sha256(copied) == pushed.image.digest
    uploads = f"/v2/{target}/blobs/uploads/"
    layers = [b.digest for b in pushed.image.blobs if b.media_type == OCI_LAYER]
    assert len(layers) == 4
    mounted = wait_for_mounts(server, uploads, layers)
    seen = [a for a in accesses(server) if a.path.startswith(f"/v2/{target}/")]
    assert seen, f"no access-log line for {target} in {server.log_path}: is aiohttp.access on?"
    assert mounted == set(layers), f"layers not mounted into {target}: {set(layers) - mounted}"
    for layer in layers:
        # Not uploaded again: no monolithic POST and no closing PUT carried its bytes.
        reuploads = [
            a
            for a in accesses(server)
            if a.path.startswith(uploads)
            and a.method in ("POST", "PUT")
            and a.query.get("digest") == layer
        ]
        assert reuploads == [], f"{layer} was uploaded again into {target}"
        # The mounted layer is now readable through the new name.
        blob = requests.get(
            f"{server.url}/v2/{target}/blobs/{layer}", auth=server.admin_auth, timeout=30
        )
        assert blob.status_code == 200
        assert sha256(blob.content) == layer


def test_copy_to_a_digest_reference(pushed: Pushed, skopeo: Skopeo, server: Server) -> None:
    """A manifest pushed by digest only: stored untagged, pullable by that digest."""
    child = pushed.image.manifests[0]
    target = f"docker://{server.host}/{server.unique_name()}"
    skopeo.copy(pushed.at(child.digest), f"{target}@{child.digest}")

    assert raw_manifest(skopeo, f"{target}@{child.digest}") == pushed.image.read_blob(child.digest)
    assert skopeo.list_tags(target) == []


def manifest_unknown(skopeo: Skopeo, ref: str) -> str:
    """Inspect ``ref``, expecting the registry to answer manifest unknown; returns the error."""
    with pytest.raises(ClientError) as failed:
        skopeo("inspect", "--tls-verify=false", "--raw", ref)
    assert "manifest unknown" in failed.value.stderr, failed.value.stderr
    return failed.value.stderr


def test_delete_by_digest(server: Server, skopeo: Skopeo, tmp_path: Path) -> None:
    image = oci_image(tmp_path / "single", "v1", layers=1, layer_size=1024)
    repo = f"docker://{server.host}/{server.unique_name()}"
    skopeo.copy(image.ref, f"{repo}:v1")
    assert sha256(raw_manifest(skopeo, f"{repo}@{image.digest}")) == image.digest

    skopeo.delete(f"{repo}@{image.digest}")

    manifest_unknown(skopeo, f"{repo}@{image.digest}")
    manifest_unknown(skopeo, f"{repo}:v1")
    assert skopeo.list_tags(repo) == []


def test_deleting_a_listed_child_is_refused(server: Server, skopeo: Skopeo, tmp_path: Path) -> None:
    image = oci_index(tmp_path / "index", "v1", layers=1, layer_size=1024)
    repo = f"docker://{server.host}/{server.unique_name()}"
    skopeo.copy(image.ref, f"{repo}:v1", all_images=True)
    child = image.manifests[0]

    with pytest.raises(ClientError) as refused:
        skopeo.delete(f"{repo}@{child.digest}")
    message = refused.value.stderr
    assert "409" in message, message
    assert "DENIED" in message, message
    assert f"is listed by index {image.digest}" in message, message

    # Nothing was lost: the child and the index still pull.
    assert raw_manifest(skopeo, f"{repo}@{child.digest}") == image.read_blob(child.digest)
    assert sha256(raw_manifest(skopeo, f"{repo}:v1")) == image.digest

    # Once the index is gone, the child can go too.
    skopeo.delete(f"{repo}@{image.digest}")
    manifest_unknown(skopeo, f"{repo}:v1")
    skopeo.delete(f"{repo}@{child.digest}")
    manifest_unknown(skopeo, f"{repo}@{child.digest}")
    other = image.manifests[1]
    assert raw_manifest(skopeo, f"{repo}@{other.digest}") == image.read_blob(other.digest)
