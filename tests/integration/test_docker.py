"""docker through a real dockerd against the real server: push, pull back by the same digest,
deep image names, cross-repository mounts seen in the server's access log, multi-arch pulls."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.access_log import (
    Access,
    accesses,
    any_access,
    fetched_blobs,
    log_mark,
    served_manifest,
    wait_for_access,
)
from tests.integration.clients import ClientError, DockerDaemon, Skopeo, oci_image, oci_index
from tests.integration.server import Server

pytestmark = pytest.mark.clients

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


@pytest.fixture(scope="module")
def docker(tmp_path_factory: pytest.TempPathFactory, server: Server) -> Iterator[DockerDaemon]:
    """One dockerd for the module, logged in to the server as the administrator
    (``docker login``); every test pushes images of fresh content under fresh names."""
    with DockerDaemon(tmp_path_factory.mktemp("dockerd")) as daemon:
        daemon.login(server.host, *server.admin_auth)
        yield daemon


@pytest.fixture
def skopeo(tmp_path: Path) -> Skopeo:
    return Skopeo(tmp_path / "skopeo")


def load_fresh_image(docker: DockerDaemon, skopeo: Skopeo, layout: Path, ref: str) -> str:
    """Load a new two-layer image of random content as ``ref``; return its image id."""
    docker.load(skopeo, oci_image(layout, "v1").ref, ref)
    image_id: str = docker.inspect(ref)["Id"]
    return image_id


def push(docker: DockerDaemon, ref: str) -> tuple[str, str]:
    """``docker push``; return the digest it reports and its whole output."""
    output = docker("push", ref)
    match = re.search(rf"{re.escape(ref.rsplit(':', 1)[1])}: digest: ({DIGEST.pattern}) ", output)
    assert match is not None, output
    return match.group(1), output


def manifest_json(server: Server, name: str, reference: str) -> dict[str, Any]:
    manifest: dict[str, Any] = json.loads(served_manifest(server, name, reference).body)
    return manifest


def layer_digests(server: Server, name: str, reference: str) -> list[str]:
    return [layer["digest"] for layer in manifest_json(server, name, reference)["layers"]]


def assert_absent(docker: DockerDaemon, ref: str) -> None:
    with pytest.raises(ClientError, match="No such image"):
        docker.inspect(ref)


def wait_for_download(server: Server, name: str, blobs: list[str], after: int) -> list[Access]:
    """The server's log once every blob was downloaded (GET, 200) from ``name``."""
    return wait_for_access(
        server, lambda found: set(blobs) <= fetched_blobs(found, name), after=after
    )


def assert_layers_mounted(
    log: list[Access], name: str, layers: list[str], sources: set[str]
) -> None:
    """docker mounted every layer into ``name`` from one of ``sources`` (201) and uploaded none
    of them again: the only upload sessions that carried bytes closed with a non-layer digest
    (the image config, which docker always uploads anew)."""
    uploads = [a for a in log if a.in_image(name, "blobs/uploads")]
    for layer in layers:
        mounts = [a for a in uploads if a.method == "POST" and a.query.get("mount") == layer]
        assert mounts, f"docker never tried to mount {layer} into {name}"
        assert all(a.query.get("from") in sources for a in mounts), mounts
        assert mounts[-1].status == 201, mounts
    closed = {a.last_segment: a.query.get("digest") for a in uploads if a.method == "PUT"}
    assert not set(layers) & set(closed.values()), f"a layer was uploaded again: {closed}"
    patched = {a.last_segment for a in uploads if a.method == "PATCH"}
    assert all(closed.get(session) not in (*layers, None) for session in patched), (
        patched,
        closed,
    )


def test_push_and_pull_back_deep_name(
    docker: DockerDaemon, skopeo: Skopeo, server: Server, name: str, tmp_path: Path
) -> None:
    """An image name of several segments pushes, and pulls back by the digest pushed."""
    repo = f"{name}/team/app/api"
    ref = f"{server.host}/{repo}:v1"
    image_id = load_fresh_image(docker, skopeo, tmp_path / "layout", ref)

    pushed, _ = push(docker, ref)

    served = served_manifest(server, repo, "v1")
    assert served.digest == pushed
    assert served.media_type == DOCKER_MANIFEST
    assert served_manifest(server, repo, pushed).digest == pushed
    manifest = json.loads(served.body)
    assert manifest["mediaType"] == DOCKER_MANIFEST
    assert manifest["config"]["digest"] == image_id
    layers = [layer["digest"] for layer in manifest["layers"]]
    assert len(layers) == 2

    docker("image", "rm", ref)
    assert_absent(docker, ref)
    mark = log_mark(server)
    assert docker.pull(ref) == pushed

    local = docker.inspect(ref)
    assert local["Id"] == image_id
    assert local["RepoDigests"] == [f"{server.host}/{repo}@{pushed}"]
    wait_for_download(server, repo, [image_id, *layers], after=mark)


