"""The metadata database's transactions over a real SQLite file."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import insert, select
from sqlalchemy.pool import QueuePool

from cargohold.config import load_settings
from cargohold.db.engine import (
    Database,
    ServerDatabase,
    async_url,
    migrate,
    open_database,
    sqlite_url,
)
from cargohold.db.schema import projects


def _database(tmp_path: Path) -> Database:
    url = sqlite_url(tmp_path / "cargohold.db")
    migrate(url)
    return open_database(url)


async def _project_names(database: Database) -> list[str]:
    async with database.read() as conn:
        return list(
            (await conn.execute(select(projects.c.name).order_by(projects.c.name))).scalars()
        )


def test_a_committed_write_is_seen_by_the_next_read(tmp_path: Path) -> None:
    async def run() -> None:
        database = _database(tmp_path)
        try:
            assert await _project_names(database) == []
            async with database.write() as conn:
                await conn.execute(insert(projects).values(name="a", created_at=0.0))
            assert await _project_names(database) == ["a"]
        finally:
            await database.dispose()

    asyncio.run(run())


def test_a_read_does_not_wait_for_a_writer_holding_the_lock(tmp_path: Path) -> None:
    """Reads run in the event loop's thread: one that waited for the write lock would stall
    every request. In WAL mode it reads the last committed state at once."""

    async def run() -> None:
        database = _database(tmp_path)
        try:
            async with database.write() as conn:
                await conn.execute(insert(projects).values(name="committed", created_at=0.0))
            other = sqlite3.connect(tmp_path / "cargohold.db", isolation_level=None)
            other.execute("BEGIN IMMEDIATE")
            other.execute("INSERT INTO projects (name, created_at) VALUES ('pending', 0)")
            try:
                names = await asyncio.wait_for(_project_names(database), timeout=2)
            finally:
                other.execute("ROLLBACK")
                other.close()
            assert names == ["committed"]
        finally:
            await database.dispose()

    asyncio.run(run())


def test_many_reads_open_across_awaits_never_block_the_loop(tmp_path: Path) -> None:
    """More reads held open at once than the pool keeps: a checkout that waited for a
    connection to come back would block the very loop that has to give it back."""

    async def read_across_an_await(started: asyncio.Event, proceed: asyncio.Event) -> int:
        async with database.read() as conn:
            started.set()
            await proceed.wait()
            return len((await conn.execute(select(projects.c.id))).all())

    async def run() -> list[int]:
        try:
            events = [(asyncio.Event(), asyncio.Event()) for _ in range(16)]
            tasks = [asyncio.create_task(read_across_an_await(*pair)) for pair in events]
            await asyncio.wait_for(asyncio.gather(*(s.wait() for s, _ in events)), timeout=5)
            for _, proceed in events:
                proceed.set()
            return await asyncio.wait_for(asyncio.gather(*tasks), timeout=5)
        finally:
            await database.dispose()

    database = _database(tmp_path)
    assert asyncio.run(run()) == [0] * 16


def test_a_write_waits_for_another_writer_without_blocking_the_loop(tmp_path: Path) -> None:
    """Another process holds the write lock for a while: the write goes through once it is
    released, and the loop goes on serving in the meantime."""

    async def run() -> tuple[list[str], int]:
        database = _database(tmp_path)
        other = sqlite3.connect(tmp_path / "cargohold.db", isolation_level=None)
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        async def write() -> None:
            async with database.write() as conn:
                await conn.execute(insert(projects).values(name="mine", created_at=0.0))

        try:
            other.execute("BEGIN IMMEDIATE")
            other.execute("INSERT INTO projects (name, created_at) VALUES ('theirs', 0)")
            ticker = asyncio.create_task(tick())
            writing = asyncio.create_task(write())
            await asyncio.sleep(0.3)
            assert not writing.done()
            other.execute("COMMIT")
            await asyncio.wait_for(writing, timeout=5)
            ticker.cancel()
            return await _project_names(database), ticks
        finally:
            other.close()
            await database.dispose()

    names, ticks = asyncio.run(run())
    assert names == ["mine", "theirs"]
    assert ticks >= 10


def test_a_failed_write_leaves_nothing(tmp_path: Path) -> None:
    async def run() -> list[str]:
        database = _database(tmp_path)
        try:
            with pytest.raises(RuntimeError):
                async with database.write() as conn:
                    await conn.execute(insert(projects).values(name="half", created_at=0.0))
                    raise RuntimeError("the request failed")
            return await _project_names(database)
        finally:
            await database.dispose()

    assert asyncio.run(run()) == []


@pytest.mark.parametrize(
    ("given", "used"),
    [
        ("postgresql://u:p@db:5432/reg", "postgresql+asyncpg://u:p@db:5432/reg"),
        ("postgres://u@db/reg?ssl=require", "postgresql+asyncpg://u@db/reg?ssl=require"),
        ("postgresql+asyncpg://u@db/reg", "postgresql+asyncpg://u@db/reg"),
    ],
)
def test_a_postgresql_url_without_a_driver_means_asyncpg(given: str, used: str) -> None:
    assert async_url(given).render_as_string(hide_password=False) == used


def test_the_pool_settings_reach_a_server_databases_engine() -> None:
    """No connection is made: the engine's pool is sized as the settings say."""
    settings = load_settings(
        environ={
            "CARGOHOLD_DATABASE_URL": "postgresql://cargohold@127.0.0.1:1/cargohold",
            "CARGOHOLD_DATABASE_POOL_SIZE": "7",
            "CARGOHOLD_DATABASE_MAX_OVERFLOW": "3",
            "CARGOHOLD_DATABASE_POOL_TIMEOUT_SECONDS": "2.5",
        }
    )
    database = open_database(settings.metadata_url, settings.database_pool)
    assert isinstance(database, ServerDatabase)
    pool = database._engine.pool
    assert isinstance(pool, QueuePool)
    assert (pool.size(), pool._max_overflow, pool.timeout()) == (7, 3, 2.5)
    asyncio.run(database.dispose())
