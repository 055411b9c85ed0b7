"""Maintenance leases over a real SQLite database: one holder at a time, schedules that
start a job once an interval, and holders that die."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from sqlalchemy import update

from cargohold.db.engine import Database, migrate, open_database, sqlite_url
from cargohold.db.leases import LeaseStore
from cargohold.db.schema import maintenance_leases
from cargohold.registry.leases import Lease, LeaseTaken


def _leases(tmp_path: Path) -> tuple[Database, LeaseStore]:
    url = sqlite_url(tmp_path / "cargohold.db")
    migrate(url)
    database = open_database(url)
    return database, LeaseStore(database)


def test_one_holder_at_a_time_and_given_back_after(tmp_path: Path) -> None:
    async def run() -> None:
        database, store = _leases(tmp_path)
        first, second = Lease(store, "job", 60), Lease(store, "job", 60)
        other_job = Lease(store, "another job", 60)
        try:

            async def inside_first() -> str:
                with pytest.raises(LeaseTaken) as taken:
                    await second.run(lambda: asyncio.sleep(0))
                assert taken.value.lease.holder == first.holder
                assert await second.run_if_due(lambda: asyncio.sleep(0), 0.001) is None
                assert await other_job.run(lambda: asyncio.sleep(0, "free")) == "free"
                return "done"

            assert await first.run(inside_first) == "done"
            assert await second.run(lambda: asyncio.sleep(0, "after")) == "after"
        finally:
            await database.dispose()

    asyncio.run(run())


def test_a_failed_job_gives_the_lease_back_unfinished(tmp_path: Path) -> None:
    async def run() -> None:
        database, store = _leases(tmp_path)
        lease = Lease(store, "job", 60)

        async def fails() -> None:
            raise RuntimeError("broken")

        try:
            with pytest.raises(RuntimeError):
                await lease.run(fails)
            # Not finished: a scheduled run is due at once, however long the interval.
            assert await lease.run_if_due(lambda: asyncio.sleep(0, "ran"), 3600) == "ran"
            # Finished now: the next one waits for half an interval.
            assert await lease.run_if_due(lambda: asyncio.sleep(0, "ran"), 3600) is None
            await asyncio.sleep(0.01)
            assert await lease.run_if_due(lambda: asyncio.sleep(0, "ran"), 0.001) == "ran"
        finally:
            await database.dispose()

    asyncio.run(run())


def test_the_lease_of_a_holder_that_died_lapses(tmp_path: Path) -> None:
    async def run() -> None:
        database, store = _leases(tmp_path)
        survivor = Lease(store, "job", 60)
        try:
            assert await store.take("job", "dead-node:1", 60) is None
            with pytest.raises(LeaseTaken):
                await survivor.renew()
            async with database.write() as conn:
                await conn.execute(update(maintenance_leases).values(expires_at=time.time() - 1))
            assert await survivor.run(lambda: asyncio.sleep(0, "taken over")) == "taken over"
        finally:
            await database.dispose()

    asyncio.run(run())
