"""The queries of copying an installation into another database (`cargohold copy`): every
table of the schema, in the order its foreign keys need, read in pages by primary key and
written with the keys it had, all in one transaction of the target; on PostgreSQL, the
sequences of the ids are then set past the copied ones.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from sqlalchemy import JSON, Column, RowMapping, Table, func, insert, null, select, tuple_

from cargohold.db.engine import Reader, Writer
from cargohold.db.schema import metadata
from cargohold.db.store import Store

PAGE_ROWS = 1000
# Read with each JSON column: whether it holds SQL NULL.
SQL_NULL = "sql_null_"


def tables_in_copy_order() -> list[Table]:
    """Every table of the schema, each after the tables its foreign keys refer to."""
    return list(metadata.sorted_tables)


def _json_columns(table: Table) -> list[Column[Any]]:
    return [column for column in table.columns if isinstance(column.type, JSON)]


def _as_written(row: RowMapping, json_columns: list[Column[Any]]) -> dict[str, Any]:
    """A row's values to insert as they were: a JSON column holds SQL NULL or JSON `null`,
    which both read as None."""
    values = {name: row[name] for name in row if not name.startswith(SQL_NULL)}
    for column in json_columns:
        if row[SQL_NULL + column.name]:
            values[column.name] = null()
        elif values[column.name] is None:
            values[column.name] = JSON.NULL
    return values


async def _pages(conn: Reader, table: Table, size: int) -> AsyncIterator[list[dict[str, Any]]]:
    """A table's rows, `size` at a time, in the order of its primary key (each page starts
    after the last key of the one before: no page costs more than its rows)."""
    key = list(table.primary_key.columns)
    json_columns = _json_columns(table)
    flags = [column.is_(None).label(SQL_NULL + column.name) for column in json_columns]
    query = select(table, *flags).order_by(*key).limit(size)
    last: list[Any] | None = None
    while True:
        page = query if last is None else query.where(tuple_(*key) > tuple_(*last))
        rows = [_as_written(row, json_columns) for row in (await conn.execute(page)).mappings()]
        if not rows:
            return
        yield rows
        last = [rows[-1][column.name] for column in key]


async def _advance_sequences(conn: Writer) -> None:
    """Set each id sequence past the largest id copied, or the next row inserted would take
    an id that is already used. SQLite needs nothing: it takes the largest id plus one (and
    its AUTOINCREMENT counter follows the ids inserted)."""
    if conn.dialect.name != "postgresql":
        return
    for table in tables_in_copy_order():
        column = table.autoincrement_column
        if column is None:
            continue
        following = select(func.coalesce(func.max(column), 0) + 1).scalar_subquery()
        sequence = func.pg_get_serial_sequence(table.name, column.name)
        # `false`: the next value handed out is `following` itself.
        await conn.execute(select(func.setval(sequence, following, False)))


class TransferStore(Store):
    async def row_counts(self) -> dict[str, int]:
        """The rows of every table, by table name, in copy order."""
        async with self._read() as conn:
            return {
                table.name: (
                    await conn.execute(select(func.count()).select_from(table))
                ).scalar_one()
                for table in tables_in_copy_order()
            }

    async def copy_rows_from(self, source: TransferStore, page_rows: int = PAGE_ROWS) -> None:
        """Copy every row of `source` into this database, which holds none: all of them or,
        if anything fails midway, none (one transaction). The source is read in one
        snapshot, so that its rows are consistent with each other."""
        async with source._snapshot() as reading, self._write() as writing:
            for table in tables_in_copy_order():
                async for rows in _pages(reading, table, page_rows):
                    await writing.execute(insert(table), rows)
            await _advance_sequences(writing)
