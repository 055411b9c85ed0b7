"""Sizes for quotas are read as people write them, and a refusal says how much is used,
allowed and needed."""

from __future__ import annotations

import pytest

from cargohold.db.metadata import QuotaExceeded
from cargohold.oci.errors import ErrorCode
from cargohold.registry.errors import InvalidInput
from cargohold.registry.quotas import parse_size, quota_denied


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("0", 0),
        ("1048576", 1048576),
        ("512b", 512),
        ("500MB", 500_000_000),
        ("2k", 2000),
        ("10GiB", 10 * 1024**3),
        ("1.5 KiB", 1536),
        ("1tib", 1024**4),
        (" 3 PB ", 3 * 1000**5),
    ],
)
def test_sizes_in_bytes_decimal_and_binary_units(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "ten", "-5", "5 XB", "5ib", "1e9", "10 GiB extra"])
def test_what_is_not_a_size_is_refused_with_an_example(text: str) -> None:
    with pytest.raises(InvalidInput, match="10GiB"):
        parse_size(text)


def test_a_refusal_is_denied_with_used_quota_and_need_in_words_and_numbers() -> None:
    error = quota_denied(QuotaExceeded("team", 10 * 1024**2, 10 * 1024**2, 4 * 1024**2), "blob")
    assert error.code is ErrorCode.DENIED and error.status == 403
    assert error.message == (
        "project team quota exceeded: 10.0 MiB used of 10.0 MiB, this blob needs 4.0 MiB"
    )
    assert error.detail == {"used": 10 * 1024**2, "quota": 10 * 1024**2, "needed": 4 * 1024**2}
