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
    Text,
    UniqueConstraint,
    false,
    text,
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


def listed_name(length: int) -> String:
    """A name that lists in byte order, as SQLite compares text: PostgreSQL compares by the
    database's collation unless the column says otherwise (distribution's tag lists are in
    lexical order, and a page's `last` must compare as the list is ordered)."""
    return String(length).with_variant(String(length, collation="C"), "postgresql")


projects = Table(
    "projects",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", listed_name(100), nullable=False, unique=True),
    Column("created_at", Double, nullable=False),
    Column("anonymous_read", Boolean, nullable=False, server_default=false()),
    # Bytes the project's hosted repositories may hold; NULL: unlimited.
    Column("quota_bytes", BigInteger),
)

repositories = Table(
    "repositories",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("project_id", ForeignKey("projects.id", ondelete="CASCADE"), nullable=False),
    Column("name", listed_name(100), nullable=False),
    Column("kind", String(20), nullable=False),
    Column("format", String(20), nullable=False),
    Column("created_at", Double, nullable=False),
    Column("anonymous_read", Boolean, nullable=False, server_default=false()),
    # Proxy repositories: the upstream, its credentials (never shown), how long a tag is
    # served from the cache before it is checked upstream again.
    Column("remote_url", String(1000)),
    Column("upstream_username", String(255)),
    Column("upstream_password", String(1000)),
    Column("cache_ttl", Integer),
    # Flat routing (registry migration): a second name prefix (`common/external/`), the
    # repository that takes names no prefix matches, a host name bound to the repository.
    Column("flat_alias_prefix", String(255), unique=True),
    Column("is_catch_all", Boolean, nullable=False, server_default=false()),
    Column("host_name", String(255), unique=True),
    # Which tags a cleanup run deletes (registry/cleanup.py `CleanupPolicy`); NULL: none.
    Column("cleanup_policy", JSON),
    # Proxy repositories: cached content evicted when not pulled for this long, and least
    # recently pulled first while the cache holds more than this.
    Column("cache_max_age_days", Integer),
    Column("cache_max_bytes", BigInteger),
    # Garbage collection: whether manifests no tag, index or referrer needs are kept
    # ('keep') or removed ('delete').
    Column("untagged_manifests", String(10), nullable=False, server_default="keep"),
    UniqueConstraint("project_id", "name"),
    Index(
        "uq_repositories_one_catch_all",
        "is_catch_all",
        unique=True,
        sqlite_where=text("is_catch_all"),
        postgresql_where=text("is_catch_all"),
    ),
)

# An image is what follows the repository in a name: `nginx`, `team/app`.
images = Table(
    "images",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("repository_id", ForeignKey("repositories.id", ondelete="CASCADE"), nullable=False),
    Column("name", listed_name(255), nullable=False),
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
    # When the blob was last uploaded or mounted there: garbage collection leaves a link
    # that no manifest uses alone for a grace period after it.
    Column("created_at", Double, nullable=False),
    # Whether any image holds a blob (collection).
    Index(None, "digest"),
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
    # Pulls by tag or digest (HEAD is not a pull), flushed in batches: see registry/pulls.py.
    Column("last_pulled_at", Double),
    Column("pull_count", BigInteger, nullable=False, server_default=text("0")),
    UniqueConstraint("image_id", "digest"),
    Index(None, "image_id", "subject_digest"),
    # Whether any image holds a manifest (integrity checks, collection).
    Index(None, "digest"),
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
    Column("name", listed_name(128), primary_key=True),
    Column("digest", DIGEST, nullable=False),
    Column("updated_at", Double, nullable=False),
    # In a proxy repository, when the upstream last confirmed the tag's digest.
    Column("checked_at", Double),
    Column("last_pulled_at", Double),
    Column("pull_count", BigInteger, nullable=False, server_default=text("0")),
)

uploads = Table(
    "uploads",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("image_id", ForeignKey("images.id", ondelete="CASCADE"), nullable=False),
    Column("algorithm", String(20), nullable=False),
    Column("created_at", Double, nullable=False),
    # The subject that opened the session: it may finish it after its token expired.
    Column("owner", String(150)),
)

users = Table(
    "users",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", listed_name(100), nullable=False, unique=True),
    Column("password_hash", String(255), nullable=False),
    Column("is_admin", Boolean, nullable=False, server_default=false()),
    Column("disabled", Boolean, nullable=False, server_default=false()),
    Column("created_at", Double, nullable=False),
)

# Robot accounts sign in as `sa$<name>`; `name` holds the part after `sa$`.
robots = Table(
    "robots",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", listed_name(100), nullable=False, unique=True),
    Column("secret_hash", String(255), nullable=False),
    Column("description", String(500), nullable=False, server_default=""),
    Column("expires_at", Double),
    Column("disabled", Boolean, nullable=False, server_default=false()),
    Column("created_at", Double, nullable=False),
    Column("last_used_at", Double),
)

# A robot may do `actions` (comma-separated) in a project, or in one repository of it.
robot_grants = Table(
    "robot_grants",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("robot_id", ForeignKey("robots.id", ondelete="CASCADE"), nullable=False),
    Column("project_id", ForeignKey("projects.id", ondelete="CASCADE"), nullable=False),
    Column("repository_id", ForeignKey("repositories.id", ondelete="CASCADE")),
    Column("actions", String(100), nullable=False),
    UniqueConstraint("robot_id", "project_id", "repository_id"),
)

members = Table(
    "members",
    metadata,
    Column("project_id", ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True),
    Column("user_id", ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("role", String(20), nullable=False),
)

# Refresh tokens are high-entropy secrets: a SHA-256 of each is enough to look it up.
refresh_tokens = Table(
    "refresh_tokens",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("service", String(255), nullable=False),
    Column("user_id", ForeignKey("users.id", ondelete="CASCADE")),
    Column("robot_id", ForeignKey("robots.id", ondelete="CASCADE")),
    Column("created_at", Double, nullable=False),
)

signing_keys = Table(
    "signing_keys",
    metadata,
    Column("kid", String(100), primary_key=True),
    Column("private_key_pem", Text, nullable=False),
    Column("created_at", Double, nullable=False),
)

# Failed sign-ins per key (`account:<name>` or `address:<ip>`) in the current window.
login_failures = Table(
    "login_failures",
    metadata,
    Column("key", String(255), primary_key=True),
    Column("window_start", Double, nullable=False),
    Column("failures", Integer, nullable=False),
)

# What may have become garbage since the last collection: a manifest untagged or no longer
# listed ('manifest'), an image's link to a blob no longer used or never used ('link'), a
# blob row no image links to any more ('blob'). Written in the transaction that makes the
# row possibly unused; garbage collection reads only these (registry/gc.py). Blob rows are
# shared across images: their candidates have `image_id` 0 (NULL would defeat the unique
# constraint). Ids only grow (AUTOINCREMENT), so that a collection reading them in order
# also reads what it writes itself.
gc_candidates = Table(
    "gc_candidates",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("kind", String(10), nullable=False),
    Column("image_id", Integer, nullable=False),
    Column("digest", DIGEST, nullable=False),
    UniqueConstraint("kind", "image_id", "digest"),
    Index(None, "kind", "id"),
    sqlite_autoincrement=True,
)

# Work that one process at a time may do (garbage collection): a lease that its holder
# renews while it works and gives back when done (`expires_at` 0, `finished_at` set), and
# that lapses at `expires_at` if the holder dies.
maintenance_leases = Table(
    "maintenance_leases",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("holder", String(255), nullable=False),
    Column("expires_at", Double, nullable=False),
    Column("finished_at", Double),
)
