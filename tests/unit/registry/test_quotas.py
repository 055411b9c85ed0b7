"""Sizes for quotas are read as people write them, a refusal says how much is used, allowed
and needed, and concurrent pushes never take a project past its quota (over a real SQLite
database)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from cargohold.db.metadata import QuotaExceeded
from cargohold.oci.errors import ErrorCode, RegistryError
from cargohold.registry.errors import InvalidInput
from cargohold.registry.quotas import parse_size, quota_denied
from cargohold.registry.services import Services
from tests.unit.registry.test_integrity import IMAGE, push_blob, run


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


def test_concurrent_pushes_stop_at_the_quota(tmp_path: Path) -> None:
    async def scenario(services: Services) -> None:
        await services.projects.update_project("team", quota_bytes=3000)
        target = await services.router.resolve(IMAGE)
        # Early checks may all pass at once; the linking transactions let in only what fits.
        outcomes = await asyncio.gather(
            *(push_blob(services, target, os.urandom(1000)) for _ in range(5)),
            return_exceptions=True,
        )
        refused = [outcome for outcome in outcomes if isinstance(outcome, RegistryError)]
        assert len(refused) == 2, outcomes
        assert all(error.code is ErrorCode.DENIED for error in refused)
        project = await services.projects.get_project("team")
        assert await services.projects.usage([project]) == {project.id: 3000}

    run(tmp_path, scenario)
