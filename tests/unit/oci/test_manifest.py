import json
from typing import Any

import pytest

from cargohold.oci import mediatypes as mt
from cargohold.oci.digest import Digest, digest_of
from cargohold.oci.errors import ErrorCode, RegistryError
from cargohold.oci.manifest import Descriptor, Manifest, parse_manifest, referrers_index

EMPTY_DIGEST = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
D1 = "sha256:e692418e4cbaf90ca69d05a66403747baa33ee08806650b51fab815ad7fc331f"
D2 = "sha256:5b0bcabd1ed22e9fb1310cf6c2dec7cdef19f0ad69efa1f392e94a4333501270"
D3 = "sha256:3c3a4604a545cdc127456d94e421cd355bca5b528f4a9c1905b15da2eb4a4c6b"
D4 = "sha256:ec4b8955958665577945c89419d1af06b5f7636b4ac3da7f12184802ad867736"
CONFIG_DIGEST = "sha256:b5b2b2c507a0944348e0303114d8d93aaaa081732b86451d9bce1f432a537bc7"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"

# Examples from the reference specs (oci-image-manifest.md, oci-image-image-index.md,
# docker-manifest-v2-2.md).
OCI_IMAGE_MANIFEST: dict[str, Any] = {
    "schemaVersion": 2,
    "mediaType": mt.OCI_MANIFEST,
    "config": {"mediaType": mt.OCI_CONFIG, "digest": CONFIG_DIGEST, "size": 7023},
    "layers": [
        {
            "mediaType": OCI_LAYER,
            "digest": "sha256:9834876dcfb05cb167a5c24953eba58c4ac89b1adf57f28f2f9d09af107ee8f0",
            "size": 32654,
        },
        {"mediaType": OCI_LAYER, "digest": D3, "size": 16724},
        {"mediaType": OCI_LAYER, "digest": D4, "size": 73109},
    ],
    "subject": {"mediaType": mt.OCI_MANIFEST, "digest": D2, "size": 7682},
    "annotations": {"com.example.key1": "value1", "com.example.key2": "value2"},
}

OCI_IMAGE_INDEX: dict[str, Any] = {
    "schemaVersion": 2,
    "mediaType": mt.OCI_INDEX,
    "manifests": [
        {
            "mediaType": mt.OCI_MANIFEST,
            "size": 7143,
            "digest": D1,
            "platform": {"architecture": "ppc64le", "os": "linux"},
        },
        {
            "mediaType": mt.OCI_MANIFEST,
            "size": 7682,
            "digest": D2,
            "platform": {"architecture": "amd64", "os": "linux"},
        },
    ],
    "annotations": {"com.example.key1": "value1", "com.example.key2": "value2"},
}

OCI_INDEX_MIXED: dict[str, Any] = {
    "schemaVersion": 2,
    "mediaType": mt.OCI_INDEX,
    "manifests": [
        {
            "mediaType": mt.OCI_MANIFEST,
            "size": 7143,
            "digest": D1,
            "platform": {"architecture": "ppc64le", "os": "linux"},
        },
        {
            "mediaType": mt.OCI_INDEX,
            "size": 7682,
            "digest": "sha256:601570aaff1b68a61eb9c85b8beca1644e698003e0cdb5bce960f193d265a8b7",
        },
    ],
}

DOCKER_IMAGE_MANIFEST: dict[str, Any] = {
    "schemaVersion": 2,
    "mediaType": mt.DOCKER_MANIFEST,
    "config": {"mediaType": mt.DOCKER_CONFIG, "digest": CONFIG_DIGEST, "size": 7023},
    "layers": [
        {"mediaType": DOCKER_LAYER, "digest": D1, "size": 32654},
        {"mediaType": DOCKER_LAYER, "digest": D3, "size": 16724},
        {"mediaType": DOCKER_LAYER, "digest": D4, "size": 73109},
    ],
}

