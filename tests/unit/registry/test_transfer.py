"""Copying an installation between real SQLite databases and blob folders: only the
database moves when both share the folder (nothing is copied, everything is hashed), wrong
bytes found in the target are put aside and copied again; what tells two databases or
stores apart; the report."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import update

from cargohold.config import Settings, load_settings
from cargohold.db.engine import open_database
from cargohold.db.schema import blobs
from cargohold.registry.services import Services
from cargohold.registry.transfer import (
    BadBlob,
    CopyRefused,
    TransferReport,
    blob_store_location,
    copy_installation,
    database_location,
    prepare,
)
from cargohold.storage import FilesystemBlobStore
from tests.unit.registry.test_integrity import Image, push_image, run


def _settings(data_dir: Path, **values: object) -> Settings:
    return load_settings(overrides={"data_dir": data_dir, "fsync": False, **values}, environ={})


def _source(tmp_path: Path) -> tuple[Settings, Image]:
    pushed: list[Image] = []

    async def scenario(services: Services) -> None:
        pushed.append(await push_image(services, layer_sizes=(1000, 3000)))

    (tmp_path / "source").mkdir()
    run(tmp_path / "source", scenario)
    return _settings(tmp_path / "source"), pushed[0]


def _blob_file(settings: Settings, digest: str) -> Path:
    return FilesystemBlobStore(settings.blob_dir, fsync=False).local_path(digest)


def _copy(source: Settings, target: Settings) -> TransferReport:
    target.data_dir.mkdir(parents=True, exist_ok=True)
    prepare(source, target)
    return asyncio.run(copy_installation(source, target))


def test_only_the_database_moves_when_both_share_the_blob_folder(tmp_path: Path) -> None:
    source, image = _source(tmp_path)
    target = _settings(tmp_path / "target", storage_dir=source.blob_dir)
    layer = _blob_file(source, image.layers[0])
    original = layer.read_bytes()
    layer.write_bytes(b"x" + original[1:])

    spoiled = _copy(source, target)

    assert [bad.digest for bad in spoiled.bad] == [image.layers[0]]
    assert spoiled.bad[0].reason.startswith("its bytes hash to sha256:")
    assert spoiled.exit_code == 1 and spoiled.rows == {}
    assert layer.read_bytes() == b"x" + original[1:]  # left as it was: it is the source's
    layer.write_bytes(original)

    report = _copy(source, target)

    assert report.ok and report.exit_code == 0, report.lines()
    assert (report.blobs, report.blobs_copied, report.blobs_present) == (4, 0, 4)
    assert report.rows["manifests"] == 1 and report.bytes_verified > 4000


def test_wrong_bytes_in_the_target_are_put_aside_and_copied_again(tmp_path: Path) -> None:
    source, image = _source(tmp_path)
    target = _settings(tmp_path / "target")
    wrong = FilesystemBlobStore(target.blob_dir, fsync=False)
    asyncio.run(wrong.put_bytes(image.config, b"not the config"))

    report = _copy(source, target)

    assert report.ok, report.lines()
    assert (report.blobs_copied, report.blobs_present) == (4, 0)
    assert wrong.local_path(image.config).read_bytes() == b"{}"
    quarantine = target.blob_dir / "quarantine"
    quarantined = [path.read_bytes() for path in quarantine.rglob("*") if path.is_file()]
    assert quarantined == [b"not the config"]


def test_a_blob_whose_rows_record_another_size_is_reported(tmp_path: Path) -> None:
    source, image = _source(tmp_path)

    async def record_size() -> None:
        database = open_database(source.metadata_url)
        try:
            async with database.write() as conn:
                await conn.execute(
                    update(blobs).where(blobs.c.digest == image.layers[1]).values(size=1)
                )
        finally:
            await database.dispose()

    asyncio.run(record_size())
    report = _copy(source, _settings(tmp_path / "target"))
    assert [(bad.digest, bad.reason) for bad in report.bad] == [
        (
            image.layers[1],
            "its rows record 1 bytes but it holds 3000"
            " (`cargohold fsck --repair` on the source corrects the rows)",
        )
    ]
    assert report.exit_code == 1 and report.rows == {}


def test_a_source_without_a_database_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CopyRefused, match="the source has no metadata database"):
        prepare(_settings(tmp_path / "nothing"), _settings(tmp_path / "target"))
    assert not (tmp_path / "nothing" / "cargohold.db").exists()


def test_databases_are_told_apart_by_where_they_are_not_by_how_they_are_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert database_location("sqlite:///data/cargohold.db") == database_location(
        f"sqlite:///{tmp_path}/data/cargohold.db"
    )
    plain = database_location("postgres://app:secret@db:5432/registry")
    assert plain == database_location("postgresql+asyncpg://app:other@db:5432/registry")
    assert plain == "postgresql://app@db:5432/registry"  # no password shown
    assert plain != database_location("postgresql://app@db:5432/other")


def test_blob_stores_are_told_apart_by_folder_or_bucket_and_prefix(tmp_path: Path) -> None:
    data = _settings(tmp_path / "data")
    assert blob_store_location(data) == blob_store_location(
        _settings(tmp_path / "elsewhere", storage_dir=tmp_path / "data" / "storage")
    )
    bucket = {"blob_store": "s3", "s3_bucket": "registry", "s3_endpoint_url": "http://s3:9000"}
    in_bucket = _settings(tmp_path, **bucket)
    assert blob_store_location(in_bucket) == "s3://registry/ at http://s3:9000"
    assert blob_store_location(in_bucket) != blob_store_location(
        _settings(tmp_path, **bucket, s3_prefix="other/")
    )
    assert blob_store_location(in_bucket) != blob_store_location(data)


def test_the_report_says_what_to_do_and_exits_0_only_when_everything_matches() -> None:
    done = TransferReport("old", "new", blobs=2, blobs_copied=2, rows={"projects": 1})
    assert done.ok and done.exit_code == 0 and done.to_json()["ok"] is True
    assert done.lines()[-1].startswith("copied and checked in")
    assert "rows: projects 1 (1 in all)" in done.lines()

    bad = TransferReport("old", "new", blobs=2, bad=[BadBlob("sha256:ab", "gone")])
    assert bad.exit_code == 1 and "bad: sha256:ab: gone" in bad.lines()
    assert "so no rows were" in bad.lines()[-1]
    assert "`cargohold fsck --repair` on the source" in bad.lines()[-1]

    differs = TransferReport("old", "new", rows={"projects": 1}, mismatches=["projects: 1, 0"])
    assert differs.exit_code == 1 and "mismatch: projects: 1, 0" in differs.lines()
    assert "create it empty, and run the copy again" in differs.lines()[-1]
