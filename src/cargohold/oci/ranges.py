"""The byte ranges of chunked uploads: `Content-Range` in, `Range` out."""

from __future__ import annotations

import re
from dataclasses import dataclass

from cargohold.oci.errors import ErrorCode, RegistryError

# The spec's form is `<start>-<end>`; older clients send `bytes <start>-<end>/<total|*>`.
_CONTENT_RANGE = re.compile(r"^(?:bytes[ =])?(\d+)-(\d+)(?:/(?:\d+|\*))?$")


@dataclass(frozen=True, slots=True)
class ChunkRange:
    start: int
    end: int  # inclusive

    @property
    def length(self) -> int:
        return self.end - self.start + 1


def parse_content_range(value: str) -> ChunkRange:
    match = _CONTENT_RANGE.match(value.strip())
    if match is None:
        raise RegistryError(
            ErrorCode.BLOB_UPLOAD_INVALID,
            f"Content-Range {value!r} is not of the form <start>-<end>",
        )
    start, end = int(match[1]), int(match[2])
    if end < start:
        raise RegistryError(
            ErrorCode.BLOB_UPLOAD_INVALID,
            f"Content-Range {value!r} ends before it starts",
            status=416,
        )
    return ChunkRange(start, end)


def upload_range_header(received: int) -> str:
    """The `Range` answer for an upload holding `received` bytes (`0-0` when empty)."""
    return f"0-{max(received - 1, 0)}"
