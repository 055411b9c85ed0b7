"""Garbage collection candidates (`gc_candidates`): every write that may leave a row unused
names it in its own transaction, so that a collection reads these instead of the whole
store (registry/gc.py). A candidate is only a hint: the collection checks, in the
transaction that would delete it, whether the row is unused.

- a manifest untagged (its tag deleted or moved), pushed with no tag, or no longer listed
  by an index or no longer the subject's referrer: 'manifest' (image, digest);
- a blob uploaded, mounted or cached into an image (no manifest may ever use it), or
  pointed to by a manifest removed: 'link' (image, digest);
- an image's link to a blob removed: 'blob' (digest; blob rows are shared).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass

from sqlalchemy import and_, select
from sqlalchemy.orm import aliased

from cargohold.db.engine import Reader, Writer
from cargohold.db.schema import gc_candidates, manifest_references, manifests
from cargohold.db.store import dialect_insert

MANIFEST = "manifest"
LINK = "link"
BLOB = "blob"
# The image of blob candidates: blob rows belong to none.
NO_IMAGE = 0


@dataclass(frozen=True, slots=True, order=True)
class CandidateKey:
    kind: str
    image_id: int
    digest: str


def manifest_candidates(image_id: int, digests: Iterable[str]) -> list[CandidateKey]:
    return [CandidateKey(MANIFEST, image_id, digest) for digest in digests]


def link_candidates(image_id: int, digests: Iterable[str]) -> list[CandidateKey]:
    return [CandidateKey(LINK, image_id, digest) for digest in digests]


def blob_candidates(digests: Iterable[str]) -> list[CandidateKey]:
    return [CandidateKey(BLOB, NO_IMAGE, digest) for digest in digests]


async def add_candidates(conn: Writer, keys: Iterable[CandidateKey]) -> None:
    """Name the rows as candidates (those named already stay as they are)."""
    rows = [{"kind": k.kind, "image_id": k.image_id, "digest": k.digest} for k in set(keys)]
    if rows:
        await conn.execute(dialect_insert(conn, gc_candidates).on_conflict_do_nothing(), rows)


async def freed_by_manifests(conn: Reader, manifest_ids: Collection[int]) -> list[CandidateKey]:
    """What removing the manifests may leave unused in their images: the links to the blobs
    they point to, the manifests they list, and their referrers (other than themselves)."""
    if not manifest_ids:
        return []
    references = await conn.execute(
        select(
            manifests.c.image_id, manifest_references.c.digest, manifest_references.c.is_manifest
        )
        .join(manifests, manifests.c.id == manifest_references.c.manifest_id)
        .where(manifests.c.id.in_(manifest_ids))
    )
    freed = [
        CandidateKey(MANIFEST if is_manifest else LINK, image_id, digest)
        for image_id, digest, is_manifest in references
    ]
    subject = aliased(manifests)
    referrers = await conn.execute(
        select(manifests.c.image_id, manifests.c.digest)
        .join(
            subject,
            and_(
                subject.c.image_id == manifests.c.image_id,
                subject.c.digest == manifests.c.subject_digest,
            ),
        )
        .where(subject.c.id.in_(manifest_ids), manifests.c.id.not_in(manifest_ids))
    )
    freed.extend(CandidateKey(MANIFEST, image_id, digest) for image_id, digest in referrers)
    return freed
