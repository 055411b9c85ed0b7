"""Requests to one upload session take turns across processes, over a real SQLite database,
blob folder and lock folder. Two `Services` over one data folder stand for two processes:
they share nothing but the files (PostgreSQL's advisory locks across nodes:
tests/integration/test_nodes.py)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cargohold.oci.errors import ErrorCode, RegistryError
from cargohold.oci.ranges import ChunkRange
from cargohold.registry.services import Services, build_services
from tests.unit.registry.test_integrity import IMAGE, run, sha256

WAIT_SECONDS = 10.0


async def held_back(data: bytes, go_on: asyncio.Event) -> AsyncIterator[bytes]:
    """A request body whose second half comes once `go_on` is set."""
    yield data[: len(data) // 2]
    await asyncio.wait_for(go_on.wait(), WAIT_SECONDS)
    yield data[len(data) // 2 :]


async def whole(data: bytes) -> AsyncIterator[bytes]:
    yield data


def lock_files(services: Services) -> list[Path]:
    return list(services.settings.lock_dir.iterdir())


def test_a_second_chunk_at_the_same_offset_waits_then_is_refused_with_416(
    tmp_path: Path,
) -> None:
    async def scenario(services: Services) -> None:
        other = await build_services(services.settings)
        try:
            target = await services.router.resolve(IMAGE)
            session = await services.uploads.start(target, "sha256")
            first, second = os.urandom(1000), os.urandom(1000)
            go_on = asyncio.Event()
            streaming = asyncio.create_task(
                services.uploads.append(
                    target, session.id, held_back(first, go_on), ChunkRange(0, 999), None
                )
            )
            await asyncio.sleep(0.2)  # the first request holds the session
            refused = asyncio.create_task(
                other.uploads.append(target, session.id, whole(second), ChunkRange(0, 999), None)
            )
            await asyncio.sleep(0.3)
            assert not refused.done(), "the second request waits for the first"
            go_on.set()
            assert (await streaming).received == 1000
            with pytest.raises(RegistryError) as caught:
                await refused
            assert caught.value.status == 416
            assert caught.value.headers == {"Range": "0-999"}
            session_lock = set(lock_files(services))
            assert len(session_lock) == 1
            digest = await other.uploads.finish(target, session.id, sha256(first), None, None, None)
            assert await services.store.read_bytes(digest) == first
            # (The lock of the blob's stored bytes is there now.)
            assert session_lock.isdisjoint(lock_files(services)), "the lock went with the session"
        finally:
            await other.close()

    run(tmp_path, scenario)


def test_the_sweep_leaves_alone_a_session_another_process_works_on(tmp_path: Path) -> None:
    async def scenario(services: Services) -> None:
        other = await build_services(services.settings)
        try:
            target = await services.router.resolve(IMAGE)
            busy, idle = [await services.uploads.start(target, "sha256") for _ in range(2)]
            go_on = asyncio.Event()
            streaming = asyncio.create_task(
                services.uploads.append(target, busy.id, held_back(b"ab", go_on), None, None)
            )
            await asyncio.sleep(1.1)  # both are older than their time to live
            assert await other.uploads.sweep() == 1
            with pytest.raises(RegistryError) as caught:
                await other.uploads.status(target, idle.id)
            assert caught.value.code == ErrorCode.BLOB_UPLOAD_UNKNOWN
            go_on.set()
            assert (await streaming).received == 2
            assert await other.uploads.sweep() == 1
            assert lock_files(services) == []
        finally:
            await other.close()

    run(tmp_path, scenario, upload_ttl_seconds=1)


def test_a_request_for_an_unknown_session_leaves_no_lock_behind(tmp_path: Path) -> None:
    async def scenario(services: Services) -> None:
        target = await services.router.resolve(IMAGE)
        with pytest.raises(RegistryError) as caught:
            await services.uploads.append(target, "0" * 32, whole(b"x"), None, None)
        assert caught.value.code == ErrorCode.BLOB_UPLOAD_UNKNOWN
        assert lock_files(services) == []

    run(tmp_path, scenario)
