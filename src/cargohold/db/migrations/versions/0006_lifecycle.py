"""storage lifecycle: pull statistics, project quotas, cleanup policies, proxy cache limits

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27 04:45:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PULLED = ("tags", "manifests")


def upgrade() -> None:
    with op.batch_alter_table("projects", schema=None) as batch_op:
        batch_op.add_column(sa.Column("quota_bytes", sa.BigInteger(), nullable=True))
    with op.batch_alter_table("repositories", schema=None) as batch_op:
        batch_op.add_column(sa.Column("cleanup_policy", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("cache_max_age_days", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("cache_max_bytes", sa.BigInteger(), nullable=True))
    for table in PULLED:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column("last_pulled_at", sa.Double(), nullable=True))
            batch_op.add_column(
                sa.Column(
                    "pull_count", sa.BigInteger(), server_default=sa.text("0"), nullable=False
                )
            )


def downgrade() -> None:
    for table in PULLED:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("pull_count")
            batch_op.drop_column("last_pulled_at")
    with op.batch_alter_table("repositories", schema=None) as batch_op:
        batch_op.drop_column("cache_max_bytes")
        batch_op.drop_column("cache_max_age_days")
        batch_op.drop_column("cleanup_policy")
    with op.batch_alter_table("projects", schema=None) as batch_op:
        batch_op.drop_column("quota_bytes")
