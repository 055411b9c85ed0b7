"""flat routing

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27 02:31:18.033345
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("repositories", schema=None) as batch_op:
        batch_op.add_column(sa.Column("flat_alias_prefix", sa.String(length=255), nullable=True))
        batch_op.add_column(
            sa.Column("is_catch_all", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        batch_op.add_column(sa.Column("host_name", sa.String(length=255), nullable=True))
        batch_op.create_unique_constraint(
            batch_op.f("uq_repositories_flat_alias_prefix"), ["flat_alias_prefix"]
        )
        batch_op.create_unique_constraint(batch_op.f("uq_repositories_host_name"), ["host_name"])
        batch_op.create_index(
            "uq_repositories_one_catch_all",
            ["is_catch_all"],
            unique=True,
            sqlite_where=sa.text("is_catch_all"),
            postgresql_where=sa.text("is_catch_all"),
        )


def downgrade() -> None:
    with op.batch_alter_table("repositories", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_repositories_one_catch_all",
            sqlite_where=sa.text("is_catch_all"),
            postgresql_where=sa.text("is_catch_all"),
        )
        batch_op.drop_constraint(batch_op.f("uq_repositories_host_name"), type_="unique")
        batch_op.drop_constraint(batch_op.f("uq_repositories_flat_alias_prefix"), type_="unique")
        batch_op.drop_column("host_name")
        batch_op.drop_column("is_catch_all")
        batch_op.drop_column("flat_alias_prefix")
