"""oras-py, the ORAS Python SDK, against the real server: files pushed and pulled back, OCI 1.1
artifacts with a subject found through the referrers API, and the SDK's chunked upload."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.integration.access_log import Access, wait_for_access
from tests.integration.clients import Descriptor, Oras
from tests.integration.oci_client import OCI_EMPTY, OCI_INDEX, OCI_MANIFEST, sha256
from tests.integration.server import Server

pytestmark = pytest.mark.clients

OCI_TITLE = "org.opencontainers.image.title"
SBOM = "application/vnd.example.sbom.v1+json"
SIGNATURE = "application/vnd.example.signature.v1"
UNKNOWN_CONFIG = "application/vnd.unknown.config.v1+json"
"""The config type of oras-py's own push(), and so the artifact type the referrers API
reports for a manifest pushed with it (the image spec: config.mediaType stands in)."""

CHUNK = 1 << 20


@pytest.fixture
def oras(server: Server, tmp_path: Path) -> Oras:
    """The SDK logged in as the administrator (``login``: Basic credentials it trades for a
    token when challenged)."""
    user, password = server.admin_auth
    return Oras(tmp_path / "oras", server.host, user=user, password=password)


@pytest.fixture
def fresh_oras(server: Server, tmp_path: Path) -> Oras:
    """A second SDK client with its own config and login, for pulls."""
    user, password = server.admin_auth
    return Oras(tmp_path / "oras-pull", server.host, user=user, password=password)


def write_files(folder: Path, contents: Mapping[str, bytes]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for file_name, data in contents.items():
        path = folder / file_name
        path.write_bytes(data)
        paths.append(path)
    return paths


def get_manifest(server: Server, name: str, reference: str) -> requests.Response:
    response = requests.get(
        f"{server.url}/v2/{name}/manifests/{reference}",
        headers={"Accept": OCI_MANIFEST},
        auth=server.admin_auth,
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return response


def sent_body(response: requests.Response) -> bytes:
    """The bytes a request sent, as requests prepared them."""
    body = response.request.body
    assert isinstance(body, bytes), type(body)
    return body


def assert_manifest_put(server: Server, name: str, tag: str, response: requests.Response) -> str:
    """The manifest PUT answered 201 with the digest of the bytes sent, and the server serves
    those very bytes under the tag and that digest. Returns the digest."""
    assert response.status_code == 201, response.text
    body = sent_body(response)
    digest = sha256(body)
    assert response.headers["Docker-Content-Digest"] == digest
    for reference in (tag, digest):
        served = get_manifest(server, name, reference)
        assert served.content == body
        assert served.headers["Docker-Content-Digest"] == digest
    return digest


def assert_served(server: Server, name: str, layer: Mapping[str, Any]) -> None:
    """The server serves the bytes the layer's descriptor names.

    oras-py does not check the digest of what it pulls: this does.
    """
    blob = requests.get(
        f"{server.url}/v2/{name}/blobs/{layer['digest']}", auth=server.admin_auth, timeout=60
    )
    assert blob.status_code == 200, blob.text
    assert blob.headers["Docker-Content-Digest"] == layer["digest"]
    assert sha256(blob.content) == layer["digest"]
    assert len(blob.content) == layer["size"]


def assert_blob(server: Server, name: str, layer: Mapping[str, Any], data: bytes) -> None:
    """The layer's descriptor names ``data``, and the server serves exactly that."""
    assert layer["digest"] == sha256(data)
    assert layer["size"] == len(data)
    assert_served(server, name, layer)


def descriptor_of(response: requests.Response) -> Descriptor:
    """The descriptor of the manifest a successful SDK PUT sent."""
    body = sent_body(response)
    return Descriptor(OCI_MANIFEST, sha256(body), len(body))


def push_artifact(
    oras: Oras,
    target: str,
    files: Sequence[Path],
    *,
    artifact_type: str,
    annotations: Mapping[str, str],
    subject: Descriptor,
) -> tuple[Descriptor, requests.Response]:
    """An OCI 1.1 artifact (artifactType, empty config, subject, manifest annotations) pushed
    with the SDK's ``upload_blob`` and ``upload_manifest``; its descriptor and the PUT answer."""
    client = oras.client
    container = client.get_container(target)
    client.auth.load_configs(container, configs=[oras.config_path])
    empty = oras.workdir / "empty.json"
    empty.write_bytes(b"{}")
    config = Descriptor(OCI_EMPTY, sha256(b"{}"), 2)
    layers = []
    for path in [empty, *files]:
        data = path.read_bytes()
        layer = Descriptor(
            "application/octet-stream", sha256(data), len(data), annotations={OCI_TITLE: path.name}
        )
        client._check_200_response(client.upload_blob(str(path), container, layer.to_json()))
        layers.append(layer)
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": config.to_json(),
        "layers": [layer.to_json() for layer in layers[1:]],
        "subject": subject.to_json(),
        "annotations": dict(annotations),
    }
    response: requests.Response = client.upload_manifest(manifest, container)
    assert response.status_code == 201, response.text
    return descriptor_of(response), response