DOCKER_MANIFEST_LIST: dict[str, Any] = {
    "schemaVersion": 2,
    "mediaType": mt.DOCKER_MANIFEST_LIST,
    "manifests": [
        {
            "mediaType": mt.DOCKER_MANIFEST,
            "digest": D1,
            "size": 7143,
            "platform": {"architecture": "ppc64le", "os": "linux"},
        },
        {
            "mediaType": mt.DOCKER_MANIFEST,
            "digest": D2,
            "size": 7682,
            "platform": {"architecture": "amd64", "os": "linux", "features": ["sse4"]},
        },
    ],
}

OCI_ARTIFACT: dict[str, Any] = {
    "schemaVersion": 2,
    "mediaType": mt.OCI_MANIFEST,
    "artifactType": "application/vnd.example+type",
    "config": {"mediaType": mt.OCI_EMPTY, "digest": EMPTY_DIGEST, "size": 2},
    "layers": [{"mediaType": mt.OCI_EMPTY, "digest": EMPTY_DIGEST, "size": 2}],
    "annotations": {
        "oci.opencontainers.image.created": "2023-01-02T03:04:05Z",
        "com.example.data": "payload",
    },
}

# What `helm push` (Helm 3) sends: no top-level mediaType.
HELM_CHART: dict[str, Any] = {
    "schemaVersion": 2,
    "config": {"mediaType": mt.HELM_CONFIG, "digest": D1, "size": 117},
    "layers": [
        {
            "mediaType": "application/vnd.cncf.helm.chart.content.v1.tar+gzip",
            "digest": D2,
            "size": 3709,
        }
    ],
    "annotations": {
        "org.opencontainers.image.title": "mychart",
        "org.opencontainers.image.version": "0.1.0",
    },
}


def encode(document: Any) -> bytes:
    return json.dumps(document).encode()


def with_changes(document: dict[str, Any], **changes: Any) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(json.dumps(document))
    for key, value in changes.items():
        if value is ...:
            del result[key]
        else:
            result[key] = value
    return result


def manifest_invalid(body: bytes, content_type: str | None = None) -> RegistryError:
    with pytest.raises(RegistryError) as info:
        parse_manifest(body, content_type)
    assert info.value.code is ErrorCode.MANIFEST_INVALID
    assert info.value.status == 400
    return info.value


def test_oci_image_manifest() -> None:
    manifest = parse_manifest(encode(OCI_IMAGE_MANIFEST), mt.OCI_MANIFEST)
    assert manifest.media_type == mt.OCI_MANIFEST
    assert not manifest.is_index
    assert manifest.config == Descriptor(mt.OCI_CONFIG, Digest.parse(CONFIG_DIGEST), 7023)
    assert [str(layer.digest) for layer in manifest.layers] == [
        layer["digest"] for layer in OCI_IMAGE_MANIFEST["layers"]
    ]
    assert [layer.size for layer in manifest.layers] == [32654, 16724, 73109]
    assert manifest.manifests == ()
    assert manifest.subject == Descriptor(mt.OCI_MANIFEST, Digest.parse(D2), 7682)
    assert manifest.artifact_type is None
    assert manifest.annotations == OCI_IMAGE_MANIFEST["annotations"]
    assert manifest.blob_references == (manifest.config, *manifest.layers)
    assert manifest.manifest_references == ()
    assert manifest.referrer_artifact_type == mt.OCI_CONFIG


@pytest.mark.parametrize("document", [OCI_IMAGE_INDEX, OCI_INDEX_MIXED])
def test_oci_image_index(document: dict[str, Any]) -> None:
    manifest = parse_manifest(encode(document), mt.OCI_INDEX)
    assert manifest.media_type == mt.OCI_INDEX
    assert manifest.is_index
    assert manifest.config is None
    assert manifest.layers == ()
    assert manifest.subject is None
    assert manifest.blob_references == ()
    assert manifest.manifest_references == manifest.manifests
    assert [d.to_json() for d in manifest.manifests] == document["manifests"]
    assert manifest.referrer_artifact_type is None


