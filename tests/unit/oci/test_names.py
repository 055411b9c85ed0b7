import pytest

from cargohold.oci.digest import Digest
from cargohold.oci.errors import ErrorCode, RegistryError
from cargohold.oci.names import (
    MAX_NAME_LENGTH,
    NAME_RE,
    TAG_RE,
    parse_reference,
    split_name,
    validate_name,
    validate_tag,
)

SHA256_HEX = "6c3c624b58dbbcd3c0dd82b4c53f04194d1247c6eebdaab7c610cf7d66709b3b"

GOOD_NAMES = [
    "a",
    "0",
    "a/b",
    "a__b",
    "a_b",
    "a---b",
    "a-b",
    "a.b",
    "a.b.c",
    "library/ubuntu",
    "a/b/c/d/e",
    "foo.bar_baz-qux/x__y/z--1",
    "a1/2b",
    "a" * MAX_NAME_LENGTH,
    "/".join(["ab"] * 85),
]

BAD_NAMES = [
    "",
    "A",
    "Library/ubuntu",
    "a/B",
    "a/",
    "/a",
    "a//b",
    "a_",
    "-a",
    "_a",
    ".a",
    "a-",
    "a.",
    "a___b",
    "a..b",
    "a._b",
    "a.-b",
    "a/-b",
    "a/.b",
    "a b",
    "a:b",
    "a@b",
    "a\n",
    "\na",
    "café",
    "a/b/",
    "a" * (MAX_NAME_LENGTH + 1),
    "/".join(["ab"] * 86),
]


def test_max_name_length() -> None:
    assert MAX_NAME_LENGTH == 255


@pytest.mark.parametrize("name", GOOD_NAMES)
def test_validate_name_accepts(name: str) -> None:
    assert validate_name(name) == name
    assert NAME_RE.fullmatch(name)


@pytest.mark.parametrize("name", BAD_NAMES)
def test_validate_name_rejects(name: str) -> None:
    with pytest.raises(RegistryError) as info:
        validate_name(name)
    assert info.value.code is ErrorCode.NAME_INVALID
    assert info.value.status == 400
    assert repr(name[:10]).rstrip("'") in info.value.message


@pytest.mark.parametrize("name", [n for n in BAD_NAMES if len(n) <= MAX_NAME_LENGTH])
def test_name_re_rejects_with_any_match_method(name: str) -> None:
    assert NAME_RE.fullmatch(name) is None
    assert NAME_RE.match(name) is None
    assert NAME_RE.search(name) is None


def test_overlong_name_message_mentions_limit() -> None:
    with pytest.raises(RegistryError) as info:
        validate_name("a" * 1000)
    assert "255" in info.value.message
    assert len(info.value.message) < 200


GOOD_TAGS = [
    "latest",
    "v1.0.0",
    "1",
    "A",
    "_",
    "_private",
    "a-b_c.D",
    "sha256-" + SHA256_HEX,
    "sha256-" + SHA256_HEX + ".sig",
    "a" * 128,
    "_" + "." * 127,
]

BAD_TAGS = [
    "",
    "a" * 129,
    ".a",
    "-a",
    ".",
    "-",
    "a/b",
    "a:b",
    "a b",
    "a+b",
    "a@b",
    "latest\n",
    "café",
]


@pytest.mark.parametrize("tag", GOOD_TAGS)
def test_validate_tag_accepts(tag: str) -> None:
    assert validate_tag(tag) == tag
    assert TAG_RE.fullmatch(tag)


@pytest.mark.parametrize("tag", BAD_TAGS)
def test_validate_tag_rejects(tag: str) -> None:
    with pytest.raises(RegistryError) as info:
        validate_tag(tag)
    assert info.value.code is ErrorCode.TAG_INVALID
    assert info.value.status == 400
    assert "invalid tag" in info.value.message
    assert TAG_RE.match(tag) is None


@pytest.mark.parametrize("tag", GOOD_TAGS)
def test_parse_reference_tag(tag: str) -> None:
    reference = parse_reference(tag)
    assert isinstance(reference, str)
    assert reference == tag


def test_parse_reference_digest() -> None:
    reference = parse_reference(f"sha256:{SHA256_HEX}")
    assert reference == Digest("sha256", SHA256_HEX)


@pytest.mark.parametrize(
    ("reference", "code"),
    [
        ("sha256:abc", ErrorCode.DIGEST_INVALID),
        ("sha256:" + SHA256_HEX.upper(), ErrorCode.DIGEST_INVALID),
        ("latest:", ErrorCode.DIGEST_INVALID),
        (":latest", ErrorCode.DIGEST_INVALID),
        ("blake3:" + SHA256_HEX, ErrorCode.UNSUPPORTED),
        (".latest", ErrorCode.TAG_INVALID),
        ("", ErrorCode.TAG_INVALID),
        ("a" * 129, ErrorCode.TAG_INVALID),
    ],
)
def test_parse_reference_errors(reference: str, code: ErrorCode) -> None:
    with pytest.raises(RegistryError) as info:
        parse_reference(reference)
    assert info.value.code is code
    assert info.value.status == 400


@pytest.mark.parametrize(
    ("name", "parts"),
    [("a", ["a"]), ("a/b", ["a", "b"]), ("library/ubuntu/x.y", ["library", "ubuntu", "x.y"])],
)
def test_split_name(name: str, parts: list[str]) -> None:
    assert split_name(name) == parts
