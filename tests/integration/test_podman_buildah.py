"""podman 4.3 and buildah 1.28 against the real server: images built locally, pushed, and pulled
back into fresh stores with the same digests; a two-platform manifest list pushed with
``manifest push --all``; a ``from scratch`` buildah image pushed, pulled and re-pushed by
digest reference."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.integration.clients import (
    OCI_INDEX,
    Buildah,
    Podman,
    Skopeo,
    busybox_context,
    oci_image,
)
from tests.integration.server import Server

pytestmark = pytest.mark.clients

DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
HELLO = b"hello from buildah, pushed to cargohold\n"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def raw_manifest(skopeo: Skopeo, ref: str) -> bytes:
    """The bytes ``skopeo inspect --raw`` prints for ``ref`` (``docker://...``), unparsed."""
    return skopeo("inspect", "--tls-verify=false", "--raw", ref).encode()


def image_id(podman: Podman, image: str) -> str:
    """The local image id, which is the digest of the image's config (without ``sha256:``)."""
    return podman("image", "inspect", "--format", "{{.Id}}", image).strip()


def push_digest(
    tool: Podman | Buildah, image: str, dest: str, digestfile: Path, *, creds: str | None = None
) -> str:
    """Push ``image`` to ``dest`` (``docker://...``), with ``creds`` (``user:password``) or
    the tool's login; returns the digest the client pushed."""
    tool(
        "push",
        "--tls-verify=false",
        *(["--creds", creds] if creds else []),
        "--digestfile",
        digestfile,
        image,
        dest,
    )
    digest = digestfile.read_text().strip()
    assert digest.startswith("sha256:"), digest
    return digest


def config_digest(manifest: bytes) -> str:
    digest: str = json.loads(manifest)["config"]["digest"]
    return digest


def served_digest(server: Server, name: str, reference: str) -> str:
    """Docker-Content-Digest the server answers for a manifest."""
    accept = ", ".join(
        [
            "application/vnd.oci.image.manifest.v1+json",
            "application/vnd.docker.distribution.manifest.v2+json",
            OCI_INDEX,
            DOCKER_LIST,
        ]
    )
    head = requests.head(
        f"{server.url}/v2/{name}/manifests/{reference}",
        headers={"Accept": accept},
        auth=server.admin_auth,
        timeout=30,
    )
    assert head.status_code == 200, reference
    digest: str = head.headers["Docker-Content-Digest"]
    return digest


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("podman-buildah")


@pytest.fixture(scope="module")
def skopeo(workdir: Path, server: Server) -> Skopeo:
    """skopeo logged in as the administrator, to read what the others pushed."""
    client = Skopeo(workdir / "skopeo")
    client.login(server.host, *server.admin_auth)
    return client


# --- podman -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Built:
    podman: Podman
    image: str
    """Local name of the busybox image."""
    image_id: str
    platform: tuple[str, str]


@pytest.fixture(scope="module")
def built(workdir: Path, server: Server) -> Built:
    """A busybox image built once by podman, in its own store; that podman is logged in to the
    server as the administrator (``podman login``) and pushes with its stored credentials."""
    podman = Podman(workdir / "builder")
    podman.login(server.host, *server.admin_auth)
    podman.build(busybox_context(workdir / "context"), "localhost/busybox:built")
    image = "localhost/busybox:built"
    os_name, arch = podman(
        "image", "inspect", "--format", "{{.Os}} {{.Architecture}}", image
    ).split()
    return Built(podman, image, image_id(podman, image), (os_name, arch))


def test_podman_push_then_pull_in_a_fresh_store(
    built: Built, server: Server, skopeo: Skopeo, tmp_path: Path
) -> None:
    name = server.unique_name()
    ref = f"{server.host}/{name}"
    pushed = push_digest(built.podman, built.image, f"docker://{ref}:v1", tmp_path / "digest")

    raw = raw_manifest(skopeo, f"docker://{ref}:v1")
    assert sha256(raw) == pushed
    assert served_digest(server, name, "v1") == pushed
    assert config_digest(raw) == f"sha256:{built.image_id}"

    fresh = Podman(tmp_path / "fresh")
    assert fresh.pull(f"{ref}:v1", creds=server.admin_creds) == built.image_id
    assert fresh.image_digest(f"{ref}:v1") == pushed
    assert fresh.pull(f"{ref}@{pushed}", creds=server.admin_creds) == built.image_id
    assert fresh.image_digest(f"{ref}@{pushed}") == pushed


def test_podman_manifest_push_all(
    built: Built, server: Server, skopeo: Skopeo, tmp_path: Path
) -> None:
    """A list of the podman-built image (the host's platform, recompressed on push) and an
    image of the other platform from an OCI layout (pushed unchanged)."""
    os_name, host_arch = built.platform
    other_arch = "arm64" if host_arch != "arm64" else "amd64"
    other = oci_image(
        tmp_path / "layout", "other", platforms=[(os_name, other_arch)], layers=1, layer_size=1024
    )
    other_config = json.loads(other.read_blob(other.digest))["config"]["digest"]

    podman = built.podman
    name = server.unique_name()
    ref = f"{server.host}/{name}"
    local_list = f"localhost/list-{name.rsplit('/', 1)[-1]}:v1"
    podman.manifest_create(local_list)
    podman.manifest_add(local_list, f"containers-storage:{built.image}")
    podman.manifest_add(local_list, other.ref)
    podman.manifest_push(local_list, f"docker://{ref}:v1")

    raw = raw_manifest(skopeo, f"docker://{ref}:v1")
    assert served_digest(server, name, "v1") == sha256(raw)
    index: dict[str, Any] = json.loads(raw)
    assert index["mediaType"] in (OCI_INDEX, DOCKER_LIST), index
    children = {
        (m["platform"]["os"], m["platform"]["architecture"]): m["digest"]
        for m in index["manifests"]
    }
    assert len(index["manifests"]) == 2, index
    assert set(children) == {built.platform, (os_name, other_arch)}, index
    assert children[(os_name, other_arch)] == other.digest

    expected_ids = {
        built.platform: built.image_id,
        (os_name, other_arch): other_config.removeprefix("sha256:"),
    }
    fresh = Podman(tmp_path / "fresh")
    for platform, digest in children.items():
        child = f"{ref}@{digest}"
        assert sha256(raw_manifest(skopeo, f"docker://{child}")) == digest
        assert fresh.pull(child, creds=server.admin_creds) == expected_ids[platform], platform
        assert fresh.image_digest(child) == digest
        arch = fresh("image", "inspect", "--format", "{{.Architecture}}", child).strip()
        assert arch == platform[1]


# --- buildah ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scratch:
    image_id: str
    name: str
    digest: str
    """The manifest digest buildah pushed."""


@pytest.fixture(scope="module")
def scratch(workdir: Path, server: Server) -> Scratch:
    """``buildah from scratch`` + ``copy`` of one file + ``commit``, pushed by tag after
    ``buildah login`` as the administrator."""
    buildah = Buildah(workdir / "buildah")
    buildah.login(server.host, *server.admin_auth)
    hello = workdir / "hello.txt"
    hello.write_bytes(HELLO)
    built = buildah.scratch_image("localhost/hello:v1", {"/hello.txt": hello})
    name = server.unique_name()
    digest = push_digest(
        buildah, "localhost/hello:v1", f"docker://{server.host}/{name}:v1", workdir / "digest"
    )
    return Scratch(built, name, digest)


def layer_files(server: Server, name: str, digest: str) -> dict[str, bytes]:
    """The regular files of a gzipped tar layer, pulled from the server by digest."""
    blob = requests.get(
        f"{server.url}/v2/{name}/blobs/{digest}", auth=server.admin_auth, timeout=30
    )
    assert blob.status_code == 200
    assert sha256(blob.content) == digest
    files = {}
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(blob.content))) as tar:
        for member in tar.getmembers():
            extracted = tar.extractfile(member)
            if member.isfile() and extracted is not None:
                files[member.name.lstrip("./")] = extracted.read()
    return files