def referrers(
    server: Server, name: str, digest: str, artifact_type: str | None = None
) -> tuple[requests.Response, list[dict[str, Any]]]:
    params = {} if artifact_type is None else {"artifactType": artifact_type}
    response = requests.get(
        f"{server.url}/v2/{name}/referrers/{digest}",
        params=params,
        auth=server.admin_auth,
        timeout=30,
    )
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == OCI_INDEX
    index: dict[str, Any] = json.loads(response.content)
    assert index["schemaVersion"] == 2
    assert index["mediaType"] == OCI_INDEX
    manifests: list[dict[str, Any]] = index["manifests"]
    return response, manifests


def push_subject(oras: Oras, server: Server, name: str, folder: Path) -> Descriptor:
    """An ordinary image (one file) pushed with the SDK: the subject of the artifacts."""
    files = write_files(folder, {"app.bin": os.urandom(4096)})
    response = oras.push(f"{server.host}/{name}:v1", files)
    assert_manifest_put(server, name, "v1", response)
    return descriptor_of(response)


def test_files_round_trip(
    oras: Oras, fresh_oras: Oras, server: Server, name: str, tmp_path: Path
) -> None:
    contents = {
        "notes.txt": b"cargohold and oras\n",
        "data.bin": os.urandom(300 * 1024),
        "empty.txt": b"",
    }
    files = write_files(tmp_path / "src", contents)
    response = oras.push(f"{server.host}/{name}:files", files)
    digest = assert_manifest_put(server, name, "files", response)

    manifest = json.loads(get_manifest(server, name, digest).content)
    titles = {layer["annotations"][OCI_TITLE]: layer for layer in manifest["layers"]}
    assert sorted(titles) == sorted(contents)
    for file_name, data in contents.items():
        assert_blob(server, name, titles[file_name], data)

    pulled = fresh_oras.pull(f"{server.host}/{name}:files", tmp_path / "out")
    assert sorted(p.name for p in pulled) == sorted(contents)
    for path in pulled:
        assert path.read_bytes() == contents[path.name]


def test_directory_round_trip(
    oras: Oras, fresh_oras: Oras, server: Server, name: str, tmp_path: Path
) -> None:
    """A directory goes up as one tar+gzip layer and comes back unpacked."""
    contents = {"a.txt": b"alpha\n", "b.bin": os.urandom(50 * 1024)}
    folder = tmp_path / "src" / "bundle"
    write_files(folder, contents)
    response = oras.push(f"{server.host}/{name}:dir", [folder])
    digest = assert_manifest_put(server, name, "dir", response)
    [layer] = json.loads(get_manifest(server, name, digest).content)["layers"]
    assert layer["mediaType"] == "application/vnd.oci.image.layer.v1.tar+gzip"
    assert layer["annotations"][OCI_TITLE] == "bundle"
    assert_served(server, name, layer)

    fresh_oras.pull(f"{server.host}/{name}:dir", tmp_path / "out")
    for file_name, data in contents.items():
        assert (tmp_path / "out" / "bundle" / file_name).read_bytes() == data


def test_artifact_with_subject_is_listed_as_referrer(
    oras: Oras, fresh_oras: Oras, server: Server, name: str, tmp_path: Path
) -> None:
    subject = push_subject(oras, server, name, tmp_path / "subject")
    assert referrers(server, name, subject.digest)[1] == []

    sbom = {"sbom.json": b'{"packages": []}'}
    annotations = {"org.example.kind": "sbom", "org.opencontainers.image.created": "2024-01-01"}
    artifact, response = push_artifact(
        oras,
        f"{server.host}/{name}:sbom",
        write_files(tmp_path / "sbom", sbom),
        artifact_type=SBOM,
        annotations=annotations,
        subject=subject,
    )
    assert response.headers["OCI-Subject"] == subject.digest
    assert_manifest_put(server, name, "sbom", response)

    answer, listed = referrers(server, name, subject.digest)
    assert "OCI-Filters-Applied" not in answer.headers
    assert listed == [
        {
            "mediaType": OCI_MANIFEST,
            "digest": artifact.digest,
            "size": artifact.size,
            "artifactType": SBOM,
            "annotations": annotations,
        }
    ]
    # The artifact is nobody's subject itself.
    assert referrers(server, name, artifact.digest)[1] == []

    # It pulls back like any other manifest, file and subject included.
    pulled = fresh_oras.pull(f"{server.host}/{name}@{artifact.digest}", tmp_path / "out")
    assert [(p.name, p.read_bytes()) for p in pulled] == list(sbom.items())
    manifest = fresh_oras.client.get_manifest(f"{server.host}/{name}@{artifact.digest}")
    assert manifest["subject"] == subject.to_json()
    assert manifest["artifactType"] == SBOM


