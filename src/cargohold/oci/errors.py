"""Registry error codes and the JSON error body of the OCI distribution spec."""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from typing import Any


class ErrorCode(enum.Enum):
    """Error codes of the distribution spec: ``(code, default HTTP status, default message)``."""

    _value_: tuple[str, int, str]

    BLOB_UNKNOWN = ("BLOB_UNKNOWN", 404, "blob unknown to registry")
    BLOB_UPLOAD_INVALID = ("BLOB_UPLOAD_INVALID", 400, "blob upload invalid")
    BLOB_UPLOAD_UNKNOWN = ("BLOB_UPLOAD_UNKNOWN", 404, "blob upload unknown to registry")
    DIGEST_INVALID = ("DIGEST_INVALID", 400, "provided digest did not match uploaded content")
    MANIFEST_BLOB_UNKNOWN = (
        "MANIFEST_BLOB_UNKNOWN",
        400,
        "manifest references a manifest or blob unknown to registry",
    )
    MANIFEST_INVALID = ("MANIFEST_INVALID", 400, "manifest invalid")
    MANIFEST_UNKNOWN = ("MANIFEST_UNKNOWN", 404, "manifest unknown to registry")
    NAME_INVALID = ("NAME_INVALID", 400, "invalid repository name")
    NAME_UNKNOWN = ("NAME_UNKNOWN", 404, "repository name not known to registry")
    SIZE_INVALID = ("SIZE_INVALID", 400, "provided length did not match content length")
    UNAUTHORIZED = ("UNAUTHORIZED", 401, "authentication required")
    DENIED = ("DENIED", 403, "requested access to the resource is denied")
    UNSUPPORTED = ("UNSUPPORTED", 400, "the operation is unsupported")
    TOOMANYREQUESTS = ("TOOMANYREQUESTS", 429, "too many requests")
    # distribution's code for a registry that cannot serve for now.
    UNAVAILABLE = ("UNAVAILABLE", 503, "service unavailable")
    # Legacy Docker code; the spec allows it but clients must not depend on it.
    TAG_INVALID = ("TAG_INVALID", 400, "manifest tag did not match URI")

    @property
    def code(self) -> str:
        return self._value_[0]

    @property
    def status(self) -> int:
        return self._value_[1]

    @property
    def default_message(self) -> str:
        return self._value_[2]


class RegistryError(Exception):
    """A protocol error that maps onto one entry of the spec's JSON error body."""

    code: ErrorCode
    message: str
    detail: object
    status: int
    headers: dict[str, str]

    def __init__(
        self,
        code: ErrorCode,
        message: str | None = None,
        *,
        detail: object = None,
        status: int | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.code = code
        self.message = code.default_message if message is None else message
        self.detail = detail
        self.status = code.status if status is None else status
        self.headers = dict(headers) if headers is not None else {}
        super().__init__(self.message)

    def __str__(self) -> str:
        return f"{self.code.code}: {self.message}"

    def __repr__(self) -> str:
        return f"RegistryError({self.code.name}, {self.message!r}, status={self.status})"

    def to_json(self) -> dict[str, Any]:
        """This error as one entry of the ``errors`` list."""
        entry: dict[str, Any] = {"code": self.code.code, "message": self.message}
        if self.detail is not None:
            entry["detail"] = self.detail
        return entry


def error_body(*errors: RegistryError) -> bytes:
    """The spec's ``{"errors": [...]}`` document as compact UTF-8 JSON."""
    document = {"errors": [error.to_json() for error in errors]}
    # default=str: a detail that is not JSON-serialisable must not turn an error
    # response into a server crash.
    text = json.dumps(document, separators=(",", ":"), ensure_ascii=False, default=str)
    return text.encode("utf-8")