def test_oci_index_platforms() -> None:
    manifest = parse_manifest(encode(OCI_IMAGE_INDEX), mt.OCI_INDEX)
    assert [d.platform for d in manifest.manifests] == [
        {"architecture": "ppc64le", "os": "linux"},
        {"architecture": "amd64", "os": "linux"},
    ]
    assert manifest.annotations == {"com.example.key1": "value1", "com.example.key2": "value2"}


def test_docker_image_manifest() -> None:
    manifest = parse_manifest(encode(DOCKER_IMAGE_MANIFEST), mt.DOCKER_MANIFEST)
    assert manifest.media_type == mt.DOCKER_MANIFEST
    assert not manifest.is_index
    assert manifest.config is not None
    assert manifest.config.media_type == mt.DOCKER_CONFIG
    assert len(manifest.layers) == 3
    assert [str(d.digest) for d in manifest.blob_references] == [CONFIG_DIGEST, D1, D3, D4]
    assert manifest.subject is None
    assert manifest.annotations is None
    assert manifest.referrer_artifact_type == mt.DOCKER_CONFIG


def test_docker_manifest_list() -> None:
    manifest = parse_manifest(encode(DOCKER_MANIFEST_LIST), mt.DOCKER_MANIFEST_LIST)
    assert manifest.media_type == mt.DOCKER_MANIFEST_LIST
    assert manifest.is_index
    assert [str(d.digest) for d in manifest.manifest_references] == [D1, D2]
    assert manifest.manifests[1].platform == {
        "architecture": "amd64",
        "os": "linux",
        "features": ["sse4"],
    }
    assert manifest.blob_references == ()


def test_docker_manifest_pretty_printed_as_docker_sends_it() -> None:
    body = json.dumps(DOCKER_IMAGE_MANIFEST, indent=3).encode()
    assert parse_manifest(body, mt.DOCKER_MANIFEST).media_type == mt.DOCKER_MANIFEST


def test_oci_artifact_with_empty_config() -> None:
    manifest = parse_manifest(encode(OCI_ARTIFACT), mt.OCI_MANIFEST)
    assert manifest.artifact_type == "application/vnd.example+type"
    assert manifest.referrer_artifact_type == "application/vnd.example+type"
    assert manifest.config is not None
    assert manifest.config.media_type == mt.OCI_EMPTY
    assert manifest.config.digest == digest_of(b"{}")
    assert manifest.config.size == 2
    assert manifest.blob_references == (manifest.config, manifest.config)


@pytest.mark.parametrize(
    "content_type",
    [mt.OCI_MANIFEST, None, "", "application/json", mt.OCTET_STREAM],
)
def test_helm_chart_without_media_type(content_type: str | None) -> None:
    manifest = parse_manifest(encode(HELM_CHART), content_type)
    assert manifest.media_type == mt.OCI_MANIFEST
    assert manifest.referrer_artifact_type == mt.HELM_CONFIG
    assert [str(d.digest) for d in manifest.blob_references] == [D1, D2]


def test_docker_content_type_without_body_media_type() -> None:
    body = encode(with_changes(DOCKER_IMAGE_MANIFEST, mediaType=...))
    assert parse_manifest(body, mt.DOCKER_MANIFEST).media_type == mt.DOCKER_MANIFEST


def test_index_inferred_from_shape() -> None:
    body = encode(with_changes(OCI_IMAGE_INDEX, mediaType=...))
    manifest = parse_manifest(body, None)
    assert manifest.media_type == mt.OCI_INDEX
    assert manifest.is_index


def test_docker_list_content_type_without_body_media_type() -> None:
    body = encode(with_changes(DOCKER_MANIFEST_LIST, mediaType=...))
    assert parse_manifest(body, mt.DOCKER_MANIFEST_LIST).media_type == mt.DOCKER_MANIFEST_LIST


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "",
        "application/json",
        mt.OCTET_STREAM,
        f"{mt.OCI_MANIFEST}; charset=utf-8",
        mt.OCI_MANIFEST.upper(),
        f"  {mt.OCI_MANIFEST}  ",
    ],
)
def test_body_media_type_wins_over_non_manifest_content_type(content_type: str | None) -> None:
    manifest = parse_manifest(encode(OCI_IMAGE_MANIFEST), content_type)
    assert manifest.media_type == mt.OCI_MANIFEST


