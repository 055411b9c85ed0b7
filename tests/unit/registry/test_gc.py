"""Garbage collection over a real SQLite database and a real blob folder: what no tag, index
or referrer needs goes (manifests only where the repository deletes untagged ones), shared
content stays, the grace period protects what is recent, a dry run reports exactly what a
run then deletes, batches of any size give the same result, and one collection runs at a
time."""

from __future__ import annotations

import asyncio
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from cargohold.db.gc import GcStore, ImageManifests, ManifestNode
from cargohold.db.leases import LeaseStore
from cargohold.db.schema import blobs, image_blobs, maintenance_leases, manifests
from cargohold.oci.errors import ErrorCode, RegistryError
from cargohold.registry.gc import (
    LEASE,
    LEASE_SECONDS,
    CollectionRunning,
    GarbageCollector,
    GcReport,
    reachable,
)
from cargohold.registry.leases import Lease
from cargohold.registry.router import Target
from cargohold.registry.services import Services
from cargohold.storage import FilesystemBlobStore
from tests.unit.registry.test_integrity import OCI_MANIFEST, manifest_of, push_blob, run, sha256

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
KEEP = "team/apps/web"  # a repository that keeps untagged manifests (the default)
PRUNED = "team/pruned/web"  # one that deletes them


@dataclass(frozen=True)
class Pushed:
    digest: str
    blobs: list[str]


async def push(
    services: Services,
    name: str,
    tag: str | None,
    layers: list[bytes],
    *,
    subject: Pushed | None = None,
) -> Pushed:
    """An image of an empty config and `layers`, tagged `tag` or pushed by digest."""
    target = await services.router.resolve(name)
    config = b"{}"
    for data in [config, *layers]:
        await push_blob(services, target, data)
    document = json.loads(manifest_of(config, layers))
    if subject is not None:
        document["subject"] = {"mediaType": OCI_MANIFEST, "digest": subject.digest, "size": 1}
    body = json.dumps(document).encode()
    stored = await services.manifests.put(target, tag or sha256(body), body, OCI_MANIFEST)
    return Pushed(stored.digest, [sha256(config), *(sha256(layer) for layer in layers)])


async def push_index(services: Services, name: str, tag: str, children: list[Pushed]) -> Pushed:
    target = await services.router.resolve(name)
    body = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [
                {"mediaType": OCI_MANIFEST, "digest": child.digest, "size": 1} for child in children
            ],
        }
    ).encode()
    stored = await services.manifests.put(target, tag, body, OCI_INDEX)
    return Pushed(stored.digest, [])


async def untag(services: Services, name: str, tag: str) -> None:
    await services.manifests.delete(await services.router.resolve(name), tag)


async def delete_manifest(services: Services, name: str, digest: str) -> None:
    await services.manifests.delete(await services.router.resolve(name), digest)


async def with_pruned_repository(services: Services) -> None:
    await services.projects.create_repository("team", "pruned", untagged_manifests="delete")


def stored(services: Services, digest: str) -> bool:
    assert isinstance(services.store, FilesystemBlobStore)
    return services.store.local_path(digest).exists()


def collector(services: Services, **options: Any) -> GarbageCollector:
    settings: dict[str, Any] = {"grace_seconds": 0.0, **options}
    # A lease of its own: each collector stands for another process.
    lease = Lease(LeaseStore(services.database), LEASE, LEASE_SECONDS)
    return GarbageCollector(
        GcStore(services.database), services.store, services.content, lease, **settings
    )


async def pull_whole(services: Services, name: str, image: Pushed) -> None:
    """Every blob of the image is readable through it and stored."""
    target = await services.router.resolve(name)
    content = await services.manifests.get(target, image.digest, [OCI_MANIFEST])
    assert content.digest == image.digest
    for digest in image.blobs:
        blob = await services.blobs.get(target, digest)
        data = b"".join([chunk async for chunk in blob.read(0, blob.size)])
        assert data and sha256(data) == digest


def removed(report: GcReport) -> tuple[list[str], list[str]]:
    return [m.digest for m in report.manifests], [b.digest for b in report.blobs]


def test_a_deleted_images_blobs_go_and_shared_ones_stay(tmp_path: Path) -> None:
    async def scenario(services: Services) -> None:
        shared, own = os.urandom(1000), os.urandom(2000)
        gone = await push(services, "team/apps/old", "v1", [shared, own])
        kept = await push(services, KEEP, "v1", [shared])
        await delete_manifest(services, "team/apps/old", gone.digest)
        assert not stored(services, gone.digest), "a deleted manifest's bytes go at once"

        report = await collector(services).run()
        # The old image's three links go; of the blobs only its own layer was in no other.
        assert report.links == 3
        assert removed(report) == ([], [sha256(own)])
        assert (report.files, report.bytes_freed) == (1, 2000)
        assert not stored(services, sha256(own))
        await pull_whole(services, KEEP, kept)
        again = await collector(services).run()
        assert (again.links, again.blobs, again.files) == (0, [], 0)

    run(tmp_path, scenario)


