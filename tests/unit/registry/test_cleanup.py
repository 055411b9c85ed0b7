"""What a cleanup run changes, over a real SQLite database: a tag that moved after the
decision is left alone, and evicting a cached manifest removes its tags and the blob links no
remaining manifest uses, never a manifest an index still lists."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import select

from cargohold.db.schema import image_blobs
from cargohold.registry.services import Services
from tests.unit.registry.test_integrity import IMAGE, OCI_MANIFEST, push_image, run

OCI_INDEX = "application/vnd.oci.image.index.v1+json"


async def linked(services: Services) -> set[str]:
    async with services.database.read() as conn:
        return set((await conn.execute(select(image_blobs.c.digest))).scalars())


async def repository_id(services: Services) -> int:
    return (await services.projects.get_repository("team", "apps")).id


def test_a_tag_that_moved_after_the_decision_is_left_alone(tmp_path: Path) -> None:
    async def scenario(services: Services) -> None:
        first = await push_image(services, tag="v1")
        await push_image(services, tag="v1")  # moves v1
        image = IMAGE.removeprefix("team/apps/")
        doomed = [(image, "v1", first.manifest)]
        assert await services.metadata.delete_tags(await repository_id(services), doomed) == []
        records = await services.metadata.tag_records(await repository_id(services))
        assert [record.name for record in records] == ["v1"]

    run(tmp_path, scenario)


def test_eviction_unlinks_what_no_remaining_manifest_uses(tmp_path: Path) -> None:
    async def scenario(services: Services) -> None:
        evicted = await push_image(services, tag="old", layer_sizes=(100, 200))
        kept = await push_image(services, tag="new", layer_sizes=(300,))
        image = IMAGE.removeprefix("team/apps/")
        assert await services.metadata.evict_manifest(
            await repository_id(services), image, evicted.manifest
        )
        records = await services.metadata.tag_records(await repository_id(services))
        assert [record.name for record in records] == ["new"]
        # The config is shared with the kept image; the evicted image's layers are unlinked.
        assert await linked(services) == {kept.config, *kept.layers}
        cached = await services.metadata.cached_manifests(await repository_id(services))
        assert [manifest.digest for manifest in cached] == [kept.manifest]

    run(tmp_path, scenario)


def test_a_manifest_an_index_lists_is_evicted_only_after_the_index(tmp_path: Path) -> None:
    async def scenario(services: Services) -> None:
        child = await push_image(services, tag="amd64")
        index = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_INDEX,
                "manifests": [
                    {"mediaType": OCI_MANIFEST, "digest": child.manifest, "size": len(child.body)}
                ],
            }
        ).encode()
        target = await services.router.resolve(IMAGE)
        stored = await services.manifests.put(target, "multi", index, OCI_INDEX)
        image, repository = IMAGE.removeprefix("team/apps/"), await repository_id(services)
        cached = {m.digest: m for m in await services.metadata.cached_manifests(repository)}
        assert cached[stored.digest].children == frozenset({child.manifest})
        assert not await services.metadata.evict_manifest(repository, image, child.manifest)
        assert await services.metadata.evict_manifest(repository, image, stored.digest)
        assert await services.metadata.evict_manifest(repository, image, child.manifest)
        assert await linked(services) == set()

    run(tmp_path, scenario)
