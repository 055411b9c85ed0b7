from __future__ import annotations

import pytest

from cargohold.oci.errors import ErrorCode, RegistryError
from cargohold.oci.ranges import (
    ChunkRange,
    parse_content_range,
    pulled_range,
    upload_range_header,
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0-0", ChunkRange(0, 0)),
        ("0-1023", ChunkRange(0, 1023)),
        ("1024-2047", ChunkRange(1024, 2047)),
        ("bytes 0-9/10", ChunkRange(0, 9)),
        ("bytes=5-9/*", ChunkRange(5, 9)),
        (" 3-4 ", ChunkRange(3, 4)),
    ],
)
def test_content_range_forms(value: str, expected: ChunkRange) -> None:
    assert parse_content_range(value) == expected


def test_chunk_length_is_inclusive() -> None:
    assert ChunkRange(10, 19).length == 10


@pytest.mark.parametrize("value", ["", "0", "-1", "a-b", "0-", "-5", "1-2-3", "0-1/x"])
def test_malformed_content_range_is_an_invalid_upload(value: str) -> None:
    with pytest.raises(RegistryError) as caught:
        parse_content_range(value)
    assert caught.value.code is ErrorCode.BLOB_UPLOAD_INVALID
    assert caught.value.status == 400


def test_range_ending_before_it_starts_is_unsatisfiable() -> None:
    with pytest.raises(RegistryError) as caught:
        parse_content_range("10-9")
    assert caught.value.status == 416


@pytest.mark.parametrize(
    ("received", "header"), [(0, "0-0"), (1, "0-0"), (2, "0-1"), (100, "0-99")]
)
def test_upload_range_header(received: int, header: str) -> None:
    assert upload_range_header(received) == header


@pytest.mark.parametrize(
    ("start", "stop", "wanted"),
    [
        (None, None, (0, 100)),
        (0, 10, (0, 10)),
        (90, None, (90, 10)),
        (90, 200, (90, 10)),  # past the end: what there is
        (-10, None, (90, 10)),  # the last 10 bytes
        (-500, None, (0, 100)),  # a suffix longer than the blob: all of it
        (None, 10, (0, 10)),
    ],
)
def test_pulled_range(start: int | None, stop: int | None, wanted: tuple[int, int]) -> None:
    assert pulled_range("bytes=...", start, stop, 100) == wanted


@pytest.mark.parametrize("start", [100, 150])
def test_a_pulled_range_that_starts_past_the_end_is_not_satisfiable(start: int) -> None:
    with pytest.raises(RegistryError) as raised:
        pulled_range(f"bytes={start}-", start, None, 100)
    error = raised.value
    assert (error.code, error.status) == (ErrorCode.SIZE_INVALID, 416)
    assert error.headers == {"Content-Range": "bytes */100"}
    assert f"bytes={start}-" in str(error)
