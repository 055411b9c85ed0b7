"""The metadata schema, one definition for SQLite and PostgreSQL.

Times are seconds since the epoch (UTC), which every engine stores and compares alike.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Double,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    UniqueConstraint,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

DIGEST = String(200)

projects = Table(
    "projects",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(100), nullable=False, unique=True),
    Column("created_at", Double, nullable=False),
)

repositories = Table(
    "repositories",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("project_id", ForeignKey("projects.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(100), nullable=False),
    Column("kind", String(20), nullable=False),
    Column("format", String(20), nullable=False),
    Column("created_at", Double, nullable=False),
    UniqueConstraint("project_id", "name"),
)

# An image is what follows the repository in a name: `nginx`, `team/app`.
images = Table(
    "images",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("repository_id", ForeignKey("repositories.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(255), nullable=False),
    Column("created_at", Double, nullable=False),
    UniqueConstraint("repository_id", "name"),
)

blobs = Table(
    "blobs",
    metadata,
    Column("digest", DIGEST, primary_key=True),
    Column("size", BigInteger, nullable=False),
    Column("created_at", Double, nullable=False),
)

# A blob is readable through an image only once it was uploaded or mounted there.
image_blobs = Table(
    "image_blobs",
    metadata,
    Column("image_id", ForeignKey("images.id", ondelete="CASCADE"), primary_key=True),
    Column("digest", ForeignKey("blobs.digest"), primary_key=True),
    Column("created_at", Double, nullable=False),
)

manifests = Table(
    "manifests",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("image_id", ForeignKey("images.id", ondelete="CASCADE"), nullable=False),
    Column("digest", DIGEST, nullable=False),
    Column("media_type", String(255), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("artifact_type", String(255)),
    Column("subject_digest", DIGEST),
    Column("annotations", JSON),
    Column("created_at", Double, nullable=False),
    UniqueConstraint("image_id", "digest"),
    Index(None, "image_id", "subject_digest"),
)

# What a manifest points to: blobs (config, layers) and, for an index, child manifests.
manifest_references = Table(
    "manifest_references",
    metadata,
    Column("manifest_id", ForeignKey("manifests.id", ondelete="CASCADE"), primary_key=True),
    Column("digest", DIGEST, primary_key=True),
    Column("is_manifest", Boolean, primary_key=True),
    Index(None, "digest"),
)

tags = Table(
    "tags",
    metadata,
    Column("image_id", ForeignKey("images.id", ondelete="CASCADE"), primary_key=True),
    Column("name", String(128), primary_key=True),
    Column("digest", DIGEST, nullable=False),
    Column("updated_at", Double, nullable=False),
)

uploads = Table(
    "uploads",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("image_id", ForeignKey("images.id", ondelete="CASCADE"), nullable=False),
    Column("algorithm", String(20), nullable=False),
    Column("created_at", Double, nullable=False),
)
