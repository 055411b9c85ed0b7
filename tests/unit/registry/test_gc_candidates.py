"""Garbage collection candidates over a real SQLite database: every write that may leave a
row unused names it (tag moved or deleted, manifest pushed by digest or deleted, blob
uploaded, mounted or unlinked, cached manifest evicted, a repository starting to delete
untagged manifests, and the migration for a store from before); a collection reads only
the candidates (a store of 10,000 referenced blobs and none costs it nothing per blob),
follows an index to its children, referrers and blobs within one run, drops a candidate
found in use without deleting it, and keeps one the grace period protects."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, delete, event, insert, select, update

from cargohold.db.engine import MIGRATIONS, sqlite_url
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
from cargohold.registry.services import Services
from tests.unit.registry.test_gc import (
    KEEP,
    PRUNED,
    collector,
    delete_manifest,
    push,
    push_index,
    removed,
    untag,
    with_pruned_repository,
)
from tests.unit.registry.test_integrity import OCI_MANIFEST, push_blob, run, sha256

Named = set[tuple[str, str, str]]


async def candidates(services: Services) -> Named:
    """(kind, repository/image or '' for a blob, digest) of every candidate."""
    query = (
        select(gc_candidates.c.kind, repositories.c.name, images.c.name, gc_candidates.c.digest)
        .select_from(gc_candidates)
        .outerjoin(images, images.c.id == gc_candidates.c.image_id)
        .outerjoin(repositories, repositories.c.id == images.c.repository_id)
    )
    async with services.database.read() as conn:
        return {
            (kind, f"{repository}/{image}" if image else "", digest)
            for kind, repository, image, digest in await conn.execute(query)
        }


async def forget_candidates(services: Services) -> None:
    async with services.database.write() as conn:
        await conn.execute(delete(gc_candidates))


def short(name: str) -> str:
    """`apps/web` of `team/apps/web`."""
    return name.split("/", 1)[1]


def test_a_blob_uploaded_or_mounted_is_a_link_candidate(tmp_path: Path) -> None:
    async def scenario(services: Services) -> None:
        data = os.urandom(100)
        await push_blob(services, await services.router.resolve(KEEP), data)
        assert await candidates(services) == {("link", short(KEEP), sha256(data))}

        await forget_candidates(services)
        mounted = await services.blobs.mount(
            await services.router.resolve("team/apps/other"),
            sha256(data),
            await services.router.resolve(KEEP),
        )
        assert mounted == sha256(data)
        assert await candidates(services) == {("link", "apps/other", sha256(data))}

    run(tmp_path, scenario)


def test_a_tag_moved_or_deleted_and_a_manifest_pushed_by_digest_are_manifest_candidates(
    tmp_path: Path,
) -> None:
    async def scenario(services: Services) -> None:
        first = await push(services, KEEP, "v1", [os.urandom(100)])
        await forget_candidates(services)
        assert await candidates(services) == set()
        second = await push(services, KEEP, "v1", [os.urandom(100)])
        uploads = {("link", short(KEEP), digest) for digest in second.blobs}
        assert await candidates(services) == {("manifest", short(KEEP), first.digest), *uploads}

        await forget_candidates(services)
        await untag(services, KEEP, "v1")
        assert await candidates(services) == {("manifest", short(KEEP), second.digest)}

        await forget_candidates(services)
        by_digest = await push(services, KEEP, None, [os.urandom(100)])
        uploads = {("link", short(KEEP), digest) for digest in by_digest.blobs}
        assert await candidates(services) == {("manifest", short(KEEP), by_digest.digest), *uploads}

        # A cleanup policy deleting a tag.
        await push(services, KEEP, "v2", [os.urandom(100)])
        tagged = await push(services, KEEP, "v3", [os.urandom(100)])
        await forget_candidates(services)
        repository = await services.projects.get_repository("team", "apps")
        doomed = [("web", "v3", tagged.digest)]
        assert await services.metadata.delete_tags(repository.id, doomed) == doomed
        assert await candidates(services) == {("manifest", short(KEEP), tagged.digest)}

    run(tmp_path, scenario)


def test_a_manifest_deleted_names_its_links_children_and_referrers(tmp_path: Path) -> None:
    async def scenario(services: Services) -> None:
        await with_pruned_repository(services)
        child = await push(services, PRUNED, None, [os.urandom(100)])
        index = await push_index(services, PRUNED, "multi", [child])
        signature = await push(services, PRUNED, None, [os.urandom(50)], subject=index)
        await forget_candidates(services)

        await delete_manifest(services, PRUNED, index.digest)
        assert await candidates(services) == {
            ("manifest", short(PRUNED), child.digest),
            ("manifest", short(PRUNED), signature.digest),
        }
        await forget_candidates(services)
        await delete_manifest(services, PRUNED, child.digest)
        assert await candidates(services) == {
            ("link", short(PRUNED), digest) for digest in child.blobs
        }

    run(tmp_path, scenario)


def test_a_blob_unlinked_or_a_manifest_evicted_names_the_blob_rows(tmp_path: Path) -> None:
    async def scenario(services: Services) -> None:
        target = await services.router.resolve(KEEP)
        lone = await push_blob(services, target, os.urandom(100))
        await forget_candidates(services)
        await services.blobs.delete(target, lone)
        assert await candidates(services) == {("blob", "", lone)}

        shared = os.urandom(100)
        evicted = await push(services, KEEP, "old", [shared, os.urandom(100)])
        await push(services, KEEP, "new", [shared])
        await forget_candidates(services)
        repository = await services.projects.get_repository("team", "apps")
        assert await services.metadata.evict_manifest(repository.id, "web", evicted.digest)
        # Its own layer's link went (the config and the shared layer are still used).
        own_layer = evicted.blobs[2]
        assert await candidates(services) == {
            ("blob", "", own_layer),
            *(("link", short(KEEP), digest) for digest in evicted.blobs),
        }

    run(tmp_path, scenario)


def test_a_repository_starting_to_delete_untagged_manifests_names_them(tmp_path: Path) -> None:
    async def scenario(services: Services) -> None:
        untagged = await push(services, KEEP, None, [os.urandom(100)])
        await push(services, KEEP, "v1", [os.urandom(100)])
        assert removed(await collector(services).run()) == ([], [])
        assert await candidates(services) == set(), "kept: no longer candidates"

        await services.projects.update_repository("team", "apps", untagged_manifests="delete")
        assert await candidates(services) == {("manifest", short(KEEP), untagged.digest)}
        # Its layer goes; its config is the tagged image's too.
        assert removed(await collector(services).run()) == ([untagged.digest], untagged.blobs[1:])

    run(tmp_path, scenario)


def test_an_index_goes_with_its_children_referrers_and_blobs_in_one_run(tmp_path: Path) -> None:
    async def scenario(services: Services) -> None:
        await with_pruned_repository(services)
        children = [await push(services, PRUNED, None, [os.urandom(100)]) for _ in range(2)]
        index = await push_index(services, PRUNED, "multi", children)
        sbom = await push(services, PRUNED, None, [os.urandom(50)], subject=children[0])
        # One batch a candidate: the cascade still completes within the run.
        one_at_a_time = collector(services, batch_size=1)
        assert removed(await one_at_a_time.run()) == ([], [])
        assert await candidates(services) == set(), "found in use: dropped, not deleted"

        await untag(services, PRUNED, "multi")
        dry = await one_at_a_time.run(dry_run=True)
        report = await one_at_a_time.run()
        everything = [index, *children, sbom]
        assert sorted(removed(report)[0]) == sorted(image.digest for image in everything)
        # Three layers and the config they share: one link each in the image.
        assert len(report.blobs) == 4 and report.links == 4
        assert {**report.to_json(), "dry_run": True, "seconds": 0} == {
            **dry.to_json(),
            "seconds": 0,
        }
        assert await candidates(services) == set()

    run(tmp_path, scenario)


def test_a_candidate_still_in_use_is_dropped_and_one_in_its_grace_period_stays(
    tmp_path: Path,
) -> None:
    async def scenario(services: Services) -> None:
        await with_pruned_repository(services)
        image = await push(services, PRUNED, "v1", [os.urandom(100)])
        target = await services.router.resolve(PRUNED)
        await services.manifests.put(
            target, "stable", manifest_bytes(services, image.digest), OCI_MANIFEST
        )
        await push(services, PRUNED, "v1", [os.urandom(100)])  # v1 moves; stable stays
        assert ("manifest", short(PRUNED), image.digest) in await candidates(services)
        assert removed(await collector(services).run()) == ([], [])
        assert await candidates(services) == set()
        assert await services.metadata.manifest_by_digest(
            await image_id(services, PRUNED), image.digest
        )

        lone = await push_blob(services, target, os.urandom(100))
        patient = collector(services, grace_seconds=3600)
        assert removed(await patient.run()) == ([], [])
        assert await candidates(services) == {("link", short(PRUNED), lone)}
        async with services.database.write() as conn:
            for table in (image_blobs, blobs):
                await conn.execute(update(table).values(created_at=time.time() - 3601))
        assert removed(await patient.run()) == ([], [lone])
        assert await candidates(services) == set()

    run(tmp_path, scenario)


def manifest_bytes(services: Services, digest: str) -> bytes:
    return services.store.local_path(digest).read_bytes()


async def image_id(services: Services, name: str) -> int:
    found = await services.router.image_id(await services.router.resolve(name), create=True)
    assert found is not None
    return found


# What a run costs

REFERENCED_BLOBS = 10_000


async def seed_referenced(services: Services, count: int) -> None:
    """`count` blobs of one tagged manifest in `team/apps/other`, written as rows (no
    stored bytes: a collection that reads only candidates never looks at them)."""
    other = await image_id(services, "team/apps/other")
    moment = time.time() - 7200
    digests = [sha256(f"referenced {number}".encode()) for number in range(count)]
    async with services.database.write() as conn:
        await conn.execute(
            insert(blobs), [{"digest": d, "size": 1, "created_at": moment} for d in digests]
        )
        await conn.execute(
            insert(image_blobs),
            [{"image_id": other, "digest": d, "created_at": moment} for d in digests],
        )
        manifest_id = (
            await conn.execute(
                insert(manifests)
                .values(
                    image_id=other,
                    digest=sha256(b"the manifest"),
                    media_type=OCI_MANIFEST,
                    size=1,
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
            insert(tags).values(
                image_id=other, name="v1", digest=sha256(b"the manifest"), updated_at=moment
            )
        )


@contextmanager
def statements() -> Iterator[list[str]]:
    """The SQL of every statement run meanwhile, by any engine."""
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        seen.append(statement)

    event.listen(Engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(Engine, "before_cursor_execute", record)


async def collect_one_deleted_image(services: Services, referenced: int) -> list[str]:
    """With `referenced` blobs in the store, delete an image and collect it; the SQL the
    collection ran."""
    await seed_referenced(services, referenced)
    gone = await push(services, KEEP, "v1", [os.urandom(100)])
    await delete_manifest(services, KEEP, gone.digest)
    with statements() as seen:
        report = await collector(services).run()
    assert removed(report) == ([], sorted(gone.blobs)) and report.links == 2
    return seen


def test_a_run_reads_candidates_not_the_store(tmp_path: Path) -> None:
    async def scenario(services: Services) -> None:
        await seed_referenced(services, REFERENCED_BLOBS)
        with statements() as seen:
            report = await collector(services).run()
        assert (report.manifests, report.links, report.blobs) == ([], 0, [])
        touched = {
            table
            for sql in seen
            for table in ("image_blobs", "blobs ", "manifests")
            if table in sql
        }
        assert touched == set(), seen

    run(tmp_path, scenario)

    costs: dict[int, list[str]] = {}

    def measure(referenced: int) -> None:
        async def scenario(services: Services) -> None:
            costs[referenced] = await collect_one_deleted_image(services, referenced)

        data_dir = tmp_path / str(referenced)
        data_dir.mkdir()
        run(data_dir, scenario)

    measure(10)
    measure(REFERENCED_BLOBS)
    # The same statements, whatever the store holds besides the garbage.
    assert len(costs[10]) == len(costs[REFERENCED_BLOBS])


# Stores from before the candidates


def test_the_migration_names_the_garbage_of_an_existing_store(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "cargohold.db")
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    engine = create_engine(url)
    moment = time.time()
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0007")
        project = conn.execute(
            insert(projects).values(name="team", created_at=moment).returning(projects.c.id)
        ).scalar_one()
        repository = conn.execute(
            insert(repositories)
            .values(
                project_id=project,
                name="pruned",
                kind="hosted",
                format="docker",
                created_at=moment,
                untagged_manifests="delete",
            )
            .returning(repositories.c.id)
        ).scalar_one()
        image = conn.execute(
            insert(images)
            .values(repository_id=repository, name="web", created_at=moment)
            .returning(images.c.id)
        ).scalar_one()
        for digest in ("sha256:used", "sha256:unused", "sha256:unlinked"):
            conn.execute(insert(blobs).values(digest=digest, size=1, created_at=moment))
        for digest in ("sha256:used", "sha256:unused"):
            conn.execute(
                insert(image_blobs).values(image_id=image, digest=digest, created_at=moment)
            )
        for digest, tag in (("sha256:tagged", "v1"), ("sha256:untagged", None)):
            manifest = conn.execute(
                insert(manifests)
                .values(
                    image_id=image,
                    digest=digest,
                    media_type=OCI_MANIFEST,
                    size=1,
                    created_at=moment,
                )
                .returning(manifests.c.id)
            ).scalar_one()
            conn.execute(
                insert(manifest_references).values(
                    manifest_id=manifest, digest="sha256:used", is_manifest=False
                )
            )
            if tag is not None:
                conn.execute(
                    insert(tags).values(image_id=image, name=tag, digest=digest, updated_at=moment)
                )
        command.upgrade(config, "head")
        seeded = {
            (row.kind, row.image_id, row.digest)
            for row in conn.execute(
                select(gc_candidates.c.kind, gc_candidates.c.image_id, gc_candidates.c.digest)
            )
        }
    engine.dispose()
    assert seeded == {
        ("manifest", image, "sha256:untagged"),
        ("link", image, "sha256:unused"),
        ("blob", 0, "sha256:unlinked"),
    }