def test_blobs_shared_across_repositories_stay_while_one_still_uses_them(tmp_path: Path) -> None:
    async def scenario(services: Services) -> None:
        await with_pruned_repository(services)
        layer = os.urandom(500)
        here = await push(services, KEEP, "v1", [layer])
        there = await push(services, PRUNED, "v1", [layer])
        await untag(services, PRUNED, "v1")

        report = await collector(services).run()
        assert removed(report) == ([there.digest], [])
        assert report.links == 2  # config and layer, in the pruned repository only
        assert report.files == 0, "the other repository's manifest is the same bytes"
        await pull_whole(services, KEEP, here)

    run(tmp_path, scenario)


def test_untagged_manifests_are_kept_unless_the_repository_deletes_them(tmp_path: Path) -> None:
    async def scenario(services: Services) -> None:
        await with_pruned_repository(services)
        kept = await push(services, KEEP, None, [os.urandom(100)])
        dropped = await push(services, PRUNED, None, [os.urandom(100)])

        report = await collector(services).run()
        assert removed(report) == ([dropped.digest], dropped.blobs[1:])
        assert not stored(services, dropped.digest)
        await pull_whole(services, KEEP, kept)
        with pytest.raises(RegistryError) as unknown:
            await pull_whole(services, PRUNED, dropped)
        assert unknown.value.code is ErrorCode.MANIFEST_UNKNOWN

    run(tmp_path, scenario)


def test_a_tagged_index_keeps_its_children_and_referrers_their_subject(tmp_path: Path) -> None:
    async def scenario(services: Services) -> None:
        await with_pruned_repository(services)
        children = [await push(services, PRUNED, None, [os.urandom(100)]) for _ in range(2)]
        index = await push_index(services, PRUNED, "multi", children)
        signature = await push(services, PRUNED, None, [os.urandom(50)], subject=children[0])
        # A referrer of a referrer: kept while the chain reaches a kept manifest.
        attestation = await push(services, PRUNED, None, [os.urandom(50)], subject=signature)
        stray = await push(services, PRUNED, None, [os.urandom(50)])

        report = await collector(services).run()
        assert removed(report) == ([stray.digest], stray.blobs[1:])
        for image in (*children, signature, attestation):
            await pull_whole(services, PRUNED, image)

        await untag(services, PRUNED, "multi")
        report = await collector(services).run()
        everything = [index, *children, signature, attestation]
        assert sorted(removed(report)[0]) == sorted(image.digest for image in everything)
        assert not any(stored(services, image.digest) for image in everything)
        assert not any(stored(services, digest) for c in children for digest in c.blobs[1:])

    run(tmp_path, scenario)


def test_the_grace_period_protects_recent_uploads_and_manifests(tmp_path: Path) -> None:
    async def scenario(services: Services) -> None:
        await with_pruned_repository(services)
        target = await services.router.resolve(KEEP)
        lone_bytes = os.urandom(300)
        lone = await push_blob(services, target, lone_bytes)  # no manifest uses it yet
        untagged = await push(services, PRUNED, None, [os.urandom(100)])

        patient = collector(services, grace_seconds=3600)
        report = await patient.run()
        assert (report.manifests, report.links, report.blobs, report.files) == ([], 0, [], 0)

        # Linked again (uploaded or mounted), a blob's grace period starts again.
        an_hour_ago = time.time() - 3601
        async with services.database.write() as conn:
            for table in (image_blobs, blobs, manifests):
                await conn.execute(update(table).values(created_at=an_hour_ago))
        await push_blob(services, target, lone_bytes)
        report = await patient.run()
        # The config went too: no other image links to it.
        assert removed(report) == ([untagged.digest], sorted(untagged.blobs))
        assert stored(services, lone)

    run(tmp_path, scenario)


def test_a_dry_run_reports_exactly_what_a_run_then_deletes(tmp_path: Path) -> None:
    async def scenario(services: Services) -> None:
        await with_pruned_repository(services)
        shared = os.urandom(700)
        children = [await push(services, PRUNED, None, [shared, os.urandom(100)]) for _ in range(3)]
        await push_index(services, PRUNED, "multi", children[:2])
        await untag(services, PRUNED, "multi")  # the index and its children go
        await push(services, "team/apps/other", "v1", [shared])
        dropped = await push(services, "team/apps/dropped", "v1", [os.urandom(400)])
        await delete_manifest(services, "team/apps/dropped", dropped.digest)
        target = await services.router.resolve(KEEP)
        await push_blob(services, target, os.urandom(200))  # pushed, never used
        files = sorted(services.settings.blob_dir.rglob("*"))

        dry = await collector(services).run(dry_run=True)
        assert sorted(services.settings.blob_dir.rglob("*")) == files, "a dry run deletes nothing"
        assert len(dry.manifests) == 4 and len(dry.blobs) == 5 and dry.files == 9
        real = await collector(services).run()
        assert {**real.to_json(), "dry_run": True, "seconds": 0} == {
            **dry.to_json(),
            "seconds": 0,
        }
        assert stored(services, sha256(shared)), "another image still uses it"

    run(tmp_path, scenario)