@pytest.mark.parametrize(
    ("document", "content_type"),
    [
        (OCI_IMAGE_MANIFEST, mt.DOCKER_MANIFEST),
        (OCI_IMAGE_MANIFEST, mt.OCI_INDEX),
        (OCI_IMAGE_INDEX, mt.OCI_MANIFEST),
        (OCI_IMAGE_INDEX, mt.DOCKER_MANIFEST_LIST),
        (DOCKER_IMAGE_MANIFEST, mt.OCI_MANIFEST),
        (DOCKER_MANIFEST_LIST, f"{mt.OCI_INDEX}; charset=utf-8"),
    ],
)
def test_media_type_contradicts_content_type(document: dict[str, Any], content_type: str) -> None:
    error = manifest_invalid(encode(document), content_type)
    assert "contradicts Content-Type" in error.message
    assert document["mediaType"] in error.message


SCHEMA1_SIGNED: dict[str, Any] = {
    "schemaVersion": 1,
    "name": "hello-world",
    "tag": "latest",
    "architecture": "amd64",
    "fsLayers": [{"blobSum": D1}],
    "history": [{"v1Compatibility": "{}"}],
    "signatures": [],
}


@pytest.mark.parametrize(
    ("document", "content_type"),
    [
        (SCHEMA1_SIGNED, mt.DOCKER_SCHEMA1_SIGNED),
        (SCHEMA1_SIGNED, mt.DOCKER_SCHEMA1),
        (SCHEMA1_SIGNED, None),
        (SCHEMA1_SIGNED, mt.OCI_MANIFEST),
        (with_changes(SCHEMA1_SIGNED, mediaType=mt.DOCKER_SCHEMA1), None),
        (OCI_IMAGE_MANIFEST, mt.DOCKER_SCHEMA1_SIGNED),
        (with_changes(SCHEMA1_SIGNED, schemaVersion=2, mediaType=mt.DOCKER_SCHEMA1), None),
        (HELM_CHART, f"{mt.DOCKER_SCHEMA1}; charset=utf-8"),
    ],
)
def test_schema1_is_unsupported(document: dict[str, Any], content_type: str | None) -> None:
    with pytest.raises(RegistryError) as info:
        parse_manifest(encode(document), content_type)
    assert info.value.code is ErrorCode.UNSUPPORTED
    assert info.value.status == 400
    assert info.value.message == (
        "Docker schema 1 manifests are not supported; push with a current client (schema 2 or OCI)"
    )


def layer_changes(index: int, **changes: Any) -> dict[str, Any]:
    document = with_changes(OCI_IMAGE_MANIFEST)
    document["layers"][index] = with_changes(document["layers"][index], **changes)
    return document


