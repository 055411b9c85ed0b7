"""Byte ranges: of chunked uploads (`Content-Range` in, `Range` out), and of blob pulls."""

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


def range_not_satisfiable(header: str, size: int) -> RegistryError:
    return RegistryError(
        ErrorCode.SIZE_INVALID,
        f"Range {header!r} is not satisfiable: the blob has {size} bytes",
        status=416,
        headers={"Content-Range": f"bytes */{size}"},
    )


def pulled_range(header: str, start: int | None, stop: int | None, size: int) -> tuple[int, int]:
    """The (start, length) of the bytes `[start, stop)` a pull's `Range` header asks of a
    blob of `size` bytes (`start` < 0: the last -start bytes; None: from the first or to the
    last); 416 when it starts past the end."""
    if start is not None and start >= size:
        raise range_not_satisfiable(header, size)
    first = 0 if start is None else max(size + start, 0) if start < 0 else start
    end = size if stop is None else min(stop, size)
    return first, end - first
