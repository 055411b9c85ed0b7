"""The metadata database on a real PostgreSQL server: migrations from several nodes at once."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from alembic.script import ScriptDirectory

from cargohold.db.engine import MIGRATIONS
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