def test_referrers_filter_by_artifact_type(
    oras: Oras, server: Server, name: str, tmp_path: Path
) -> None:
    from oras.oci import Subject

    subject = push_subject(oras, server, name, tmp_path / "subject")
    sbom, _ = push_artifact(
        oras,
        f"{server.host}/{name}:sbom",
        write_files(tmp_path / "sbom", {"sbom.json": b"{}\n"}),
        artifact_type=SBOM,
        annotations={"org.example.kind": "sbom"},
        subject=subject,
    )
    # The harness's own artifact push, and the SDK's push() with its subject argument.
    signature = oras.push_artifact(
        f"{server.host}/{name}:sig",
        write_files(tmp_path / "sig", {"sig.bin": os.urandom(256)}),
        artifact_type=SIGNATURE,
        subject=subject,
    )
    plain_response = oras.client.push(
        target=f"{server.host}/{name}:plain",
        files=[str(p) for p in write_files(tmp_path / "plain", {"plain.txt": b"plain\n"})],
        config_path=oras.config_path,
        disable_path_validation=True,
        manifest_annotations={"org.example.kind": "plain"},
        subject=Subject(subject.media_type, subject.digest, subject.size),
        quiet=True,
    )
    assert plain_response.headers["OCI-Subject"] == subject.digest
    plain = descriptor_of(plain_response)

    answer, listed = referrers(server, name, subject.digest)
    assert "OCI-Filters-Applied" not in answer.headers
    assert {entry["digest"]: entry.get("artifactType") for entry in listed} == {
        sbom.digest: SBOM,
        signature.digest: SIGNATURE,
        plain.digest: UNKNOWN_CONFIG,
    }

    for artifact_type, expected in [
        (SIGNATURE, signature),
        (SBOM, sbom),
        (UNKNOWN_CONFIG, plain),
    ]:
        answer, listed = referrers(server, name, subject.digest, artifact_type)
        assert answer.headers["OCI-Filters-Applied"] == "artifactType"
        assert [(e["digest"], e["size"], e["artifactType"]) for e in listed] == [
            (expected.digest, expected.size, artifact_type)
        ]

    answer, listed = referrers(server, name, subject.digest, "application/vnd.example.none")
    assert answer.headers["OCI-Filters-Applied"] == "artifactType"
    assert listed == []


def test_chunked_upload_through_the_sdk(
    oras: Oras, fresh_oras: Oras, server: Server, name: str, tmp_path: Path
) -> None:
    """oras-py's chunked path (POST, one PATCH per chunk, closing PUT), driven by its own
    ``push(do_chunked=True)``, for a blob of two and a half chunks."""
    data = os.urandom(CHUNK * 5 // 2)
    [path] = write_files(tmp_path / "src", {"big.bin": data})
    response = oras.client.push(
        target=f"{server.host}/{name}:big",
        files=[str(path)],
        config_path=oras.config_path,
        disable_path_validation=True,
        do_chunked=True,
        chunk_size=CHUNK,
        quiet=True,
    )
    digest = assert_manifest_put(server, name, "big", response)

    # Each chunk was its own PATCH, accepted (the access log line follows the answer).
    uploads = f"/v2/{name}/blobs/uploads/"
    chunks = math.ceil(len(data) / CHUNK)
    assert chunks == 3

    def patches(found: list[Access]) -> list[Access]:
        return [a for a in found if a.method == "PATCH" and a.path.startswith(uploads)]

    found = wait_for_access(server, lambda found: len(patches(found)) >= chunks)
    assert [a.status for a in patches(found)] == [202] * chunks

    [layer] = json.loads(get_manifest(server, name, digest).content)["layers"]
    assert_blob(server, name, layer, data)

    [pulled] = fresh_oras.pull(f"{server.host}/{name}:big", tmp_path / "out")
    assert sha256(pulled.read_bytes()) == sha256(data)
