"""db/schema.py against the migrations, on SQLite (tests/integration/test_database.py does
the same on PostgreSQL)."""

from __future__ import annotations

from pathlib import Path

from cargohold.db.engine import migrate, sqlite_url
from tests.schema_drift import schema_drift


def test_the_migrations_build_the_schema_the_code_declares(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "metadata.db")
    migrate(url)
    assert schema_drift(url) == []
