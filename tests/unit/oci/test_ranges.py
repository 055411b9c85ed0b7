from __future__ import annotations

import pytest

from cargohold.oci.errors import ErrorCode, RegistryError
from cargohold.oci.ranges import ChunkRange, parse_content_range, upload_range_header


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
