import hashlib

import pytest

from cargohold.oci.digest import (
    SUPPORTED_ALGORITHMS,
    Digest,
    digest_algorithm_param,
    digest_of,
    new_hasher,
)
from cargohold.oci.errors import ErrorCode, RegistryError

SHA256_HEX = "6c3c624b58dbbcd3c0dd82b4c53f04194d1247c6eebdaab7c610cf7d66709b3b"
SHA512_HEX = (
    "cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce"
    "47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e"
)
EMPTY_JSON = "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"


def test_supported_algorithms() -> None:
    assert dict(SUPPORTED_ALGORITHMS) == {"sha256": 64, "sha512": 128}


@pytest.mark.parametrize(
    ("value", "algorithm", "encoded"),
    [
        (f"sha256:{SHA256_HEX}", "sha256", SHA256_HEX),
        (f"sha256:{EMPTY_JSON}", "sha256", EMPTY_JSON),
        (f"sha256:{'0' * 64}", "sha256", "0" * 64),
        (f"sha512:{SHA512_HEX}", "sha512", SHA512_HEX),
    ],
)
def test_parse_valid(value: str, algorithm: str, encoded: str) -> None:
    digest = Digest.parse(value)
    assert digest == Digest(algorithm, encoded)
    assert digest.algorithm == algorithm
    assert digest.encoded == encoded
    assert str(digest) == value


@pytest.mark.parametrize(
    "value",
    [
        "",
        "sha256",
        SHA256_HEX,
        "sha256:",
        ":" + SHA256_HEX,
        "sha256::" + SHA256_HEX,
        "sha256:" + SHA256_HEX.upper(),
        "sha256:" + SHA256_HEX[:-1] + "A",
        "sha256:" + SHA256_HEX[:-1],
        "sha256:" + SHA256_HEX + "0",
        "sha256:" + "g" * 64,
        "sha256:" + "=" * 64,
        "sha512:" + SHA512_HEX[:64],
        "sha512:" + SHA512_HEX.upper(),
        "SHA256:" + SHA256_HEX,
        "sha256:" + SHA256_HEX + "\n",
        " sha256:" + SHA256_HEX,
        "sha256 :" + SHA256_HEX,
        "sha256: " + SHA256_HEX,
        "sha256:" + SHA256_HEX[:32] + " " + SHA256_HEX[33:],
        "sha256+:" + SHA256_HEX,
        "+sha256:" + SHA256_HEX,
        "sha..256:" + SHA256_HEX,
        "sha256:abc/def",
        "sha256:" + "\u0663" * 64,
    ],
)
def test_parse_malformed_is_digest_invalid(value: str) -> None:
    with pytest.raises(RegistryError) as info:
        Digest.parse(value)
    assert info.value.code is ErrorCode.DIGEST_INVALID
    assert info.value.status == 400
    assert repr(value) in info.value.message


@pytest.mark.parametrize(
    "value",
    [
        "blake3:" + SHA256_HEX,
        "md5:d41d8cd98f00b204e9800998ecf8427e",
        "multihash+base58:QmRZxt2b1FVZPNqd8hsiykDL3TdBDeTSPX9Kv46HmX4Gx8",
        "sha256+b64u:LCa0a2j_xo_5m0U8HTBBNBNCLXBkg7-g-YpeiGJm564",
        "sha384:" + "0" * 96,
    ],
)
def test_parse_unregistered_algorithm_is_unsupported(value: str) -> None:
    with pytest.raises(RegistryError) as info:
        Digest.parse(value)
    assert info.value.code is ErrorCode.UNSUPPORTED
    assert info.value.status == 400
    assert value.split(":")[0] in info.value.message


def test_digest_is_frozen_and_hashable() -> None:
    digest = Digest("sha256", SHA256_HEX)
    assert {digest, Digest.parse(f"sha256:{SHA256_HEX}")} == {digest}
    with pytest.raises(AttributeError):
        digest.algorithm = "sha512"  # type: ignore[misc]


@pytest.mark.parametrize(("algorithm", "name"), [("sha256", "sha256"), ("sha512", "sha512")])
def test_new_hasher(algorithm: str, name: str) -> None:
    hasher = new_hasher(algorithm)
    assert hasher.name == name
    hasher.update(b"abc")
    assert hasher.hexdigest() == hashlib.new(name, b"abc").hexdigest()


def test_new_hasher_returns_fresh_objects() -> None:
    first = new_hasher("sha256")
    first.update(b"x")
    assert new_hasher("sha256").hexdigest() == hashlib.sha256(b"").hexdigest()


@pytest.mark.parametrize("algorithm", ["md5", "blake3", "SHA256", "sha384", ""])
def test_new_hasher_unsupported(algorithm: str) -> None:
    with pytest.raises(RegistryError) as info:
        new_hasher(algorithm)
    assert info.value.code is ErrorCode.UNSUPPORTED
    assert info.value.status == 400


@pytest.mark.parametrize(
    ("data", "algorithm", "expected"),
    [
        (b"{}", "sha256", f"sha256:{EMPTY_JSON}"),
        (
            b"",
            "sha256",
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        ),
        (b"", "sha512", f"sha512:{SHA512_HEX}"),
    ],
)
def test_digest_of(data: bytes, algorithm: str, expected: str) -> None:
    digest = digest_of(data, algorithm)
    assert str(digest) == expected
    assert Digest.parse(str(digest)) == digest


def test_digest_of_defaults_to_sha256() -> None:
    assert digest_of(b"{}") == Digest("sha256", EMPTY_JSON)


def test_digest_of_unsupported() -> None:
    with pytest.raises(RegistryError) as info:
        digest_of(b"", "md5")
    assert info.value.code is ErrorCode.UNSUPPORTED


@pytest.mark.parametrize(
    ("value", "expected"), [(None, "sha256"), ("sha256", "sha256"), ("sha512", "sha512")]
)
def test_digest_algorithm_param(value: str | None, expected: str) -> None:
    assert digest_algorithm_param(value) == expected


@pytest.mark.parametrize("value", ["", "md5", "blake3", "SHA256", "sha256 ", "sha-256"])
def test_digest_algorithm_param_unsupported(value: str) -> None:
    with pytest.raises(RegistryError) as info:
        digest_algorithm_param(value)
    assert info.value.code is ErrorCode.UNSUPPORTED
    assert info.value.status == 400
