from collections.abc import Sequence

import pytest

from cargohold.oci import mediatypes as mt


@pytest.mark.parametrize(
    ("constant", "value"),
    [
        (mt.OCI_MANIFEST, "application/vnd.oci.image.manifest.v1+json"),
        (mt.OCI_INDEX, "application/vnd.oci.image.index.v1+json"),
        (mt.DOCKER_MANIFEST, "application/vnd.docker.distribution.manifest.v2+json"),
        (mt.DOCKER_MANIFEST_LIST, "application/vnd.docker.distribution.manifest.list.v2+json"),
        (mt.DOCKER_SCHEMA1, "application/vnd.docker.distribution.manifest.v1+json"),
        (mt.DOCKER_SCHEMA1_SIGNED, "application/vnd.docker.distribution.manifest.v1+prettyjws"),
        (mt.OCI_EMPTY, "application/vnd.oci.empty.v1+json"),
        (mt.OCI_CONFIG, "application/vnd.oci.image.config.v1+json"),
        (mt.DOCKER_CONFIG, "application/vnd.docker.container.image.v1+json"),
        (mt.HELM_CONFIG, "application/vnd.cncf.helm.config.v1+json"),
        (mt.DOCKER_FOREIGN_LAYER, "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"),
        (mt.OCTET_STREAM, "application/octet-stream"),
    ],
)
def test_constants(constant: str, value: str) -> None:
    assert constant == value


def test_sets() -> None:
    assert {mt.OCI_MANIFEST, mt.DOCKER_MANIFEST} == mt.IMAGE_MANIFEST_TYPES
    assert {mt.OCI_INDEX, mt.DOCKER_MANIFEST_LIST} == mt.INDEX_TYPES
    assert mt.MANIFEST_TYPES == mt.IMAGE_MANIFEST_TYPES | mt.INDEX_TYPES
    assert {mt.DOCKER_SCHEMA1, mt.DOCKER_SCHEMA1_SIGNED} == mt.SCHEMA1_TYPES
    assert not mt.MANIFEST_TYPES & mt.SCHEMA1_TYPES


@pytest.mark.parametrize(
    ("content_type", "expected"),
    [
        (None, None),
        ("", None),
        ("   ", None),
        (";charset=utf-8", None),
        ("application/json", "application/json"),
        ("Application/JSON", "application/json"),
        ("  application/json  ", "application/json"),
        ("application/json; charset=utf-8", "application/json"),
        (
            "application/vnd.oci.image.manifest.v1+json ;charset=UTF-8;x=y",
            "application/vnd.oci.image.manifest.v1+json",
        ),
    ],
)
def test_base_type(content_type: str | None, expected: str | None) -> None:
    assert mt.base_type(content_type) == expected


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([], []),
        ([""], []),
        (["  ,  , "], []),
        (["*/*"], ["*/*"]),
        ([mt.OCI_MANIFEST], [mt.OCI_MANIFEST]),
        (
            [f"{mt.OCI_MANIFEST}, {mt.OCI_INDEX}"],
            [mt.OCI_MANIFEST, mt.OCI_INDEX],
        ),
        (
            [mt.DOCKER_MANIFEST, mt.DOCKER_MANIFEST_LIST, mt.OCI_MANIFEST],
            [mt.DOCKER_MANIFEST, mt.DOCKER_MANIFEST_LIST, mt.OCI_MANIFEST],
        ),
        (
            ["application/json;q=0.5, Application/VND.OCI.Image.Index.v1+json;q=1.0"],
            ["application/json", mt.OCI_INDEX],
        ),
        (["text/html;level=1;q=0.9"], ["text/html"]),
        ([f"{mt.OCI_MANIFEST};q=0, */*"], ["*/*"]),
        ([f"{mt.OCI_MANIFEST};q=0.000"], []),
        ([f"{mt.OCI_MANIFEST}; Q=0"], []),
        ([f"{mt.OCI_MANIFEST};q=0.001"], [mt.OCI_MANIFEST]),
        ([f"{mt.OCI_MANIFEST};q=bogus"], [mt.OCI_MANIFEST]),
        ([f'{mt.OCI_MANIFEST};q="0"'], []),
        ([f"{mt.OCI_MANIFEST}, {mt.OCI_MANIFEST}", mt.OCI_MANIFEST], [mt.OCI_MANIFEST]),
        (["application/*, */*;q=0.1"], ["application/*", "*/*"]),
    ],
)
def test_parse_accept(values: list[str], expected: list[str]) -> None:
    assert mt.parse_accept(values) == expected


def test_parse_accept_takes_any_iterable() -> None:
    assert mt.parse_accept(iter([mt.OCI_INDEX])) == [mt.OCI_INDEX]


DOCKER_CLIENT_ACCEPT = [
    mt.DOCKER_MANIFEST,
    mt.DOCKER_MANIFEST_LIST,
    mt.OCI_MANIFEST,
    mt.OCI_INDEX,
]


@pytest.mark.parametrize(
    ("media_type", "accepted", "expected"),
    [
        (mt.OCI_MANIFEST, [], True),
        (mt.OCI_MANIFEST, ["*/*"], True),
        (mt.OCI_MANIFEST, ["application/*"], True),
        (mt.OCI_MANIFEST, [mt.DOCKER_MANIFEST, "*/*"], True),
        (mt.OCI_MANIFEST, [mt.OCI_MANIFEST], True),
        (mt.OCI_MANIFEST, DOCKER_CLIENT_ACCEPT, True),
        (mt.DOCKER_MANIFEST_LIST, DOCKER_CLIENT_ACCEPT, True),
        (mt.OCI_INDEX, [mt.OCI_MANIFEST], False),
        (mt.OCI_MANIFEST, [mt.DOCKER_MANIFEST, mt.DOCKER_MANIFEST_LIST], False),
        (mt.DOCKER_MANIFEST_LIST, [mt.DOCKER_MANIFEST], False),
        (mt.OCI_MANIFEST, [mt.DOCKER_SCHEMA1_SIGNED], False),
        (mt.OCI_MANIFEST, ["text/*"], True),
        (mt.OCI_MANIFEST, ["application/json"], True),
        (mt.OCI_INDEX, ["application/json", "text/plain"], True),
        (mt.OCI_INDEX, ["application/json", mt.OCI_MANIFEST], False),
        (mt.OCI_MANIFEST.upper(), [mt.OCI_MANIFEST], True),
    ],
)
def test_is_acceptable(media_type: str, accepted: Sequence[str], expected: bool) -> None:
    assert mt.is_acceptable(media_type, accepted) is expected


def test_is_acceptable_with_parsed_headers() -> None:
    accepted = mt.parse_accept([f"{mt.OCI_INDEX};q=0", f"{mt.OCI_MANIFEST}"])
    assert mt.is_acceptable(mt.OCI_MANIFEST, accepted)
    assert not mt.is_acceptable(mt.OCI_INDEX, accepted)