def test_buildah_scratch_image_push_and_pull(
    scratch: Scratch, server: Server, skopeo: Skopeo, tmp_path: Path
) -> None:
    ref = f"{server.host}/{scratch.name}"
    raw = raw_manifest(skopeo, f"docker://{ref}:v1")
    assert sha256(raw) == scratch.digest
    assert served_digest(server, scratch.name, "v1") == scratch.digest
    assert config_digest(raw) == f"sha256:{scratch.image_id}"
    layers = json.loads(raw)["layers"]
    assert len(layers) == 1
    assert layer_files(server, scratch.name, layers[0]["digest"]) == {"hello.txt": HELLO}

    fresh = Podman(tmp_path / "fresh")
    assert fresh.pull(f"{ref}:v1", creds=server.admin_creds) == scratch.image_id
    assert fresh.image_digest(f"{ref}:v1") == scratch.digest


def test_buildah_push_by_digest_reference(
    scratch: Scratch, server: Server, skopeo: Skopeo, tmp_path: Path
) -> None:
    """A fresh store pulls the image by digest, and pushes it on by that digest reference:
    the copy under a new name keeps the digest. Credentials go with each command (``--creds``)."""
    source = f"{server.host}/{scratch.name}@{scratch.digest}"
    buildah = Buildah(tmp_path / "fresh")
    assert buildah.pull(source, creds=server.admin_creds) == scratch.image_id
    assert buildah.image_digest(source) == scratch.digest

    target = server.unique_name()
    again = push_digest(
        buildah,
        source,
        f"docker://{server.host}/{target}:v1",
        tmp_path / "digest",
        creds=server.admin_creds,
    )
    assert again == scratch.digest
    raw = raw_manifest(skopeo, f"docker://{server.host}/{target}@{scratch.digest}")
    assert sha256(raw) == scratch.digest
    assert served_digest(server, target, "v1") == scratch.digest
