"""Content for the garbage collection workload, written straight into each server's storage
(and Cargohold's database): pushing 100,000 blobs over HTTP would take longer than the rest
of the benchmark, and the workload times the collection, not the pushes.

Both servers get the same images: each of `BLOBS_PER_IMAGE` small distinct blobs (a config
and layers) and a manifest, tagged; and the garbage, images whose manifest was deleted: the
blobs and the image's links to them stay, the manifest and its tag are gone. Cargohold gets
the garbage collection candidates its own writes would have left: the links of the garbage
images (their uploads, and their manifest's deletion, name them); the tagged images have
none, as after a collection that read the candidates of their pushes. Cargohold's
rows are written with the project's schema tables (`cargohold.db.schema`) through its
`Database`, and its blobs through its `BlobStore`, with the server's own settings (SQLite or
PostgreSQL, a folder or S3); the reference's files follow distribution's storage layout
(`docker/registry/v2/`). Everything is dated `AGE_SECONDS` back, past Cargohold's
default grace period.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select
from tests.integration.server import Server

from cargohold.config import Settings, load_settings
from cargohold.db.candidates import link_candidates
from cargohold.db.engine import Writer, open_database
from cargohold.db.schema import (
    blobs,
    gc_candidates,
    image_blobs,
    images,
    manifest_references,
    manifests,
    projects,
    repositories,
    tags,
)
from cargohold.registry.services import open_blob_store

BLOBS_PER_IMAGE = 100
BLOB_SIZE = 256
AGE_SECONDS = 7200.0
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
TAG = "v1"
STORE_BATCH = 32


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class SeedImage:
    name: str
    """The image name inside the repository."""
    blobs: list[bytes]
    manifest: bytes
    garbage: bool
    """Its manifest was deleted: its blobs are garbage."""


def make_images(label: str, count: int, *, garbage: bool) -> list[SeedImage]:
    """`count` images of distinct blobs; `label` keeps them apart from other calls."""
    made = []
    for number in range(count):
        name = f"gc-{label}-{number:05d}"
        contents = [
            f"cargohold-bench gc {name} {index}".encode().ljust(BLOB_SIZE, b".")
            for index in range(BLOBS_PER_IMAGE)
        ]
        document = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": _descriptor(OCI_CONFIG, contents[0]),
            "layers": [_descriptor(OCI_LAYER, data) for data in contents[1:]],
        }
        made.append(SeedImage(name, contents, json.dumps(document).encode(), garbage))
    return made


def _descriptor(media_type: str, data: bytes) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": _sha256(data), "size": len(data)}


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def seed_cargohold(server: Server, project: str, repository: str, seeded: list[SeedImage]) -> None:
    """Rows and blobs in a Cargohold server's metadata database and blob store (SQLite or
    PostgreSQL, a folder or S3: its own settings), while it may be running."""
    settings = load_settings(overrides={"data_dir": server.data_dir}, environ=server.env)
    asyncio.run(_seed_cargohold(settings, project, repository, seeded))


async def _seed_cargohold(
    settings: Settings, project: str, repository: str, seeded: list[SeedImage]
) -> None:
    database = open_database(settings.metadata_url)
    store = await open_blob_store(settings.model_copy(update={"fsync": False}))
    moment = time.time() - AGE_SECONDS
    try:
        async with database.write() as conn:
            repository_id = (
                await conn.execute(
                    select(repositories.c.id)
                    .join(projects, projects.c.id == repositories.c.project_id)
                    .where(projects.c.name == project, repositories.c.name == repository)
                )
            ).scalar_one()
            await conn.execute(
                insert(images),
                [
                    {"repository_id": repository_id, "name": image.name, "created_at": moment}
                    for image in seeded
                ],
            )
            named = await conn.execute(
                select(images.c.name, images.c.id).where(
                    images.c.repository_id == repository_id,
                    images.c.name.in_([image.name for image in seeded]),
                )
            )
            image_ids = {row.name: row.id for row in named}
            for image in seeded:
                await _seed_cargohold_image(conn, image_ids[image.name], image, moment)
        stored = [
            data
            for image in seeded
            for data in (image.blobs if image.garbage else [*image.blobs, image.manifest])
        ]
        # A few writes in flight: an object store answers each after a round trip.
        for start in range(0, len(stored), STORE_BATCH):
            await asyncio.gather(
                *(
                    store.put_bytes(_sha256(data), data)
                    for data in stored[start : start + STORE_BATCH]
                )
            )
    finally:
        await store.close()
        await database.dispose()


async def _seed_cargohold_image(
    conn: Writer, image_id: int, image: SeedImage, moment: float
) -> None:
    digests = [_sha256(data) for data in image.blobs]
    await conn.execute(
        insert(blobs),
        [{"digest": digest, "size": BLOB_SIZE, "created_at": moment} for digest in digests],
    )
    await conn.execute(
        insert(image_blobs),
        [{"image_id": image_id, "digest": digest, "created_at": moment} for digest in digests],
    )
    if image.garbage:
        await conn.execute(
            insert(gc_candidates),
            [
                {"kind": key.kind, "image_id": key.image_id, "digest": key.digest}
                for key in link_candidates(image_id, digests)
            ],
        )
        return
    manifest_digest = _sha256(image.manifest)
    manifest_id = (
        await conn.execute(
            insert(manifests)
            .values(
                image_id=image_id,
                digest=manifest_digest,
                media_type=OCI_MANIFEST,
                size=len(image.manifest),
                created_at=moment,
            )
            .returning(manifests.c.id)
        )
    ).scalar_one()
    await conn.execute(
        insert(manifest_references),
        [{"manifest_id": manifest_id, "digest": d, "is_manifest": False} for d in digests],
    )
    await conn.execute(
        insert(tags).values(image_id=image_id, name=TAG, digest=manifest_digest, updated_at=moment)
    )


def _link(path: Path, digest: str) -> None:
    _write(path / digest.replace(":", "/") / "link", digest.encode())


def _reference_root(storage: Path) -> Path:
    return storage / "docker" / "registry" / "v2"


def reference_blob(storage: Path, data: bytes) -> Path:
    """Where distribution keeps the bytes `data`."""
    encoded = _sha256(data).removeprefix("sha256:")
    return _reference_root(storage) / "blobs" / "sha256" / encoded[:2] / encoded / "data"


def seed_reference(storage: Path, repository: str, seeded: list[SeedImage]) -> None:
    """Files in distribution's storage layout: blob data, each repository's layer links,
    and for images that were not deleted, the manifest revision and tag."""
    root = _reference_root(storage)
    for image in seeded:
        repo = root / "repositories" / repository / image.name
        for data in image.blobs:
            _write(reference_blob(storage, data), data)
            _link(repo / "_layers", _sha256(data))
        if image.garbage:
            continue
        digest = _sha256(image.manifest)
        _write(reference_blob(storage, image.manifest), image.manifest)
        _link(repo / "_manifests" / "revisions", digest)
        tag = repo / "_manifests" / "tags" / TAG
        _write(tag / "current" / "link", digest.encode())
        _link(tag / "index", digest)


def reference_config(storage: Path, path: Path) -> Path:
    """A distribution configuration for `registry garbage-collect` over `storage`."""
    path.write_text(
        "version: 0.1\n"
        "log:\n  level: error\n"
        f"storage:\n  filesystem:\n    rootdirectory: {storage}\n  delete:\n    enabled: true\n"
        "http:\n  addr: 127.0.0.1:0\n"
    )
    return path
