import json
import re

import pytest

from cargohold.oci.errors import ErrorCode, RegistryError, error_body


@pytest.mark.parametrize(
    ("member", "code", "status", "message"),
    [
        (ErrorCode.BLOB_UNKNOWN, "BLOB_UNKNOWN", 404, "blob unknown to registry"),
        (ErrorCode.BLOB_UPLOAD_INVALID, "BLOB_UPLOAD_INVALID", 400, "blob upload invalid"),
        (
            ErrorCode.BLOB_UPLOAD_UNKNOWN,
            "BLOB_UPLOAD_UNKNOWN",
            404,
            "blob upload unknown to registry",
        ),
        (
            ErrorCode.DIGEST_INVALID,
            "DIGEST_INVALID",
            400,
            "provided digest did not match uploaded content",
        ),
        (
            ErrorCode.MANIFEST_BLOB_UNKNOWN,
            "MANIFEST_BLOB_UNKNOWN",
            400,
            "manifest references a manifest or blob unknown to registry",
        ),
        (ErrorCode.MANIFEST_INVALID, "MANIFEST_INVALID", 400, "manifest invalid"),
        (ErrorCode.MANIFEST_UNKNOWN, "MANIFEST_UNKNOWN", 404, "manifest unknown to registry"),
        (ErrorCode.NAME_INVALID, "NAME_INVALID", 400, "invalid repository name"),
        (ErrorCode.NAME_UNKNOWN, "NAME_UNKNOWN", 404, "repository name not known to registry"),
        (
            ErrorCode.SIZE_INVALID,
            "SIZE_INVALID",
            400,
            "provided length did not match content length",
        ),
        (ErrorCode.UNAUTHORIZED, "UNAUTHORIZED", 401, "authentication required"),
        (ErrorCode.DENIED, "DENIED", 403, "requested access to the resource is denied"),
        (ErrorCode.UNSUPPORTED, "UNSUPPORTED", 400, "the operation is unsupported"),
        (ErrorCode.TOOMANYREQUESTS, "TOOMANYREQUESTS", 429, "too many requests"),
        (ErrorCode.TAG_INVALID, "TAG_INVALID", 400, "manifest tag did not match URI"),
        (ErrorCode.UNAVAILABLE, "UNAVAILABLE", 503, "service unavailable"),
    ],
)
def test_error_code_table(member: ErrorCode, code: str, status: int, message: str) -> None:
    assert member.value == (code, status, message)
    assert member.code == code
    assert member.status == status
    assert member.default_message == message


def test_error_code_members_are_exactly_the_spec_codes_plus_two_of_distribution() -> None:
    """TAG_INVALID (legacy Docker) and UNAVAILABLE (the registry cannot serve for now)."""
    assert {member.name for member in ErrorCode} == {
        "BLOB_UNKNOWN",
        "BLOB_UPLOAD_INVALID",
        "BLOB_UPLOAD_UNKNOWN",
        "DIGEST_INVALID",
        "MANIFEST_BLOB_UNKNOWN",
        "MANIFEST_INVALID",
        "MANIFEST_UNKNOWN",
        "NAME_INVALID",
        "NAME_UNKNOWN",
        "SIZE_INVALID",
        "UNAUTHORIZED",
        "DENIED",
        "UNSUPPORTED",
        "TOOMANYREQUESTS",
        "TAG_INVALID",
        "UNAVAILABLE",
    }


@pytest.mark.parametrize("member", list(ErrorCode))
def test_code_matches_member_name_and_spec_alphabet(member: ErrorCode) -> None:
    assert member.code == member.name
    assert re.fullmatch(r"[A-Z_]+", member.code)


def test_registry_error_defaults() -> None:
    error = RegistryError(ErrorCode.BLOB_UNKNOWN)
    assert error.code is ErrorCode.BLOB_UNKNOWN
    assert error.message == "blob unknown to registry"
    assert error.detail is None
    assert error.status == 404
    assert error.headers == {}
    assert str(error) == "BLOB_UNKNOWN: blob unknown to registry"


def test_registry_error_overrides() -> None:
    headers = {"WWW-Authenticate": 'Bearer realm="x"'}
    error = RegistryError(
        ErrorCode.UNAUTHORIZED,
        "token expired",
        detail=[{"Type": "repository", "Name": "a/b", "Action": "pull"}],
        status=403,
        headers=headers,
    )
    assert error.message == "token expired"
    assert error.detail == [{"Type": "repository", "Name": "a/b", "Action": "pull"}]
    assert error.status == 403
    assert error.headers == headers
    assert str(error) == "UNAUTHORIZED: token expired"


def test_registry_error_copies_headers() -> None:
    headers = {"Retry-After": "1"}
    error = RegistryError(ErrorCode.TOOMANYREQUESTS, headers=headers)
    headers["Retry-After"] = "2"
    assert error.headers == {"Retry-After": "1"}


def test_registry_error_headers_are_independent_per_instance() -> None:
    first = RegistryError(ErrorCode.DENIED)
    first.headers["X"] = "1"
    assert RegistryError(ErrorCode.DENIED).headers == {}


def test_empty_message_is_kept() -> None:
    error = RegistryError(ErrorCode.DENIED, "")
    assert error.message == ""
    assert str(error) == "DENIED: "


def test_registry_error_is_raisable() -> None:
    with pytest.raises(RegistryError) as info:
        raise RegistryError(ErrorCode.NAME_UNKNOWN, "repository 'x' not known")
    assert isinstance(info.value, Exception)
    assert info.value.code is ErrorCode.NAME_UNKNOWN


@pytest.mark.parametrize(
    ("errors", "expected"),
    [
        ((), b'{"errors":[]}'),
        (
            (RegistryError(ErrorCode.BLOB_UNKNOWN),),
            b'{"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown to registry"}]}',
        ),
        (
            (RegistryError(ErrorCode.DIGEST_INVALID, "bad", detail={"digest": "x"}),),
            b'{"errors":[{"code":"DIGEST_INVALID","message":"bad","detail":{"digest":"x"}}]}',
        ),
        (
            (RegistryError(ErrorCode.DENIED, "no", detail=0),),
            b'{"errors":[{"code":"DENIED","message":"no","detail":0}]}',
        ),
        (
            (RegistryError(ErrorCode.DENIED, "no", detail={}),),
            b'{"errors":[{"code":"DENIED","message":"no","detail":{}}]}',
        ),
        (
            (
                RegistryError(ErrorCode.MANIFEST_BLOB_UNKNOWN, "a", detail="sha256:1"),
                RegistryError(ErrorCode.MANIFEST_BLOB_UNKNOWN, "b"),
            ),
            b'{"errors":[{"code":"MANIFEST_BLOB_UNKNOWN","message":"a","detail":"sha256:1"},'
            b'{"code":"MANIFEST_BLOB_UNKNOWN","message":"b"}]}',
        ),
    ],
)
def test_error_body(errors: tuple[RegistryError, ...], expected: bytes) -> None:
    assert error_body(*errors) == expected


def test_error_body_is_utf8() -> None:
    body = error_body(RegistryError(ErrorCode.NAME_INVALID, "invalid repository name 'café'"))
    assert "café".encode() in body
    assert json.loads(body.decode("utf-8"))["errors"][0]["message"].endswith("'café'")


def test_error_body_tolerates_unserialisable_detail() -> None:
    body = error_body(RegistryError(ErrorCode.UNSUPPORTED, "x", detail={"value": object()}))
    detail = json.loads(body)["errors"][0]["detail"]
    assert detail["value"].startswith("<object object")
