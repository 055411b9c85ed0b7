"""What differs between the schema the migrations build and the one the code declares
(db/schema.py): the copy of an installation, and every query, trust them to be one."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection

from cargohold.db.engine import on_connection
from cargohold.db.schema import metadata


def schema_drift(url: str) -> list[Any]:
    """Alembic's list of differences (tables, columns, types, indexes, constraints) between
    the migrated database at `url` and db/schema.py; empty when they are one."""

    def compare(connection: Connection) -> list[Any]:
        # SQLite gives back server defaults as it stored their text ("''" for ""), so
        # they are compared where the engine reflects them faithfully.
        options = {
            "compare_type": True,
            "compare_server_default": connection.dialect.name == "postgresql",
        }
        return list(
            compare_metadata(MigrationContext.configure(connection, opts=options), metadata)
        )

    return on_connection(url, compare)
