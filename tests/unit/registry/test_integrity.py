"""The integrity check over a real SQLite database and a real blob folder: it finds corrupt
and missing content, orphan files, stale upload sessions and dangling tags, leaves
everything as it is unless asked to repair, and repairs without losing evidence."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, select, update

from cargohold.config import load_settings
from cargohold.db.engine import migrate
from cargohold.db.integrity import IntegrityStore
from cargohold.db.schema import blobs, image_blobs, manifests, tags
from cargohold.oci.digest import Digest
from cargohold.oci.errors import ErrorCode, RegistryError
from cargohold.registry.integrity import FsckReport, FsckService
from cargohold.registry.projects import ProxySettings
from cargohold.registry.router import Target
from cargohold.registry.services import Services, build_services
from cargohold.storage import FilesystemBlobStore
from cargohold.storage.filesystem import READ_CHUNK

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
IMAGE = "team/apps/web"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class Image:
    config: str
    layers: list[str]
    manifest: str
    body: bytes


async def _body(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def push_blob(services: Services, target: Target, data: bytes) -> str:
    return await services.uploads.push_whole(target, sha256(data), _body(data), len(data))


def manifest_of(config: bytes, layers: list[bytes]) -> bytes:
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.empty.v1+json",
                "digest": sha256(config),
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": sha256(layer),
                    "size": len(layer),
                }
                for layer in layers
            ],
        }
    ).encode()


async def push_image(
    services: Services, name: str = IMAGE, tag: str = "v1", layer_sizes: tuple[int, ...] = (1000,)
) -> Image:
    target = await services.router.resolve(name)
    config = b"{}"
    layers = [os.urandom(size) for size in layer_sizes]
    await push_blob(services, target, config)
    for layer in layers:
        await push_blob(services, target, layer)
    body = manifest_of(config, layers)
    stored = await services.manifests.put(target, tag, body, OCI_MANIFEST)
    return Image(sha256(config), [sha256(layer) for layer in layers], stored.digest, body)


def blob_file(services: Services, digest: str) -> Path:
    assert isinstance(services.store, FilesystemBlobStore)
    return services.store.local_path(digest)


def age(path: Path, seconds: float = 2 * 3600) -> None:
    """Make a file look written `seconds` ago."""
    moment = time.time() - seconds
    os.utime(path, (moment, moment))


Scenario = Callable[[Services], Awaitable[None]]


def run(tmp_path: Path, scenario: Scenario, **overrides: object) -> None:
    """The scenario over services of a fresh data folder with `team/apps`; `overrides`: more
    settings."""

    async def go() -> None:
        settings = load_settings(
            overrides={"data_dir": tmp_path, "fsync": False, **overrides}, environ={}
        )
        migrate(settings.metadata_url)
        services = await build_services(settings)
        try:
            await services.projects.create_project("team")
            await services.projects.create_repository("team", "apps")
            await scenario(services)
        finally:
            await services.close()

    asyncio.run(go())


def fsck(services: Services, **options: Any) -> FsckService:
    """A check with its own settings (time to live, grace period, batch size)."""
    settings: dict[str, Any] = {"upload_ttl_seconds": 86400, **options}
    return FsckService(IntegrityStore(services.database), services.store, **settings)


def assert_problems(report: FsckReport, **expected: int) -> None:
    counts = {
        kind: len(getattr(report, kind))
        for kind in (
            "corrupt",
            "missing",
            "wrong_size",
            "orphans",
            "stale_uploads",
            "dangling_tags",
        )
    }
    assert counts == {kind: expected.get(kind, 0) for kind in counts}, report
    json.dumps(report.to_json())  # the report always serializes


def test_a_clean_store_reports_clean_in_batches_of_any_size(tmp_path: Path) -> None:
    async def scenario(services: Services) -> None:
        await push_image(services, layer_sizes=(1000, 3 * READ_CHUNK + 5))
        await push_image(services, "team/apps/api", layer_sizes=(10, 20, 30))
        for batch_size in (1, 2, 500):
            report = await fsck(services, batch_size=batch_size).run()
            assert_problems(report)
            assert report.clean and report.exit_code == 0
            # One shared config, five layers; two manifests; every file is described.
            assert (report.blobs_checked, report.manifests_checked) == (6, 2)
            assert report.files_checked == 8
            assert report.bytes_checked > 3 * READ_CHUNK
            assert report.incomplete_manifests == []
            assert report.to_json()["clean"] is True

    run(tmp_path, scenario)


def test_a_corrupt_blob_is_reported_then_quarantined_and_no_longer_served(
    tmp_path: Path,
) -> None:
    async def scenario(services: Services) -> None:
        image = await push_image(services, layer_sizes=(2 * READ_CHUNK,))
        layer = image.layers[0]
        path = blob_file(services, layer)
        altered = bytearray(path.read_bytes())
        altered[12345] ^= 0xFF
        path.write_bytes(altered)

        report = await services.integrity.run()
        assert_problems(report, corrupt=1)
        corrupt = report.corrupt[0]
        assert corrupt.digest == layer
        assert corrupt.actual == sha256(bytes(altered))
        assert (corrupt.size, corrupt.kinds, corrupt.images) == (len(altered), ["blob"], [IMAGE])
        assert not corrupt.repaired and report.exit_code == 1
        assert path.exists(), "a check alone changes nothing"
        target = await services.router.resolve(IMAGE)
        assert (await services.blobs.get(target, layer)).digest == layer

        repaired = await services.integrity.run(repair=True)
        assert_problems(repaired, corrupt=1)
        assert repaired.corrupt[0].repaired and repaired.exit_code == 0
        quarantined = Path(repaired.corrupt[0].quarantined_to or "")
        assert quarantined.read_bytes() == altered, "the evidence is kept"
        assert quarantined.is_relative_to(services.settings.blob_dir / "quarantine")
        assert not path.exists()
        with pytest.raises(RegistryError) as unknown:
            await services.blobs.get(target, layer)
        assert unknown.value.code is ErrorCode.BLOB_UNKNOWN
        # The image now lacks its layer: a warning, not a problem a repair could solve.
        assert [(m.image, m.manifest, m.missing) for m in repaired.incomplete_manifests] == [
            (IMAGE, image.manifest, [layer])
        ]

        after = await services.integrity.run()
        assert after.clean and after.exit_code == 0
        assert len(after.incomplete_manifests) == 1
        # Pushing the layer again heals the image.
        data = bytearray(altered)
        data[12345] ^= 0xFF
        assert await push_blob(services, target, bytes(data)) == layer
        healed = await services.integrity.run()
        assert healed.clean and healed.incomplete_manifests == []

    run(tmp_path, scenario)


def test_rows_whose_bytes_are_gone_are_removed_with_the_tags_of_a_manifest(
    tmp_path: Path,
) -> None:
    async def scenario(services: Services) -> None:
        image = await push_image(services)
        other = await push_image(services, "team/apps/api")
        blob_file(services, image.layers[0]).unlink()
        blob_file(services, other.manifest).unlink()

        report = await services.integrity.run()
        assert_problems(report, missing=2)
        by_digest = {entry.digest: entry for entry in report.missing}
        assert by_digest[image.layers[0]].kinds == ["blob"]
        assert by_digest[image.layers[0]].images == [IMAGE]
        assert by_digest[other.manifest].kinds == ["manifest"]
        assert by_digest[other.manifest].images == ["team/apps/api"]
        assert report.exit_code == 1

        repaired = await services.integrity.run(repair=True)
        assert all(entry.repaired for entry in repaired.missing) and repaired.exit_code == 0
        async with services.database.read() as conn:
            assert (
                await conn.execute(select(blobs).where(blobs.c.digest == image.layers[0]))
            ).first() is None
            assert (
                await conn.execute(
                    select(image_blobs).where(image_blobs.c.digest == image.layers[0])
                )
            ).first() is None
            assert (
                await conn.execute(select(manifests).where(manifests.c.digest == other.manifest))
            ).first() is None
            assert (
                await conn.execute(select(tags).where(tags.c.digest == other.manifest))
            ).first() is None
        api = await services.router.resolve("team/apps/api")
        with pytest.raises(RegistryError) as unknown:
            await services.manifests.get(api, "v1", [OCI_MANIFEST])
        assert unknown.value.code is ErrorCode.MANIFEST_UNKNOWN
        # The other image's blobs are orphans of no one: they stay, described by their rows.
        assert (await services.integrity.run()).clean

    run(tmp_path, scenario)


def test_content_that_is_both_blob_and_manifest_is_checked_once_and_repaired_whole(
    tmp_path: Path,
) -> None:
    async def scenario(services: Services) -> None:
        image = await push_image(services)
        target = await services.router.resolve(IMAGE)
        assert await push_blob(services, target, image.body) == image.manifest
        clean = await services.integrity.run()
        assert clean.clean
        assert (clean.blobs_checked, clean.manifests_checked, clean.files_checked) == (3, 1, 3)

        blob_file(services, image.manifest).write_bytes(image.body + b" ")
        report = await services.integrity.run(repair=True)
        assert_problems(report, corrupt=1)
        assert report.corrupt[0].kinds == ["blob", "manifest"]
        assert report.corrupt[0].repaired
        with pytest.raises(RegistryError):
            await services.manifests.get(target, "v1", [OCI_MANIFEST])
        with pytest.raises(RegistryError):
            await services.blobs.get(target, image.manifest)

    run(tmp_path, scenario)


def test_orphan_files_are_deleted_once_older_than_the_grace_period(tmp_path: Path) -> None:
    async def scenario(services: Services) -> None:
        await push_image(services)
        data = b"bytes no row describes"
        await services.store.put_bytes(sha256(data), data)

        recent = await services.integrity.run(repair=True)
        assert recent.clean and recent.recent_unreferenced == 1
        assert await services.store.size(sha256(data)) == len(data), "a push may be in flight"

        age(blob_file(services, sha256(data)))
        report = await services.integrity.run()
        assert_problems(report, orphans=1)
        assert (report.orphans[0].digest, report.orphans[0].size) == (sha256(data), len(data))
        assert report.exit_code == 1
        assert await services.store.size(sha256(data)) == len(data)

        repaired = await services.integrity.run(repair=True)
        assert repaired.orphans[0].repaired and repaired.exit_code == 0
        assert await services.store.size(sha256(data)) is None
        assert (await services.integrity.run()).clean

    run(tmp_path, scenario)


def test_stale_upload_sessions_are_reported_and_swept(tmp_path: Path) -> None:
    async def scenario(services: Services) -> None:
        target = await services.router.resolve(IMAGE)
        live = await services.uploads.start(target, "sha256")
        without_bytes = await services.uploads.start(target, "sha256")
        (services.settings.blob_dir / "uploads" / without_bytes.id).unlink()
        without_session = "f" * 32
        await services.store.start_upload(without_session)

        recent = await services.integrity.run()
        assert recent.clean and recent.recent_unreferenced == 2

        report = await fsck(services, grace_seconds=0).run()
        assert_problems(report, stale_uploads=2)
        assert {(u.id, u.reason) for u in report.stale_uploads} == {
            (without_bytes.id, "no bytes"),
            (without_session, "no session"),
        }
        expired = await fsck(services, upload_ttl_seconds=0, grace_seconds=0).run(repair=True)
        assert {(u.id, u.reason) for u in expired.stale_uploads} == {
            (live.id, "expired"),
            (without_bytes.id, "expired"),
            (without_session, "no session"),
        }
        assert all(u.repaired for u in expired.stale_uploads) and expired.exit_code == 0
        assert await services.store.upload_ids() == []
        assert await services.metadata.upload_ids() == set()

    run(tmp_path, scenario)


def test_dangling_tags_and_wrong_sizes_are_repaired(tmp_path: Path) -> None:
    async def scenario(services: Services) -> None:
        image = await push_image(services)
        image_id = await services.metadata.image_id(
            (await services.router.resolve(IMAGE)).repository.id, "web"
        )
        nowhere = sha256(b"no such manifest")
        async with services.database.write() as conn:
            await conn.execute(
                insert(tags).values(image_id=image_id, name="gone", digest=nowhere, updated_at=0)
            )
            await conn.execute(
                update(blobs).where(blobs.c.digest == image.layers[0]).values(size=1)
            )

        report = await services.integrity.run()
        assert_problems(report, dangling_tags=1, wrong_size=1)
        tag = report.dangling_tags[0]
        assert (tag.image, tag.tag, tag.digest) == (IMAGE, "gone", nowhere)
        wrong = report.wrong_size[0]
        assert (wrong.digest, wrong.recorded, wrong.actual) == (image.layers[0], 1, 1000)

        repaired = await services.integrity.run(repair=True)
        assert repaired.exit_code == 0
        assert repaired.dangling_tags[0].repaired and repaired.wrong_size[0].repaired
        assert (await services.integrity.run()).clean
        target = await services.router.resolve(IMAGE)
        assert await services.manifests.tags(target, None, None) == ["v1"]
        assert (await services.blobs.get(target, image.layers[0])).size == 1000

    run(tmp_path, scenario)


def test_a_proxy_cache_may_hold_manifests_without_their_blobs(tmp_path: Path) -> None:
    async def scenario(services: Services) -> None:
        await services.projects.create_repository(
            "team", "mirror", "proxy", proxy=ProxySettings("https://registry.example.test")
        )
        target = await services.router.resolve("team/mirror/library/nginx")
        body = manifest_of(b"{}", [b"a layer fetched when first asked for"])
        digest = Digest.parse(sha256(body))
        await services.manifests.cache(target, digest, body, OCI_MANIFEST, "latest")
        report = await services.integrity.run()
        assert report.clean and report.manifests_checked == 1
        assert report.incomplete_manifests == []

    run(tmp_path, scenario)


def test_a_hosted_manifest_whose_blob_link_was_lost_is_a_warning(tmp_path: Path) -> None:
    async def scenario(services: Services) -> None:
        image = await push_image(services)
        async with services.database.write() as conn:
            await conn.execute(image_blobs.delete().where(image_blobs.c.digest == image.config))
        report = await services.integrity.run(repair=True)
        assert report.clean and report.exit_code == 0
        assert [(m.manifest, m.missing) for m in report.incomplete_manifests] == [
            (image.manifest, [image.config])
        ]

    run(tmp_path, scenario)


def test_unreadable_bytes_and_invalid_digests_count_as_corrupt(tmp_path: Path) -> None:
    async def scenario(services: Services) -> None:
        image = await push_image(services)
        path = blob_file(services, image.layers[0])
        path.unlink()
        path.mkdir()  # opening it fails, as a bad sector or a lost permission would
        invalid = "sha256:NOT-HEX"
        async with services.database.write() as conn:
            await conn.execute(insert(blobs).values(digest=invalid, size=1, created_at=0))

        report = await services.integrity.run()
        assert_problems(report, corrupt=2)
        reasons = {entry.digest: entry.reason for entry in report.corrupt}
        assert reasons[invalid] == "it is not a valid digest"
        assert reasons[image.layers[0]].startswith("its stored bytes cannot be read: ")

        repaired = await services.integrity.run(repair=True)
        assert repaired.exit_code == 0
        quarantined = {entry.digest: entry.quarantined_to for entry in repaired.corrupt}
        assert quarantined[invalid] is None
        assert Path(quarantined[image.layers[0]] or "").is_dir()
        assert (await services.integrity.run()).clean

    run(tmp_path, scenario)
