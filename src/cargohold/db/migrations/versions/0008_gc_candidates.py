"""garbage collection candidates: a collection reads what changed, not the whole store

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-27 05:45:00.000000

The store as it is holds garbage that no candidate names yet: the upgrade names, once,
what a collection found by scanning everything before (untagged manifests in repositories
that delete them, links no manifest of their image uses, blob rows no image links to).
What that frees in turn, the collection finds from these.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SEED = (
    """
    INSERT INTO gc_candidates (kind, image_id, digest)
    SELECT 'manifest', manifests.image_id, manifests.digest
    FROM manifests
    JOIN images ON images.id = manifests.image_id
    JOIN repositories ON repositories.id = images.repository_id
    WHERE repositories.untagged_manifests = 'delete'
    AND NOT EXISTS (
        SELECT 1 FROM tags
        WHERE tags.image_id = manifests.image_id AND tags.digest = manifests.digest
    )
    """,
    """
    INSERT INTO gc_candidates (kind, image_id, digest)
    SELECT 'link', image_blobs.image_id, image_blobs.digest
    FROM image_blobs
    WHERE NOT EXISTS (
        SELECT 1 FROM manifest_references
        JOIN manifests ON manifests.id = manifest_references.manifest_id
        WHERE manifest_references.digest = image_blobs.digest
        AND NOT manifest_references.is_manifest
        AND manifests.image_id = image_blobs.image_id
    )
    """,
    """
    INSERT INTO gc_candidates (kind, image_id, digest)
    SELECT 'blob', 0, blobs.digest
    FROM blobs
    WHERE NOT EXISTS (SELECT 1 FROM image_blobs WHERE image_blobs.digest = blobs.digest)
    """,
)


def upgrade() -> None:
    op.create_table(
        "gc_candidates",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("image_id", sa.Integer(), nullable=False),
        sa.Column("digest", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_gc_candidates")),
        sa.UniqueConstraint(
            "kind", "image_id", "digest", name=op.f("uq_gc_candidates_kind_image_id_digest")
        ),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("gc_candidates", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_gc_candidates_kind_id"), ["kind", "id"], unique=False)
    for statement in SEED:
        op.execute(statement)


def downgrade() -> None:
    with op.batch_alter_table("gc_candidates", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_gc_candidates_kind_id"))
    op.drop_table("gc_candidates")
