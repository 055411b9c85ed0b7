"""names in byte order on PostgreSQL, whatever the database's collation

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-27 08:00:00.000000

Tag lists are paged by comparing names (`last`), and listed in lexical order; SQLite
compares text byte by byte, PostgreSQL by the database's collation (en_US sorts `B` after
`a`). The names that are listed get the C collation on PostgreSQL; SQLite is unchanged.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (table, column length) of each listed `name` column.
LISTED_NAMES = (
    ("projects", 100),
    ("repositories", 100),
    ("images", 255),
    ("tags", 128),
    ("users", 100),
    ("robots", 100),
)


def _collate(collation: str | None) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, length in LISTED_NAMES:
        op.alter_column(
            table,
            "name",
            type_=sa.String(length, collation=collation),
            existing_type=sa.String(length),
            existing_nullable=False,
        )


def upgrade() -> None:
    _collate("C")


def downgrade() -> None:
    _collate(None)
