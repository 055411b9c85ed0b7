"""Pull statistics are counted in memory and written in batches: nothing is written before
a flush, a flush adds counts to tags and manifests (a pull by digest counts for the manifest
only), the pending keys are bounded, and a full batch is written without waiting for the
interval; over a real SQLite database."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import select

from cargohold.db.schema import manifests
from cargohold.registry.pulls import PullRecorder
from cargohold.registry.services import Services
from tests.unit.registry.test_integrity import IMAGE, push_image, run


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def recorder(services: Services, clock: Clock, **options: float) -> PullRecorder:
    settings = {"flush_seconds": 3600.0, "max_pending": 100, **options}
    return PullRecorder(
        services.metadata,
        services.router,
        flush_seconds=settings["flush_seconds"],
        max_pending=int(settings["max_pending"]),
        clock=clock,
    )


async def tag_stats(services: Services) -> dict[str, tuple[float | None, int]]:
    repository = await services.projects.get_repository("team", "apps")
    return {
        record.name: (record.last_pulled_at, record.pull_count)
        for record in await services.projects.tags(repository)
    }


async def pull_counts(services: Services) -> dict[str, int]:
    return {name: count for name, (_, count) in (await tag_stats(services)).items()}


async def manifest_stats(services: Services, digest: str) -> tuple[float | None, int]:
    async with services.database.read() as conn:
        query = select(manifests.c.last_pulled_at, manifests.c.pull_count).where(
            manifests.c.digest == digest
        )
        row = (await conn.execute(query)).one()
    return row[0], row[1]


def test_pulls_are_written_only_by_a_flush_and_add_up(tmp_path: Path) -> None:
    async def scenario(services: Services) -> None:
        v1 = await push_image(services, tag="v1")
        v2 = await push_image(services, tag="v2")
        target = await services.router.resolve(IMAGE)
        clock = Clock()
        pulls = recorder(services, clock)
        await pulls.record(target, "v1", v1.manifest)
        clock.now += 10
        await pulls.record(target, "v1", v1.manifest)
        await pulls.record(target, v1.manifest, v1.manifest)
        assert pulls.pending == 2
        assert await tag_stats(services) == {"v1": (None, 0), "v2": (None, 0)}

        assert await pulls.flush() == 2
        assert pulls.pending == 0
        assert await tag_stats(services) == {"v1": (clock.now, 2), "v2": (None, 0)}
        assert await manifest_stats(services, v1.manifest) == (clock.now, 3)

        # Counts add up across flushes; an earlier moment never replaces a later one.
        later = clock.now
        clock.now -= 100
        await pulls.record(target, "v1", v1.manifest)
        await pulls.record(target, "v2", v2.manifest)
        assert await pulls.flush() == 2
        assert await tag_stats(services) == {"v1": (later, 3), "v2": (clock.now, 1)}
        assert await pulls.flush() == 0

    run(tmp_path, scenario)


def test_pending_keys_are_bounded_and_a_full_batch_is_written_at_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario(services: Services) -> None:
        images = [await push_image(services, tag=f"v{index}") for index in range(3)]
        target = await services.router.resolve(IMAGE)
        pulls = recorder(services, Clock(), max_pending=2)
        await pulls.record(target, "v0", images[0].manifest)
        await pulls.record(target, "v1", images[1].manifest)
        # Full: a new key is not counted, a waiting one still is.
        await pulls.record(target, "v2", images[2].manifest)
        await pulls.record(target, "v0", images[0].manifest)
        assert (pulls.pending, pulls.dropped) == (2, 1)

        flusher = asyncio.create_task(pulls.run())  # an hour's interval: only fullness wakes it
        expected = {"v0": 2, "v1": 1, "v2": 0}
        try:
            for _ in range(1000):
                if await pull_counts(services) == expected:
                    break
                await asyncio.sleep(0.01)
        finally:
            flusher.cancel()
        assert await pull_counts(services) == expected
        assert "1 pulls were not counted" in caplog.text

    run(tmp_path, scenario)