INVALID_BODIES: list[tuple[bytes, str | None, str]] = [
    (b"", None, "not valid JSON"),
    (b"not json", mt.OCI_MANIFEST, "not valid JSON"),
    (b'{"schemaVersion": 2,', mt.OCI_MANIFEST, "not valid JSON"),
    (b"\xff\xfe{}", mt.OCI_MANIFEST, "not valid UTF-8"),
    (b"\xef\xbb\xbf" + encode(OCI_IMAGE_MANIFEST), None, "not valid JSON"),
    (b"[]", mt.OCI_MANIFEST, "must be a JSON object, not array"),
    (encode([OCI_IMAGE_MANIFEST]), mt.OCI_MANIFEST, "must be a JSON object, not array"),
    (b'"manifest"', None, "not string"),
    (b"null", None, "not null"),
    (b"42", None, "not number"),
    (b'{"schemaVersion": NaN}', None, "not valid JSON"),
    (b'{"schemaVersion": 2, "x": Infinity}', None, "not valid JSON"),
    (b"[" * 100_000 + b"]" * 100_000, None, "not valid JSON"),
    (b'{"size": ' + b"9" * 5000 + b"}", None, "not valid JSON"),
    (encode(with_changes(OCI_IMAGE_MANIFEST, schemaVersion=3)), None, "schemaVersion"),
    (encode(with_changes(OCI_IMAGE_MANIFEST, schemaVersion=...)), None, "schemaVersion"),
    (encode(with_changes(OCI_IMAGE_MANIFEST, schemaVersion="2")), None, "schemaVersion"),
    (encode(with_changes(OCI_IMAGE_MANIFEST, schemaVersion=2.0)), None, "schemaVersion"),
    (encode(with_changes(OCI_IMAGE_MANIFEST, schemaVersion=True)), None, "schemaVersion"),
    (encode(with_changes(OCI_IMAGE_MANIFEST, schemaVersion=None)), None, "schemaVersion"),
    (encode(with_changes(OCI_IMAGE_MANIFEST, mediaType=42)), None, "mediaType must be a string"),
    (
        encode(with_changes(OCI_IMAGE_MANIFEST, mediaType="application/vnd.example+json")),
        None,
        "unsupported manifest mediaType",
    ),
    (encode(with_changes(OCI_IMAGE_MANIFEST, mediaType="")), None, "mediaType"),
    (b'{"schemaVersion": 2}', None, "cannot determine the manifest type"),
    (b'{"schemaVersion": 2, "layers": []}', "application/json", "cannot determine"),
    (encode(with_changes(OCI_IMAGE_INDEX, manifests=...)), None, "requires a manifests array"),
    (encode(with_changes(OCI_IMAGE_INDEX, manifests={})), None, "requires a manifests array"),
    (encode(with_changes(OCI_IMAGE_INDEX, manifests=None)), None, "requires a manifests array"),
    (encode(with_changes(OCI_IMAGE_MANIFEST, config=...)), None, "requires a config descriptor"),
    (encode(with_changes(OCI_IMAGE_MANIFEST, config=[])), None, "requires a config descriptor"),
    (encode(with_changes(OCI_IMAGE_MANIFEST, layers=...)), None, "layers must be an array"),
    (encode(with_changes(OCI_IMAGE_MANIFEST, layers={})), None, "layers must be an array"),
    (encode(with_changes(OCI_IMAGE_MANIFEST, layers=None)), None, "layers must be an array"),
    (
        encode(with_changes(OCI_IMAGE_MANIFEST, manifests=[])),
        None,
        "must not have a manifests field",
    ),
    (
        encode(with_changes(OCI_IMAGE_INDEX, config=OCI_IMAGE_MANIFEST["config"])),
        None,
        "must not have a config field",
    ),
    (encode(with_changes(OCI_IMAGE_INDEX, layers=[])), None, "must not have a layers field"),
    (
        encode(with_changes(HELM_CHART, manifests=[])),
        None,
        "must not have a config field",
    ),
    (
        encode(with_changes(HELM_CHART, config={"mediaType": mt.HELM_CONFIG, "size": 1})),
        None,
        "config.digest must be a string",
    ),
    (
        encode(layer_changes(2, digest="sha256:1234")),
        None,
        "layers[2].digest: invalid digest 'sha256:1234'",
    ),
    (encode(layer_changes(0, digest="md5:abcd")), None, "layers[0].digest: unsupported"),
    (encode(layer_changes(0, digest=42)), None, "layers[0].digest must be a string"),
    (encode(layer_changes(0, digest=...)), None, "layers[0].digest must be a string"),
    (encode(layer_changes(1, size=-1)), None, "layers[1].size must be a non-negative"),
    (encode(layer_changes(1, size=True)), None, "layers[1].size"),
    (encode(layer_changes(1, size=False)), None, "layers[1].size"),
    (encode(layer_changes(1, size=1.5)), None, "layers[1].size"),
    (encode(layer_changes(1, size=1.0)), None, "layers[1].size"),
    (encode(layer_changes(1, size="12")), None, "layers[1].size"),
    (encode(layer_changes(1, size=None)), None, "layers[1].size"),
    (encode(layer_changes(1, size=...)), None, "layers[1].size"),
    (encode(layer_changes(1, size=2**63)), None, "layers[1].size"),
    (encode(layer_changes(0, mediaType=...)), None, "layers[0].mediaType"),
    (encode(layer_changes(0, mediaType="")), None, "layers[0].mediaType"),
    (encode(layer_changes(0, mediaType=7)), None, "layers[0].mediaType"),
    (encode(layer_changes(0, annotations=[])), None, "layers[0].annotations must be an object"),
    (
        encode(layer_changes(0, annotations={"a": 1})),
        None,
        "layers[0].annotations['a'] must be a string",
    ),
    (encode(layer_changes(0, artifactType=1)), None, "layers[0].artifactType must be a string"),
    (encode(layer_changes(0, urls="https://x")), None, "layers[0].urls must be an array"),
    (encode(layer_changes(0, urls=[1])), None, "layers[0].urls must be an array of strings"),
    (encode(layer_changes(0, platform=[])), None, "layers[0].platform must be an object"),
    (
        encode(with_changes(OCI_IMAGE_MANIFEST, layers=["sha256:abc"])),
        None,
        "layers[0] must be a descriptor object, not string",
    ),
    (
        encode(with_changes(OCI_IMAGE_INDEX, manifests=[{"mediaType": mt.OCI_MANIFEST}])),
        None,
        "manifests[0].digest",
    ),
    (
        encode(with_changes(OCI_IMAGE_MANIFEST, subject="sha256:abc")),
        None,
        "subject must be a descriptor object",
    ),
    (
        encode(with_changes(OCI_IMAGE_MANIFEST, subject={"mediaType": mt.OCI_MANIFEST})),
        None,
        "subject.digest",
    ),
    (encode(with_changes(OCI_IMAGE_MANIFEST, artifactType=[])), None, "artifactType"),
    (encode(with_changes(OCI_IMAGE_MANIFEST, annotations="x")), None, "annotations"),
    (
        encode(with_changes(OCI_IMAGE_MANIFEST, annotations={"k": None})),
        None,
        "annotations['k'] must be a string, not null",
    ),
]


