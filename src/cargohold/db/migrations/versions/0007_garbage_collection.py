"""garbage collection: the untagged manifest policy, blob holders by digest, leases

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-27 04:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("repositories", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "untagged_manifests", sa.String(length=10), server_default="keep", nullable=False
            )
        )
    with op.batch_alter_table("image_blobs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_image_blobs_digest"), ["digest"], unique=False)
    op.create_table(
        "maintenance_leases",
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("holder", sa.String(length=255), nullable=False),
        sa.Column("expires_at", sa.Double(), nullable=False),
        sa.Column("finished_at", sa.Double(), nullable=True),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_maintenance_leases")),
    )


def downgrade() -> None:
    op.drop_table("maintenance_leases")
    with op.batch_alter_table("image_blobs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_image_blobs_digest"))
    with op.batch_alter_table("repositories", schema=None) as batch_op:
        batch_op.drop_column("untagged_manifests")
