"""The metadata database on a real PostgreSQL server: migrations from several nodes at once,
and the advisory locks that make proxy fetches single-flight across nodes."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory

from cargohold.db.engine import MIGRATIONS
from cargohold.db.locks import AdvisoryLocks
from tests.integration.postgres import Postgres

NODES = 4


def test_nodes_migrating_at_once_all_succeed_and_the_schema_is_upgraded_once(
    database: Postgres, tmp_path: Path
) -> None:
    """Each node migrates at start: on a fresh database they race to create the schema.
    Half name the driver in the URL, half leave it to Cargohold: both forms work."""
    url = database.create_database(migrated=False)
    forms = [url, url.replace("postgresql://", "postgresql+asyncpg://")]
    nodes = [
        subprocess.Popen(
            [sys.executable, "-m", "cargohold", "migrate", "--data-dir", str(tmp_path / f"n{i}")],
            env={**os.environ, "CARGOHOLD_DATABASE_URL": forms[i % 2]},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(NODES)
    ]
    outputs = [node.communicate(timeout=120)[0] for node in nodes]
    assert [node.returncode for node in nodes] == [0] * NODES, outputs
    name = url.rsplit("/", 1)[1]
    head = ScriptDirectory(str(MIGRATIONS)).get_current_head()
    assert database.sql("SELECT version_num FROM alembic_version", name) == head


def test_an_advisory_lock_keeps_other_nodes_out_until_it_is_let_go(database: Postgres) -> None:
    """Two instances stand for two nodes: only the database is shared."""
    url = database.create_database()

    async def run() -> None:
        first, second = AdvisoryLocks(url), AdvisoryLocks(url)
        try:
            async with first.hold("blob:a", time.monotonic() + 1):
                with pytest.raises(TimeoutError):
                    async with second.hold("blob:a", time.monotonic() + 0.3):
                        pass
                async with second.hold("blob:b", time.monotonic() + 0.3):  # another key
                    pass
            async with second.hold("blob:a", time.monotonic() + 1):  # free once let go
                pass
        finally:
            await first.close()
            await second.close()

    asyncio.run(run())