@pytest.mark.parametrize(("body", "content_type", "fragment"), INVALID_BODIES)
def test_invalid_manifests(body: bytes, content_type: str | None, fragment: str) -> None:
    error = manifest_invalid(body, content_type)
    assert fragment in error.message


def test_bad_descriptor_digest_chains_original_error() -> None:
    with pytest.raises(RegistryError) as info:
        parse_manifest(encode(layer_changes(2, digest="sha256:XYZ")), None)
    assert isinstance(info.value.__cause__, RegistryError)
    assert info.value.__cause__.code is ErrorCode.DIGEST_INVALID


def test_foreign_layer_with_urls_is_not_a_blob_reference() -> None:
    document = with_changes(DOCKER_IMAGE_MANIFEST)
    document["layers"].insert(
        0,
        {
            "mediaType": mt.DOCKER_FOREIGN_LAYER,
            "digest": D2,
            "size": 1000,
            "urls": ["https://go.microsoft.com/fwlink/?linkid=000000"],
        },
    )
    manifest = parse_manifest(encode(document), mt.DOCKER_MANIFEST)
    assert len(manifest.layers) == 4
    assert manifest.layers[0].urls == ("https://go.microsoft.com/fwlink/?linkid=000000",)
    assert [str(d.digest) for d in manifest.blob_references] == [CONFIG_DIGEST, D1, D3, D4]


def test_oci_layer_with_urls_is_not_a_blob_reference() -> None:
    document = layer_changes(1, urls=["https://example.com/layer"])
    manifest = parse_manifest(encode(document), mt.OCI_MANIFEST)
    assert D3 not in [str(d.digest) for d in manifest.blob_references]
    assert len(manifest.blob_references) == 3


def test_empty_urls_list_is_still_a_blob_reference() -> None:
    manifest = parse_manifest(encode(layer_changes(1, urls=[])), None)
    assert len(manifest.blob_references) == 4