@pytest.mark.parametrize("batch_size", [1, 2, 500])
def test_batches_of_any_size_collect_the_same(tmp_path: Path, batch_size: int) -> None:
    async def scenario(services: Services) -> None:
        await with_pruned_repository(services)
        kept = await push(services, PRUNED, "v1", [os.urandom(100)])
        for _ in range(5):
            await push(services, PRUNED, None, [os.urandom(100), os.urandom(100)])
        report = await collector(services, batch_size=batch_size).run()
        assert (len(report.manifests), report.links, len(report.blobs)) == (5, 10, 10)
        assert report.files == 15
        await pull_whole(services, PRUNED, kept)

    run(tmp_path, scenario)


def test_one_collection_at_a_time(tmp_path: Path) -> None:
    async def scenario(services: Services) -> None:
        first, second = collector(services), collector(services)
        leases = LeaseStore(services.database)
        assert await leases.take(LEASE, "another-node:1", 60) is None
        with pytest.raises(CollectionRunning) as running:
            await first.run()
        assert "another-node:1" in str(running.value)
        assert await first.run_if_due(60) is None
        assert (await first.run(dry_run=True)).dry_run, "a dry run needs no lease"

        # A holder that died: its lease lapses.
        async with services.database.write() as conn:
            await conn.execute(update(maintenance_leases).values(expires_at=time.time() - 1))
        await first.run()
        # Given back: another process may collect at once, but a scheduled run waits.
        await second.run()
        assert await second.run_if_due(3600) is None
        await asyncio.sleep(0.01)
        assert await second.run_if_due(0.001) is not None

    run(tmp_path, scenario)


def test_a_manifest_whose_blob_was_collected_in_between_is_refused(tmp_path: Path) -> None:
    async def scenario(services: Services) -> None:
        layer = os.urandom(100)
        target: Target = await services.router.resolve(KEEP)
        digest = await push_blob(services, target, layer)
        await collector(services).run()  # between the upload and the manifest
        with pytest.raises(RegistryError) as refused:
            await services.manifests.put(target, "v1", manifest_of(b"{}", [layer]), OCI_MANIFEST)
        assert refused.value.code is ErrorCode.MANIFEST_BLOB_UNKNOWN
        assert digest in refused.value.detail["missing"]
        # Pushed again, the blob is stored again and the manifest goes in.
        pushed = await push(services, KEEP, "v1", [layer])
        await pull_whole(services, KEEP, pushed)

    run(tmp_path, scenario)


def test_bytes_go_only_when_no_row_needs_them_once_a_writer_is_done(tmp_path: Path) -> None:
    async def scenario(services: Services) -> None:
        data = os.urandom(100)
        digest = sha256(data)
        image_id = await services.router.image_id(await services.router.resolve(KEEP), create=True)
        assert image_id is not None
        await services.store.put_bytes(digest, data)  # stored, no row yet
        async with services.content.hold(digest):  # an upload finishing with this digest
            removal = asyncio.create_task(services.content.remove_unless_described([digest]))
            await asyncio.sleep(0.2)
            assert not removal.done(), "the removal waits for the writer"
            await services.metadata.link_blob(image_id, digest, len(data))
        assert await removal == {} and stored(services, digest)

        await services.store.put_bytes(sha256(b"lone"), b"lone")
        assert await services.content.remove_unless_described([sha256(b"lone")]) == {
            sha256(b"lone"): 4
        }
        assert not stored(services, sha256(b"lone"))

    run(tmp_path, scenario)


def node(digest: str, **fields: Any) -> ManifestNode:
    values: dict[str, Any] = {
        "id": 0,
        "size": 1,
        "created_at": 0.0,
        "subject_digest": None,
        "tagged": False,
        "children": frozenset(),
        "blobs": frozenset(),
        **fields,
    }
    return ManifestNode(digest=digest, **values)


def test_reachability_follows_children_and_referrers_from_roots() -> None:
    image = ImageManifests(
        1,
        "team/apps/web",
        [
            node("index", tagged=True, children=frozenset({"amd64", "arm64"})),
            node("amd64"),
            node("arm64"),
            node("sbom", subject_digest="amd64"),
            node("sbom-signature", subject_digest="sbom"),
            node("recent", created_at=100.0, children=frozenset({"recent-child"})),
            node("recent-child"),
            node("orphan-referrer", subject_digest="gone"),
            node("old"),
        ],
    )
    assert reachable(image, cutoff=50.0) == {
        "index",
        "amd64",
        "arm64",
        "sbom",
        "sbom-signature",
        "recent",
        "recent-child",
    }
