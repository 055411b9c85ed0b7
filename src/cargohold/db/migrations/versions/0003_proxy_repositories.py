"""proxy repositories

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27 02:12:47.491910
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("repositories", schema=None) as batch_op:
        batch_op.add_column(sa.Column("remote_url", sa.String(length=1000), nullable=True))
        batch_op.add_column(sa.Column("upstream_username", sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column("upstream_password", sa.String(length=1000), nullable=True))
        batch_op.add_column(sa.Column("cache_ttl", sa.Integer(), nullable=True))

    with op.batch_alter_table("tags", schema=None) as batch_op:
        batch_op.add_column(sa.Column("checked_at", sa.Double(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("tags", schema=None) as batch_op:
        batch_op.drop_column("checked_at")

    with op.batch_alter_table("repositories", schema=None) as batch_op:
        batch_op.drop_column("cache_ttl")
        batch_op.drop_column("upstream_password")
        batch_op.drop_column("upstream_username")
        batch_op.drop_column("remote_url")