def test_empty_layers_allowed() -> None:
    manifest = parse_manifest(encode(with_changes(OCI_ARTIFACT, layers=[])), None)
    assert manifest.layers == ()
    assert manifest.blob_references == (manifest.config,)


def test_empty_index_allowed() -> None:
    manifest = parse_manifest(encode(with_changes(OCI_IMAGE_INDEX, manifests=[])), None)
    assert manifest.manifests == ()


def test_subject_present() -> None:
    document = with_changes(
        OCI_ARTIFACT, subject={"mediaType": mt.OCI_INDEX, "digest": D1, "size": 9}
    )
    manifest = parse_manifest(encode(document), None)
    assert manifest.subject == Descriptor(mt.OCI_INDEX, Digest.parse(D1), 9)
    assert manifest.subject not in manifest.blob_references


def test_index_with_subject_and_artifact_type() -> None:
    document = with_changes(
        OCI_IMAGE_INDEX,
        subject={"mediaType": mt.OCI_MANIFEST, "digest": D3, "size": 1},
        artifactType="application/vnd.example.sbom.v1",
    )
    manifest = parse_manifest(encode(document), mt.OCI_INDEX)
    assert manifest.subject is not None
    assert str(manifest.subject.digest) == D3
    assert manifest.referrer_artifact_type == "application/vnd.example.sbom.v1"


def test_empty_artifact_type_falls_back_to_config_media_type() -> None:
    manifest = parse_manifest(encode(with_changes(OCI_ARTIFACT, artifactType="")), None)
    assert manifest.referrer_artifact_type == mt.OCI_EMPTY


def test_null_optional_fields_are_absent() -> None:
    document = with_changes(
        OCI_IMAGE_MANIFEST, subject=None, annotations=None, artifactType=None, mediaType=None
    )
    document["layers"][0].update(annotations=None, urls=None, platform=None, artifactType=None)
    manifest = parse_manifest(encode(document), None)
    assert manifest.media_type == mt.OCI_MANIFEST
    assert manifest.subject is None
    assert manifest.annotations is None
    assert manifest.artifact_type is None
    assert manifest.layers[0] == Descriptor(
        OCI_LAYER, Digest.parse(OCI_IMAGE_MANIFEST["layers"][0]["digest"]), 32654
    )


def test_unknown_fields_are_ignored() -> None:
    document = with_changes(OCI_ARTIFACT, **{"x-vendor": {"a": [1, 2]}})
    document["config"]["data"] = "e30="
    document["layers"][0]["x-extra"] = True
    manifest = parse_manifest(encode(document), None)
    assert manifest.config is not None
    assert manifest.config.to_json() == {
        "mediaType": mt.OCI_EMPTY,
        "digest": EMPTY_DIGEST,
        "size": 2,
    }


def test_descriptor_fields_are_parsed() -> None:
    descriptor = {
        "mediaType": mt.OCI_MANIFEST,
        "digest": D1,
        "size": 0,
        "artifactType": "application/vnd.example.sbom.v1",
        "annotations": {"org.example": "1"},
        "urls": ["https://a.example/x", "https://b.example/x"],
        "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"},
    }
    manifest = parse_manifest(encode(with_changes(OCI_IMAGE_INDEX, manifests=[descriptor])), None)
    parsed = manifest.manifests[0]
    assert parsed == Descriptor(
        media_type=mt.OCI_MANIFEST,
        digest=Digest.parse(D1),
        size=0,
        artifact_type="application/vnd.example.sbom.v1",
        annotations={"org.example": "1"},
        urls=("https://a.example/x", "https://b.example/x"),
        platform={"architecture": "arm64", "os": "linux", "variant": "v8"},
    )
    assert parsed.to_json() == descriptor


def test_large_sizes_are_accepted() -> None:
    manifest = parse_manifest(encode(layer_changes(0, size=2**63 - 1)), None)
    assert manifest.layers[0].size == 2**63 - 1


def test_sha512_descriptor_digest() -> None:
    digest = digest_of(b"layer", "sha512")
    manifest = parse_manifest(encode(layer_changes(0, digest=str(digest))), None)
    assert manifest.layers[0].digest == digest


