"""`cargohold fsck` on the data folder of a real server: it finds a blob whose bytes were
altered on disk and rows whose bytes are gone; `--repair` quarantines and removes them, so
that the server answers 404 instead of wrong bytes; a push heals what was removed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.integration.oci_client import OciClient, Pushed, sha256
from tests.integration.server import Server


@dataclass
class Fsck:
    code: int
    report: dict[str, Any]
    summary: str


def fsck(server: Server, *options: str, env: dict[str, str] | None = None) -> Fsck:
    """Run `cargohold fsck --json` as an operator would; the report is on stdout."""
    command = [sys.executable, "-m", "cargohold", "fsck", "--json", *options]
    done = subprocess.run(
        [*command, "--data-dir", str(server.data_dir)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **server.env, **(env or {})},
    )
    return Fsck(done.returncode, json.loads(done.stdout), done.stderr)


def blob_path(server: Server, digest: str) -> Path:
    """Where the filesystem store keeps a blob."""
    algorithm, encoded = digest.split(":")
    return server.data_dir / "storage" / "blobs" / algorithm / encoded[:2] / encoded


def layers_of(image: Pushed) -> list[str]:
    return [layer["digest"] for layer in json.loads(image.body)["layers"]]


def digests(entries: list[dict[str, Any]]) -> list[str]:
    return sorted(entry["digest"] for entry in entries)


def pull_whole(client: OciClient, name: str, image: Pushed) -> None:
    """Pull the manifest and every blob it names, and check each byte for byte."""
    manifest = client.get_manifest(name, image.digest)
    assert manifest.status_code == 200, manifest.text
    assert manifest.content == image.body
    document = json.loads(image.body)
    for digest in [document["config"]["digest"], *layers_of(image)]:
        blob = client.request("GET", f"/v2/{name}/blobs/{digest}")
        assert blob.status_code == 200, blob.text
        assert sha256(blob.content) == digest


def test_fsck_finds_altered_and_missing_blobs_and_repair_makes_them_404(
    own_server: Server,
) -> None:
    client = OciClient(own_server.url, own_server.admin_auth)
    altered_name, missing_name, intact_name = (own_server.unique_name() for _ in range(3))
    altered_image = client.push_image(altered_name, layers=2)
    missing_image = client.push_image(missing_name, layers=2)
    intact_image = client.push_image(intact_name, layers=3)
    altered, deleted = layers_of(altered_image)[0], layers_of(missing_image)[1]
    own_server.stop()

    original, kept_for_later = own_server.blobs.read(altered), own_server.blobs.read(deleted)
    assert original is not None and kept_for_later is not None
    changed = bytes([original[0] ^ 0xFF]) + original[1:]
    own_server.blobs.write(altered, changed)
    own_server.blobs.delete(deleted)

    found = fsck(own_server)
    assert found.code == 1, found.summary
    assert not found.report["clean"] and found.report["problems"] == 2
    assert digests(found.report["corrupt"]) == [altered]
    corrupt = found.report["corrupt"][0]
    assert corrupt["actual"] == sha256(changed) and corrupt["images"] == [altered_name]
    assert digests(found.report["missing"]) == [deleted]
    assert found.report["missing"][0]["images"] == [missing_name]
    assert f"corrupt: {altered}" in found.summary and f"missing: {deleted}" in found.summary
    assert "--repair" in found.summary
    assert own_server.blobs.read(altered) == changed, "a check changes nothing"

    repaired = fsck(own_server, "--repair")
    assert repaired.code == 0, repaired.summary
    assert repaired.report["repaired"]
    assert "quarantine" in repaired.report["corrupt"][0]["quarantined_to"]
    assert list(own_server.blobs.under("quarantine").values()) == [changed]
    assert own_server.blobs.read(altered) is None
    assert repaired.report["missing"][0]["repaired"]
    # Both images now lack a layer: named so that they can be pushed again.
    assert sorted(m["image"] for m in repaired.report["incomplete_manifests"]) == sorted(
        [altered_name, missing_name]
    )

    own_server.start()
    for name, digest in ((altered_name, altered), (missing_name, deleted)):
        for method in ("GET", "HEAD"):
            OciClient.expect_error(
                client.request(method, f"/v2/{name}/blobs/{digest}"), 404, "BLOB_UNKNOWN"
            )
    pull_whole(client, intact_name, intact_image)

    # Checking is safe while the server serves: clean, with the two images to push again.
    online = fsck(own_server)
    assert online.code == 0 and online.report["clean"], online.summary
    assert len(online.report["incomplete_manifests"]) == 2
    assert "push it again" in online.summary

    client.push_blob(altered_name, original)
    client.push_blob(missing_name, kept_for_later)
    for name, image in (
        (altered_name, altered_image),
        (missing_name, missing_image),
        (intact_name, intact_image),
    ):
        pull_whole(client, name, image)
    healed = fsck(own_server)
    assert healed.code == 0 and healed.report["clean"], healed.summary
    assert healed.report["incomplete_manifests"] == []


def test_a_clean_store_reports_clean_and_a_repair_changes_nothing(own_server: Server) -> None:
    client = OciClient(own_server.url, own_server.admin_auth)
    name = own_server.unique_name()
    image = client.push_image(name, layers=2)
    client.push_index(name, [image], tag="multi")
    own_server.stop()
    before = own_server.blobs.under("blobs")

    report = fsck(own_server)
    assert report.code == 0, report.summary
    assert report.report["clean"] and report.report["problems"] == 0
    assert report.report["blobs_checked"] == 3  # the config and two layers
    assert report.report["manifests_checked"] == 2  # the image and the index
    assert report.report["files_checked"] == 5
    assert report.report["incomplete_manifests"] == []
    assert report.summary.strip().endswith("clean")

    repaired = fsck(own_server, "--repair")
    assert repaired.code == 0 and repaired.report["clean"], repaired.summary
    assert own_server.blobs.under("blobs") == before
    own_server.start()
    pull_whole(client, name, image)


def test_stale_sessions_and_orphan_files_are_swept(own_server: Server) -> None:
    if own_server.on_object_storage:
        pytest.skip("an object's LastModified cannot be set back past the orphans' grace")
    client = OciClient(own_server.url, own_server.admin_auth)
    name = own_server.unique_name()
    client.push_image(name)
    location = client.start_upload(name)
    upload_id = location.split("?")[0].rstrip("/").rsplit("/", 1)[1]
    own_server.stop()
    orphan = os.urandom(100)
    path = blob_path(own_server, sha256(orphan))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orphan)
    two_hours_ago = time.time() - 7200
    os.utime(path, (two_hours_ago, two_hours_ago))
    time.sleep(1.1)
    short_ttl = {"CARGOHOLD_UPLOAD_TTL_SECONDS": "1"}

    found = fsck(own_server, env=short_ttl)
    assert found.code == 1, found.summary
    assert found.report["stale_uploads"] == [
        {"id": upload_id, "reason": "expired", "repaired": False}
    ]
    assert digests(found.report["orphans"]) == [sha256(orphan)]
    assert found.report["orphans"][0]["size"] == 100

    repaired = fsck(own_server, "--repair", env=short_ttl)
    assert repaired.code == 0, repaired.summary
    assert not path.exists()
    assert list((own_server.data_dir / "storage" / "uploads").iterdir()) == []
    assert fsck(own_server, env=short_ttl).report["clean"]
    own_server.start()
    status = client.request("GET", location)
    OciClient.expect_error(status, 404, "BLOB_UPLOAD_UNKNOWN")
