"""Copying every row between two real SQLite databases: the tables in an order their foreign
keys accept, pages that cross multi-column keys, keys and JSON nulls kept, all or nothing."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import JSON, insert, null, select, text
from sqlalchemy.exc import IntegrityError

from cargohold.db.engine import Database, migrate, open_database, sqlite_url
from cargohold.db.schema import (
    gc_candidates,
    images,
    metadata,
    projects,
    repositories,
    tags,
    users,
)
from cargohold.db.transfer import TransferStore, tables_in_copy_order

TAGS = 7


def test_every_table_comes_after_the_tables_it_refers_to() -> None:
    order = tables_in_copy_order()
    assert set(order) == set(metadata.tables.values())
    for position, table in enumerate(order):
        for foreign_key in table.foreign_keys:
            assert foreign_key.column.table in order[:position], (table.name, foreign_key)


def _database(path: Path) -> Database:
    url = sqlite_url(path)
    migrate(url)
    return open_database(url)


async def _fill(database: Database) -> None:
    """Rows whose ids leave gaps, JSON that is SQL NULL, JSON null and a document, and
    more tags (a two-column key) than a page holds."""
    async with database.write() as conn:
        await conn.execute(insert(projects), [{"id": 3, "name": "team", "created_at": 1.5}])
        await conn.execute(
            insert(repositories),
            [
                {"id": 2, "project_id": 3, "name": "a", "kind": "hosted", "format": "docker"}
                | {"created_at": 1.0, "cleanup_policy": null()},
                {"id": 5, "project_id": 3, "name": "b", "kind": "hosted", "format": "docker"}
                | {"created_at": 1.0, "cleanup_policy": JSON.NULL},
                {"id": 9, "project_id": 3, "name": "c", "kind": "hosted", "format": "docker"}
                | {"created_at": 1.0, "cleanup_policy": {"keep_last": 3}},
            ],
        )
        await conn.execute(
            insert(images),
            [
                {"id": image_id, "repository_id": 5, "name": f"i{image_id}", "created_at": 2.0}
                for image_id in (4, 8)
            ],
        )
        await conn.execute(
            insert(tags),
            [
                {"image_id": image_id, "name": f"t{index}", "digest": "sha256:x", "updated_at": 3.0}
                for image_id in (8, 4)
                for index in range(TAGS)
            ],
        )
        await conn.execute(
            insert(gc_candidates), [{"id": 41, "kind": "blob", "image_id": 0, "digest": "d"}]
        )


async def _raw(database: Database) -> dict[str, list[tuple[Any, ...]]]:
    """Every row as stored: JSON as its text (SQL NULL and JSON null apart)."""
    found = {}
    async with database.read() as conn:
        for table in tables_in_copy_order():
            columns = ", ".join(
                f"CAST({column.name} AS TEXT)" if isinstance(column.type, JSON) else column.name
                for column in table.columns
            )
            rows = await conn.execute(text(f"SELECT {columns} FROM {table.name} ORDER BY 1, 2"))
            found[table.name] = [tuple(row) for row in rows]
    return found


def test_rows_arrive_with_their_keys_and_json_nulls_page_after_page(tmp_path: Path) -> None:
    async def run() -> None:
        source = _database(tmp_path / "source.db")
        target = _database(tmp_path / "target.db")
        try:
            await _fill(source)
            await TransferStore(target).copy_rows_from(TransferStore(source), page_rows=3)
            copied = await _raw(target)
            assert copied == await _raw(source)
            assert len(copied["tags"]) == 2 * TAGS
            policies = {
                row[0]: row[1]
                for row in (
                    await _query(
                        target, "SELECT id, CAST(cleanup_policy AS TEXT) FROM repositories"
                    )
                )
            }
            assert policies == {2: None, 5: "null", 9: '{"keep_last": 3}'}
            # New rows take ids past the copied ones.
            async with target.write() as conn:
                await conn.execute(
                    insert(gc_candidates).values(kind="blob", image_id=0, digest="e")
                )
                await conn.execute(insert(projects).values(name="new", created_at=4.0))
            assert await _query(target, "SELECT max(id) FROM gc_candidates") == [(42,)]
            assert await _query(target, "SELECT max(id) FROM projects") == [(4,)]
        finally:
            await source.dispose()
            await target.dispose()

    asyncio.run(run())


async def _query(database: Database, statement: str) -> list[tuple[Any, ...]]:
    async with database.read() as conn:
        return [tuple(row) for row in await conn.execute(text(statement))]


def test_a_copy_that_fails_midway_leaves_the_target_as_it_was(tmp_path: Path) -> None:
    async def run() -> None:
        source = _database(tmp_path / "source.db")
        target = _database(tmp_path / "target.db")
        try:
            await _fill(source)
            async with source.write() as conn:
                await conn.execute(
                    insert(users).values(id=1, name="a", password_hash="h", created_at=0.0)
                )
            # The same id in a table copied after projects and repositories.
            async with target.write() as conn:
                await conn.execute(
                    insert(users).values(id=1, name="b", password_hash="h", created_at=0.0)
                )
            with pytest.raises(IntegrityError):
                await TransferStore(target).copy_rows_from(TransferStore(source))
            counts = await TransferStore(target).row_counts()
            assert counts == {table.name: int(table is users) for table in tables_in_copy_order()}
            async with target.read() as conn:
                assert list((await conn.execute(select(users.c.name))).scalars()) == ["b"]
        finally:
            await source.dispose()
            await target.dispose()

    asyncio.run(run())