@pytest.mark.parametrize(
    ("descriptor", "expected"),
    [
        (
            Descriptor(mt.OCI_MANIFEST, Digest.parse(D1), 10),
            {"mediaType": mt.OCI_MANIFEST, "digest": D1, "size": 10},
        ),
        (
            Descriptor(mt.OCI_MANIFEST, Digest.parse(D1), 10, annotations={}, urls=(), platform={}),
            {"mediaType": mt.OCI_MANIFEST, "digest": D1, "size": 10},
        ),
        (
            Descriptor(
                mt.OCI_MANIFEST,
                Digest.parse(D1),
                10,
                artifact_type="application/vnd.example.sbom.v1",
                annotations={"a": "b"},
                urls=("https://x",),
                platform={"os": "linux", "architecture": "amd64"},
            ),
            {
                "mediaType": mt.OCI_MANIFEST,
                "digest": D1,
                "size": 10,
                "artifactType": "application/vnd.example.sbom.v1",
                "urls": ["https://x"],
                "annotations": {"a": "b"},
                "platform": {"os": "linux", "architecture": "amd64"},
            },
        ),
    ],
)
def test_descriptor_to_json(descriptor: Descriptor, expected: dict[str, Any]) -> None:
    assert descriptor.to_json() == expected
    json.dumps(descriptor.to_json())


def test_descriptor_with_mappings_is_hashable() -> None:
    first = Descriptor(mt.OCI_MANIFEST, Digest.parse(D1), 1, annotations={"a": "b"})
    second = Descriptor(mt.OCI_MANIFEST, Digest.parse(D1), 1, annotations={"a": "b"})
    assert len({first, second}) == 1
    assert first != Descriptor(mt.OCI_MANIFEST, Digest.parse(D1), 1, annotations={"a": "c"})


def test_parsed_manifest_is_hashable_and_frozen() -> None:
    manifest = parse_manifest(encode(OCI_IMAGE_MANIFEST), None)
    assert hash(manifest) == hash(parse_manifest(encode(OCI_IMAGE_MANIFEST), None))
    with pytest.raises(AttributeError):
        manifest.media_type = mt.OCI_INDEX  # type: ignore[misc]


def test_manifest_is_index_by_media_type() -> None:
    common: dict[str, Any] = {
        "config": None,
        "layers": (),
        "manifests": (),
        "subject": None,
        "artifact_type": None,
        "annotations": None,
    }
    assert Manifest(media_type=mt.DOCKER_MANIFEST_LIST, **common).is_index
    assert Manifest(media_type=mt.OCI_INDEX, **common).is_index
    assert not Manifest(media_type=mt.OCI_MANIFEST, **common).is_index
    assert not Manifest(media_type=mt.DOCKER_MANIFEST, **common).is_index


def test_referrers_index_empty() -> None:
    assert referrers_index([]) == (
        b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}'
    )


def test_referrers_index() -> None:
    descriptors = [
        Descriptor(
            mt.OCI_MANIFEST,
            Digest.parse(D1),
            1234,
            artifact_type="application/vnd.example.sbom.v1",
            annotations={"org.opencontainers.image.created": "2022-01-01T14:42:55Z"},
        ),
        Descriptor(mt.OCI_INDEX, Digest.parse(D2), 99),
    ]
    body = referrers_index(iter(descriptors))
    assert json.loads(body) == {
        "schemaVersion": 2,
        "mediaType": mt.OCI_INDEX,
        "manifests": [
            {
                "mediaType": mt.OCI_MANIFEST,
                "digest": D1,
                "size": 1234,
                "artifactType": "application/vnd.example.sbom.v1",
                "annotations": {"org.opencontainers.image.created": "2022-01-01T14:42:55Z"},
            },
            {"mediaType": mt.OCI_INDEX, "digest": D2, "size": 99},
        ],
    }
    parsed = parse_manifest(body, mt.OCI_INDEX)
    assert parsed.manifests == tuple(descriptors)