def test_second_name_in_the_same_repository_mounts_every_layer(
    docker: DockerDaemon, skopeo: Skopeo, server: Server, name: str, tmp_path: Path
) -> None:
    source, copy = f"{name}/team/app", f"{name}/team/copy"
    load_fresh_image(docker, skopeo, tmp_path / "layout", f"{server.host}/{source}:v1")
    pushed, _ = push(docker, f"{server.host}/{source}:v1")
    layers = layer_digests(server, source, "v1")

    mark = log_mark(server)
    docker.tag(f"{server.host}/{source}:v1", f"{server.host}/{copy}:v1")
    digest, output = push(docker, f"{server.host}/{copy}:v1")

    assert digest == pushed
    assert output.count(f"Mounted from {source}") == len(layers), output
    log = wait_for_access(
        server,
        any_access(lambda a: a.method == "PUT" and a.in_image(copy, "manifests")),
        after=mark,
    )
    assert_layers_mounted(log, copy, layers, {source})
    assert served_manifest(server, copy, "v1").digest == pushed
    assert layer_digests(server, copy, "v1") == layers


def test_push_to_another_repository_mounts_and_pulls_back(
    docker: DockerDaemon,
    skopeo: Skopeo,
    server: Server,
    name: str,
    other_repository: str,
    tmp_path: Path,
) -> None:
    source = f"{name}/app"
    target = f"{other_repository}/{name.rsplit('/', 1)[1]}/app"
    source_ref, target_ref = f"{server.host}/{source}:v1", f"{server.host}/{target}:v1"
    image_id = load_fresh_image(docker, skopeo, tmp_path / "layout", source_ref)
    pushed, _ = push(docker, source_ref)
    layers = layer_digests(server, source, "v1")

    mark = log_mark(server)
    docker.tag(source_ref, target_ref)
    assert push(docker, target_ref)[0] == pushed

    log = wait_for_access(
        server,
        any_access(lambda a: a.method == "PUT" and a.in_image(target, "manifests")),
        after=mark,
    )
    assert_layers_mounted(log, target, layers, {source})
    assert served_manifest(server, target, "v1").digest == pushed

    docker("image", "rm", source_ref, target_ref)
    assert_absent(docker, target_ref)
    mark = log_mark(server)
    assert docker.pull(target_ref) == pushed
    assert docker.inspect(target_ref)["Id"] == image_id
    wait_for_download(server, target, [image_id, *layers], after=mark)
    assert not [a for a in accesses(server, after=mark) if a.in_image(source, "blobs")]


def test_pull_of_a_multi_arch_index_reports_the_index_digest(
    docker: DockerDaemon, skopeo: Skopeo, server: Server, name: str, tmp_path: Path
) -> None:
    image = oci_index(tmp_path / "layout", "v1")
    repo = f"{name}/multi"
    ref = f"{server.host}/{repo}:v1"
    skopeo.copy(image.ref, f"docker://{ref}", all_images=True, dest_creds=server.admin_creds)
    served = served_manifest(server, repo, "v1")
    assert (served.digest, served.media_type) == (image.digest, OCI_INDEX)

    mark = log_mark(server)
    assert docker.pull(ref) == image.digest

    arch = docker("version", "--format", "{{.Server.Arch}}").strip()
    child = next((m for m in image.manifests if m.platform == ("linux", arch)), None)
    if child is None:
        pytest.fail(f"the test index has no linux/{arch} image for this machine's docker")
    wanted = child.digest
    config = json.loads(image.read_blob(wanted))["config"]["digest"]
    local = docker.inspect(ref)
    assert local["Id"] == config
    assert local["RepoDigests"] == [f"{server.host}/{repo}@{image.digest}"]
    assert (local["Os"], local["Architecture"]) == ("linux", arch)
    log = wait_for_access(
        server,
        any_access(lambda a: a.in_image(repo, "manifests") and a.last_segment == wanted),
        after=mark,
    )
    others = {m.digest for m in image.manifests} - {wanted}
    fetched = {a.last_segment for a in log if a.method == "GET" and a.in_image(repo, "manifests")}
    assert wanted in fetched
    assert not others & fetched, "docker fetched another platform's manifest"
