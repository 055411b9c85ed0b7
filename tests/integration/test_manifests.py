"""Pushing and pulling manifests, and the referrers API, over the real socket
(distribution spec: "Pushing Manifests", "Listing Referrers")."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import pytest

from tests.integration.oci_client import (
    EMPTY_JSON,
    OCI_EMPTY,
    OCI_INDEX,
    OCI_MANIFEST,
    OciClient,
    Pushed,
    descriptor,
    sha256,
)
from tests.integration.server import Server

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
HELM_CONFIG = "application/vnd.cncf.helm.config.v1+json"
HELM_CHART = "application/vnd.cncf.helm.chart.content.v1.tar+gzip"
SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"
SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+json"
MAX_MANIFEST_BYTES = 4 * 1024 * 1024

# A manifest document, the Content-Type it is pushed with, the Content-Type it is served with.
Case = tuple[dict[str, Any], str | None, str]
Builder = Callable[[OciClient, str], Case]


def odd_json(value: Any) -> bytes:
    """JSON no serializer would write back the same: keys in reverse order, tabs and odd
    spacing, CRLF line ends, raw UTF-8 and trailing blank lines."""

    def reversed_keys(item: Any) -> Any:
        if isinstance(item, dict):
            return {key: reversed_keys(item[key]) for key in reversed(list(item))}
        if isinstance(item, list):
            return [reversed_keys(element) for element in item]
        return item

    text = json.dumps(
        reversed_keys(value), indent="\t ", separators=(" ,", " :  "), ensure_ascii=False
    )
    return (" \r\n" + text.replace("\n", "  \r\n") + "\n\n").encode()


def image_document(
    client: OciClient,
    name: str,
    media_type: str | None,
    config_type: str,
    layer_type: str,
    config: bytes | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """An image manifest whose config and one random layer are pushed to `name`."""
    config = config if config is not None else json.dumps({"id": os.urandom(8).hex()}).encode()
    layer = os.urandom(512)
    client.push_blob(name, config)
    client.push_blob(name, layer)
    document: dict[str, Any] = {"schemaVersion": 2}
    if media_type is not None:
        document["mediaType"] = media_type
    return {
        **document,
        "config": descriptor(config_type, config),
        "layers": [descriptor(layer_type, layer)],
        **extra,
    }


def image(media_type: str, config_type: str, layer_type: str) -> Builder:
    def build(client: OciClient, name: str) -> Case:
        return (
            image_document(client, name, media_type, config_type, layer_type),
            media_type,
            media_type,
        )

    return build


def index(media_type: str, child_type: str, child: Builder) -> Builder:
    """A multi-platform index whose two children are pushed (by digest) first."""

    def build(client: OciClient, name: str) -> Case:
        children = []
        for arch in ("amd64", "arm64"):
            body = json.dumps(child(client, name)[0]).encode()
            client.push_manifest(name, sha256(body), body, child_type)
            platform = {"architecture": arch, "os": "linux"}
            children.append(descriptor(child_type, body, platform=platform))
        document = {"schemaVersion": 2, "mediaType": media_type, "manifests": children}
        return document, media_type, media_type

    return build


def artifact(client: OciClient, name: str) -> Case:
    document = image_document(
        client,
        name,
        OCI_MANIFEST,
        OCI_EMPTY,
        "application/vnd.example.data.v1+tar",
        config=EMPTY_JSON,
        artifactType="application/vnd.example.artifact.v1",
        annotations={"org.example.note": "naïve ✓"},
    )
    return document, OCI_MANIFEST, OCI_MANIFEST


def helm_chart(content_type: str | None, client: OciClient, name: str) -> Case:
    """A Helm 3 chart manifest: no top-level mediaType."""
    config = json.dumps({"name": "demo", "version": "0.1.0", "apiVersion": "v2"}).encode()
    document = image_document(client, name, None, HELM_CONFIG, HELM_CHART, config=config)
    return document, content_type, OCI_MANIFEST


OCI_IMAGE = image(OCI_MANIFEST, OCI_CONFIG, OCI_LAYER)
DOCKER_IMAGE = image(DOCKER_MANIFEST, DOCKER_CONFIG, DOCKER_LAYER)


@pytest.mark.parametrize(
    "build",
    [
        pytest.param(OCI_IMAGE, id="oci-image"),
        pytest.param(index(OCI_INDEX, OCI_MANIFEST, OCI_IMAGE), id="oci-index"),
        pytest.param(DOCKER_IMAGE, id="docker-schema2"),
        pytest.param(index(DOCKER_LIST, DOCKER_MANIFEST, DOCKER_IMAGE), id="docker-list"),
        pytest.param(artifact, id="oci-artifact"),
        pytest.param(partial(helm_chart, OCI_MANIFEST), id="helm-oci-content-type"),
        pytest.param(partial(helm_chart, None), id="helm-no-content-type"),
    ],
)
def test_push_and_pull_back_byte_for_byte(oci: OciClient, name: str, build: Builder) -> None:
    document, content_type, served_type = build(oci, name)
    body = odd_json(document)
    pushed = oci.put_manifest(name, "v1", body, content_type)
    assert pushed.status_code == 201, pushed.text
    digest = sha256(body)
    assert pushed.headers["Docker-Content-Digest"] == digest
    assert pushed.headers["Location"] == f"/v2/{name}/manifests/{digest}"
    for reference in ("v1", digest):
        pulled = oci.get_manifest(name, reference)
        assert pulled.status_code == 200, pulled.text
        assert pulled.content == body
        assert pulled.headers["Content-Type"] == served_type
        assert pulled.headers["Docker-Content-Digest"] == digest


@pytest.mark.parametrize("missing", ["config", "layer"])
def test_manifest_with_missing_blob_is_refused(oci: OciClient, name: str, missing: str) -> None:
    blobs = {"config": b'{"architecture":"amd64"}', "layer": os.urandom(256)}
    present = next(data for role, data in blobs.items() if role != missing)
    oci.push_blob(name, present)
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(OCI_CONFIG, blobs["config"]),
        "layers": [descriptor(OCI_LAYER, blobs["layer"])],
    }
    response = oci.put_manifest(name, "v1", json.dumps(manifest).encode())
    error = oci.error_entry(response, 400, "MANIFEST_BLOB_UNKNOWN")
    assert sha256(blobs[missing]) in json.dumps(error["detail"])
    assert sha256(present) not in json.dumps(error["detail"])
    oci.expect_error(oci.get_manifest(name, "v1"), 404, "MANIFEST_UNKNOWN")


def test_index_with_missing_child_is_refused(oci: OciClient, name: str) -> None:
    present = oci.push_image(name, tag=None)
    absent = json.dumps({"schemaVersion": 2, "never": "pushed"}).encode()
    manifests = [descriptor(OCI_MANIFEST, present.body), descriptor(OCI_MANIFEST, absent)]
    body = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests})
    response = oci.put_manifest(name, "v1", body.encode(), OCI_INDEX)
    error = oci.error_entry(response, 400, "MANIFEST_BLOB_UNKNOWN")
    assert sha256(absent) in json.dumps(error["detail"])
    assert present.digest not in json.dumps(error["detail"])


def _image_json(**changes: Any) -> bytes:
    """A well-formed OCI image manifest (its blobs need not exist), with `changes` applied."""
    manifest: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(OCI_CONFIG, b"{}"),
        "layers": [descriptor(OCI_LAYER, b"layer")],
    }
    return json.dumps({**manifest, **changes}).encode()


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        pytest.param(b'{"schemaVersion": 2, "config": ', OCI_MANIFEST, id="truncated-json"),
        pytest.param(b"\xff\xfe{}", OCI_MANIFEST, id="not-utf8"),
        pytest.param(b'[{"schemaVersion": 2}]', OCI_MANIFEST, id="json-array"),
        pytest.param(_image_json(schemaVersion=3), OCI_MANIFEST, id="schema-version-3"),
        pytest.param(_image_json(schemaVersion="2"), OCI_MANIFEST, id="schema-version-string"),
        pytest.param(
            _image_json(layers=[{"mediaType": OCI_LAYER, "digest": sha256(b"x"), "size": -1}]),
            OCI_MANIFEST,
            id="negative-size",
        ),
        pytest.param(
            _image_json(config={"mediaType": OCI_CONFIG, "digest": "sha256:nothex", "size": 2}),
            OCI_MANIFEST,
            id="malformed-digest",
        ),
        pytest.param(
            _image_json(layers=[{"digest": sha256(b"x"), "size": 1}]),
            OCI_MANIFEST,
            id="descriptor-without-media-type",
        ),
        pytest.param(_image_json(layers={}), OCI_MANIFEST, id="layers-not-array"),
        pytest.param(_image_json(), DOCKER_MANIFEST, id="body-oci-header-docker"),
        pytest.param(_image_json(), OCI_INDEX, id="body-manifest-header-index"),
        pytest.param(_image_json(manifests=[]), OCI_MANIFEST, id="manifest-and-index-at-once"),
    ],
)
def test_invalid_manifest_is_refused(
    oci: OciClient, name: str, body: bytes, content_type: str
) -> None:
    response = oci.put_manifest(name, "v1", body, content_type)
    oci.expect_error(response, 400, "MANIFEST_INVALID")
    oci.expect_error(oci.get_manifest(name, sha256(body)), 404, "MANIFEST_UNKNOWN")


@pytest.mark.parametrize(
    "content_type", [SCHEMA1_SIGNED, SCHEMA1, None], ids=["prettyjws", "v1-json", "no-content-type"]
)
def test_docker_schema1_is_unsupported(oci: OciClient, name: str, content_type: str | None) -> None:
    layer = sha256(os.urandom(16))
    manifest = {
        "schemaVersion": 1,
        "name": name,
        "tag": "v1",
        "architecture": "amd64",
        "fsLayers": [{"blobSum": layer}],
        "history": [{"v1Compatibility": json.dumps({"id": "a" * 64})}],
        "signatures": [],
    }
    response = oci.put_manifest(name, "v1", json.dumps(manifest).encode(), content_type)
    error = oci.error_entry(response, 400, "UNSUPPORTED")
    assert "schema 1" in error["message"].lower()


def test_put_by_digest_refuses_a_body_of_another_digest(oci: OciClient, name: str) -> None:
    body = _image_json()
    claimed = sha256(body + b" ")
    error = oci.error_entry(oci.put_manifest(name, claimed, body), 400, "DIGEST_INVALID")
    assert sha256(body) in json.dumps(error)
    for reference in (claimed, sha256(body)):
        oci.expect_error(oci.get_manifest(name, reference), 404, "MANIFEST_UNKNOWN")


def padded_manifest(oci: OciClient, name: str, size: int) -> bytes:
    """An image manifest of exactly `size` bytes, padded out with an annotation."""
    document = image_document(oci, name, OCI_MANIFEST, OCI_CONFIG, OCI_LAYER)
    document["annotations"] = {"org.example.padding": ""}
    padding = size - len(json.dumps(document).encode())
    document["annotations"]["org.example.padding"] = "x" * padding
    body = json.dumps(document).encode()
    assert len(body) == size
    return body


def test_manifest_just_under_4_mib_is_accepted(oci: OciClient, name: str) -> None:
    body = padded_manifest(oci, name, MAX_MANIFEST_BYTES - 100)
    pushed = oci.push_manifest(name, "big", body)
    assert pushed.digest == sha256(body)
    assert oci.get_manifest(name, "big").content == body


def _in_chunks(body: bytes) -> Iterator[bytes]:
    for start in range(0, len(body), 64 * 1024):
        yield body[start : start + 64 * 1024]


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_manifest_over_4_mib_is_413(oci: OciClient, name: str, chunked: bool) -> None:
    body = padded_manifest(oci, name, MAX_MANIFEST_BYTES + 1)
    response = oci.put_manifest(name, "big", _in_chunks(body) if chunked else body)
    oci.expect_error(response, 413, "SIZE_INVALID")
    oci.expect_error(oci.get_manifest(name, "big"), 404, "MANIFEST_UNKNOWN")


def _oci_tags(header: str) -> list[str]:
    return [tag.strip() for tag in header.split(",")]


def test_put_by_digest_with_tag_parameters_creates_each_tag(oci: OciClient, name: str) -> None:
    body = json.dumps(image_document(oci, name, OCI_MANIFEST, OCI_CONFIG, OCI_LAYER)).encode()
    digest = sha256(body)
    response = oci.put_manifest(name, digest, body, params={"tag": ["a", "b"]})
    assert response.status_code == 201, response.text
    assert sorted(_oci_tags(response.headers["OCI-Tag"])) == ["a", "b"]
    for tag in ("a", "b"):
        pulled = oci.get_manifest(name, tag)
        assert pulled.status_code == 200, pulled.text
        assert pulled.headers["Docker-Content-Digest"] == digest
    assert oci.tags(name) == ["a", "b"]


def test_repushing_a_tag_moves_it(oci: OciClient, name: str) -> None:
    first = oci.push_image(name, "latest")
    second = oci.push_image(name, "latest")
    assert oci.get_manifest(name, "latest").content == second.body
    assert oci.get_manifest(name, first.digest).content == first.body
    assert oci.tags(name) == ["latest"]


@pytest.mark.parametrize("subject_exists", [True, False], ids=["subject-pushed", "subject-absent"])
def test_manifest_with_subject_is_accepted_with_oci_subject(
    oci: OciClient, name: str, subject_exists: bool
) -> None:
    if subject_exists:
        subject = oci.push_image(name)
    else:
        body = json.dumps({"schemaVersion": 2, "not": "pushed"}).encode()
        subject = Pushed(sha256(body), body)
    body = json.dumps(
        image_document(
            oci,
            name,
            OCI_MANIFEST,
            OCI_EMPTY,
            OCI_LAYER,
            config=EMPTY_JSON,
            artifactType="application/vnd.example.sbom.v1",
            subject=descriptor(OCI_MANIFEST, subject.body),
        )
    ).encode()
    response = oci.put_manifest(name, sha256(body), body)
    assert response.status_code == 201, response.text
    assert response.headers["OCI-Subject"] == subject.digest
    listed = oci.request("GET", f"/v2/{name}/referrers/{subject.digest}").json()["manifests"]
    assert [entry["digest"] for entry in listed] == [sha256(body)]


# Referrers


@pytest.fixture
def subject(oci: OciClient, name: str) -> Pushed:
    return oci.push_image(name)


@pytest.fixture
def referrers(oci: OciClient, name: str, subject: Pushed) -> list[dict[str, Any]]:
    """Push three referrers of `subject`; return the descriptors the referrers API owes.

    An artifact with `artifactType`, an image manifest without one (its config type stands
    in) and an index without one (no `artifactType` at all).
    """
    points_at = descriptor(OCI_MANIFEST, subject.body)
    signature = image_document(
        oci,
        name,
        OCI_MANIFEST,
        OCI_EMPTY,
        "application/vnd.example.signature.v1+sig",
        config=EMPTY_JSON,
        artifactType="application/vnd.example.signature.v1",
        annotations={"org.example.signer": "alice"},
        subject=points_at,
    )
    sbom = image_document(
        oci,
        name,
        OCI_MANIFEST,
        "application/vnd.example.sbom.config.v1+json",
        "application/vnd.example.sbom.v1+json",
        annotations={"org.opencontainers.image.created": "2024-01-01T00:00:00Z"},
        subject=points_at,
    )
    expected = []
    for document, artifact_type in (
        (signature, "application/vnd.example.signature.v1"),
        (sbom, "application/vnd.example.sbom.config.v1+json"),
    ):
        pushed = oci.push_manifest(name, sha256(json.dumps(document).encode()), document)
        annotations = document["annotations"]
        expected.append(
            descriptor(
                OCI_MANIFEST, pushed.body, artifactType=artifact_type, annotations=annotations
            )
        )
    annotations = {"org.example.kind": "bundle"}
    bundle = oci.push_index(name, [subject], annotations=annotations, subject=points_at)
    expected.append(descriptor(OCI_INDEX, bundle.body, annotations=annotations))
    return expected


def _by_digest(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(entries, key=lambda entry: str(entry["digest"]))


def test_referrers_lists_descriptors_with_artifact_type_and_annotations(
    oci: OciClient, name: str, subject: Pushed, referrers: list[dict[str, Any]]
) -> None:
    response = oci.request("GET", f"/v2/{name}/referrers/{subject.digest}")
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == OCI_INDEX
    assert "OCI-Filters-Applied" not in response.headers
    listing = response.json()
    assert (listing["schemaVersion"], listing["mediaType"]) == (2, OCI_INDEX)
    assert _by_digest(listing["manifests"]) == _by_digest(referrers)


def test_referrers_filter_on_artifact_type(
    oci: OciClient, name: str, subject: Pushed, referrers: list[dict[str, Any]]
) -> None:
    wanted = "application/vnd.example.signature.v1"
    response = oci.request(
        "GET", f"/v2/{name}/referrers/{subject.digest}", params={"artifactType": wanted}
    )
    assert response.status_code == 200, response.text
    assert response.headers["OCI-Filters-Applied"] == "artifactType"
    assert response.headers["Content-Type"] == OCI_INDEX
    expected = [entry for entry in referrers if entry.get("artifactType") == wanted]
    assert len(expected) == 1
    assert response.json()["manifests"] == expected


@pytest.mark.parametrize("image_pushed", [True, False], ids=["known-image", "unknown-image"])
def test_referrers_of_an_unknown_digest_is_an_empty_index(
    oci: OciClient, name: str, image_pushed: bool
) -> None:
    if image_pushed:
        oci.push_image(name)
    response = oci.request("GET", f"/v2/{name}/referrers/{sha256(os.urandom(8))}")
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == OCI_INDEX
    assert response.json() == {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}


@pytest.mark.parametrize(
    "digest",
    ["sha256:abc", "sha256", "sha256:" + "A" * 64, "sha256:" + "g" * 64, "sha256:" + "0" * 65],
    ids=["short", "no-algorithm-separator", "uppercase-hex", "not-hex", "too-long"],
)
def test_referrers_of_a_malformed_digest_is_400(oci: OciClient, name: str, digest: str) -> None:
    oci.push_image(name)
    oci.expect_error(oci.request("GET", f"/v2/{name}/referrers/{digest}"), 400, "DIGEST_INVALID")


def test_referrers_are_per_image_name(
    oci: OciClient, server: Server, name: str, subject: Pushed, referrers: list[dict[str, Any]]
) -> None:
    other = server.unique_name()
    oci.push_image(other)
    response = oci.request("GET", f"/v2/{other}/referrers/{subject.digest}")
    assert response.status_code == 200, response.text
    assert response.json()["manifests"] == []
