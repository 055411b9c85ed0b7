"""`cargohold copy`: an installation on SQLite and a folder, filled by a real server, copied
into PostgreSQL and an S3 bucket (moto), then served from there: every row, every byte,
every secret and the signing key arrive; bad source blobs are reported by digest and a
second run resumes; what cannot be copied is refused with one line."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import JSON

from cargohold.db.transfer import tables_in_copy_order
from tests.integration.auth_support import (
    bearer,
    cli,
    create_robot,
    create_user,
    fetch_token,
    repository_scope,
)
from tests.integration.clients import free_port
from tests.integration.oci_client import OCI_MANIFEST, OciClient, Pushed, descriptor, sha256
from tests.integration.postgres import Postgres
from tests.integration.server import Server
from tests.s3server import S3Server

IMAGE = "common/hosted/app"
DEV_PASSWORD = "dev-password-kept-across"
CHUNK = 256 * 1024
LARGE_BLOB = 256 * 1024 * 1024
# A process of the command line with its libraries, plus a few parts in flight: far below
# the large blob, which would show if it were held whole.
PEAK_RSS_LIMIT = 200 * 1024 * 1024


@dataclass
class Source:
    server: Server
    images: list[Pushed]
    robot_key: str
    token: str  # issued by the source's server before the copy
    upload: str  # the path of an upload session in progress
    upload_bytes: bytes


def _content(server: Server) -> list[tuple[str, str, str]]:
    """Every manifest and blob the server's rows describe: (kind, image name, digest)."""
    image = (
        "SELECT p.name || '/' || r.name || '/' || i.name FROM images i"
        " JOIN repositories r ON r.id = i.repository_id JOIN projects p ON p.id = r.project_id"
        " WHERE i.id = x.image_id"
    )
    return [
        (str(kind), str(name), str(digest))
        for kind, name, digest in server.sql(
            f"SELECT 'manifests', ({image}), x.digest FROM manifests x"
            f" UNION ALL SELECT 'blobs', ({image}), x.digest FROM image_blobs x ORDER BY 3, 1, 2"
        ).rows
    ]


def _rows(server: Server) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, in primary key order, as stored: JSON as its text (SQL NULL
    and JSON null apart), booleans as 0 and 1 (as SQLite answers them)."""
    found = {}
    for table in tables_in_copy_order():
        columns = ", ".join(
            f"CAST({column.name} AS TEXT)" if isinstance(column.type, JSON) else column.name
            for column in table.columns
        )
        key = ", ".join(column.name for column in table.primary_key.columns)
        rows = server.sql(f"SELECT {columns} FROM {table.name} ORDER BY {key}").rows
        found[table.name] = [
            tuple(int(value) if isinstance(value, bool) else value for value in row) for row in rows
        ]
    return found


def _stored_files(server: Server) -> dict[str, str]:
    return {
        key: hashlib.sha256(data).hexdigest()
        for folder in ("blobs", "uploads")
        for key, data in server.blobs.under(folder).items()
    }


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Source]:
    """A stopped server on SQLite and a folder, with content in every table."""
    server = Server(tmp_path_factory.mktemp("copy") / "source")
    if server.database_url is not None or server.on_object_storage:
        pytest.skip("the copy's source is SQLite and a folder: the main pass runs this")
    cli(server, "project", "create", "common", "--quota-bytes", "1GiB")
    cli(server, "repo", "create", "common", "hosted", "--type", "hosted")
    cli(server, "repo", "update", "common", "hosted", "--cleanup-keep-last", "5")
    cli(
        server,
        *("repo", "create", "common", "proxy", "--type", "proxy"),
        *("--remote-url", "http://127.0.0.1:9", "--flat-alias-prefix", "common/external/"),
    )
    create_user(server, "dev", DEV_PASSWORD, role_in={"common": "developer"})
    robot_key = create_robot(server, "ci", "common=pull,push")
    server.start()
    try:
        client = OciClient(server.url, server.admin_auth)
        first = client.push_image(IMAGE, "v1", layers=2)
        moved = client.push_image(IMAGE, "v1", layers=1)  # v1 moves; `first` stays untagged
        # A layer sent in chunks, as docker does, large enough to be streamed by the copy.
        layer = os.urandom(6 * CHUNK + 100)
        location = client.start_upload(IMAGE)
        for start in range(0, len(layer), CHUNK):
            assert client.patch_chunk(location, layer[start : start + CHUNK]).status_code == 202
        assert client.close_upload(location, sha256(layer)).status_code == 201
        chunked = client.push_manifest(
            IMAGE,
            "chunked",
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": json.loads(first.body)["config"],
                "layers": [descriptor("application/vnd.oci.image.layer.v1.tar", layer)],
            },
        )
        index = client.push_index(IMAGE, [first, moved], tag="multi")
        referrer = client.push_image(
            IMAGE,
            tag=None,
            subject=descriptor("application/vnd.oci.image.index.v1+json", index.body),
            artifactType="application/vnd.example.sbom",
        )
        assert client.get_manifest(IMAGE, "v1").status_code == 200  # a pull to count
        upload_bytes = os.urandom(1000)
        upload = client.start_upload(IMAGE)
        assert client.patch_chunk(upload, upload_bytes).status_code == 202
        token = fetch_token(server, ("dev", DEV_PASSWORD), [repository_scope(IMAGE, "pull")])
    finally:
        server.stop()  # pulls counted are written as it stops
    assert server.sql("SELECT sum(pull_count) FROM manifests").rows == [(1,)]
    yield Source(
        server, [first, moved, chunked, index, referrer], robot_key, token, upload, upload_bytes
    )


def _target(
    tmp_path: Path, s3_server: S3Server, database_url: str, bucket: str | None = None
) -> Server:
    """A server over PostgreSQL and a bucket (not started), whose commands copy into them."""
    return Server(
        tmp_path / "target",
        database_url=database_url,
        blob_store=s3_server.settings(bucket or s3_server.create_bucket()),
    )


def _copy(target: Server, source: Source) -> tuple[int, dict[str, Any], str]:
    """`cargohold copy --json` from the source into the target: status, report, stderr."""
    code, out, err = target.cli_in_this_process(
        "copy", "--from-data-dir", str(source.server.data_dir), "--json"
    )
    return code, json.loads(out) if out else {}, err


def _refusal(target: Server, source_data_dir: Path) -> str:
    """The one line of a copy into `target` that is refused."""
    code, out, err = target.cli_in_this_process("copy", "--from-data-dir", str(source_data_dir))
    assert code == 1 and out == "", (code, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cargohold: "), err
    return lines[0]


def test_a_copy_into_postgresql_and_s3_serves_everything_as_before(
    source: Source, database: Postgres, s3_server: S3Server, tmp_path: Path
) -> None:
    rows_before, files_before = _rows(source.server), _stored_files(source.server)
    content = _content(source.server)
    target = _target(tmp_path, s3_server, database.create_database(migrated=False))

    code, report, err = _copy(target, source)

    assert code == 0, err
    assert report["ok"] and report["bad"] == [] and report["mismatches"] == []
    described = {digest for _, _, digest in content}
    assert report["blobs"] == len(described) == report["blobs_copied"]
    assert report["blobs_present"] == 0 and report["uploads_copied"] == 1
    assert report["rows"] == {table: len(rows) for table, rows in rows_before.items()}
    assert "everything matches" in err
    assert _rows(target) == rows_before  # every row of every table, keys and all
    assert (_rows(source.server), _stored_files(source.server)) == (rows_before, files_before)

    target.start()
    try:
        client = OciClient(target.url, target.admin_auth)
        for kind, name, digest in content:
            answer = client.request("GET", f"/v2/{name}/{kind}/{digest}")
            assert answer.status_code == 200, (kind, name, digest, answer.text)
            assert answer.content == source.server.blobs.read(digest)
            assert sha256(answer.content) == digest
        assert client.tags(IMAGE) == ["chunked", "multi", "v1"]
        assert client.get_manifest(IMAGE, "v1").content == source.images[1].body
        referrers = client.request("GET", f"/v2/{IMAGE}/referrers/{source.images[3].digest}")
        assert [entry["digest"] for entry in referrers.json()["manifests"]] == [
            source.images[4].digest
        ]
        # Signed by the source's key before the copy: the target verifies it.
        old_token = requests.get(
            f"{target.url}/v2/{IMAGE}/manifests/v1", headers=bearer(source.token), timeout=30
        )
        assert old_token.status_code == 200
        for account in (("dev", DEV_PASSWORD), ("sa$ci", source.robot_key)):
            token = fetch_token(target, account, [repository_scope(IMAGE, "pull")])
            pulled = requests.get(
                f"{target.url}/v2/{IMAGE}/manifests/v1", headers=bearer(token), timeout=30
            )
            assert pulled.status_code == 200, account
        # The upload in progress goes on where it stopped.
        finished = client.close_upload(source.upload, sha256(source.upload_bytes))
        assert finished.status_code == 201, finished.text
        # New rows take ids past the copied ones (PostgreSQL's sequences were set).
        client.push_image("common/hosted/new", "v1", layers=2)
        cli(target, "project", "create", "after-copy")
        cli(target, "repo", "create", "after-copy", "hosted", "--type", "hosted")
        create_user(target, "newcomer", "newcomer-password", role_in={"after-copy": "developer"})
        new_key = create_robot(target, "deploy", "after-copy=pull")
        fetch_token(target, ("newcomer", "newcomer-password"))
        fetch_token(target, ("sa$deploy", new_key))
    finally:
        target.stop()
    fsck = target.cli("fsck", "--json", check=False)
    assert fsck.returncode == 0 and json.loads(fsck.stdout)["clean"], fsck.stderr


def _layers(pushed: Pushed) -> list[str]:
    return [layer["digest"] for layer in json.loads(pushed.body)["layers"]]


def test_bad_source_blobs_are_reported_and_the_copy_runs_again_once_they_are_fixed(
    source: Source, database: Postgres, s3_server: S3Server, tmp_path: Path
) -> None:
    # A large blob (streamed) altered, a small one (read whole) gone.
    altered, deleted = _layers(source.images[2])[0], _layers(source.images[0])[0]
    target = _target(tmp_path, s3_server, database.create_database())
    bucket = target.blobs
    originals = {digest: source.server.blobs.read(digest) for digest in (altered, deleted)}
    try:
        kept = originals[altered]
        assert kept is not None
        source.server.blobs.write(altered, bytes([kept[0] ^ 0xFF]) + kept[1:])
        source.server.blobs.delete(deleted)

        code, report, err = _copy(target, source)

        assert code == 1
        reasons = {bad["digest"]: bad["reason"] for bad in report["bad"]}
        assert set(reasons) == {altered, deleted}
        assert reasons[altered].startswith("the source's bytes hash to sha256:")
        assert reasons[deleted] == "the source store does not hold it"
        assert f"bad: {altered}: the source's bytes hash to sha256:" in err
        assert f"bad: {deleted}: the source store does not hold it" in err
        assert not report["ok"] and report["rows"] == {}
        assert target.sql("SELECT count(*) FROM projects").rows == [(0,)]  # no rows yet
        assert bucket.read(altered) is None and bucket.read(deleted) is None
        # Nothing of the refused stream is left; the session in progress was copied.
        sessions = {key.split("/")[2] for key in bucket.under("uploads")}
        assert sessions == {source.upload.rsplit("/", 1)[-1]}
        copied = report["blobs_copied"]
        assert copied == report["blobs"] - 2
        intact = _layers(source.images[1])[0]
        assert bucket.read(intact) == source.server.blobs.read(intact)
    finally:
        for digest, data in originals.items():
            assert data is not None
            source.server.blobs.write(digest, data)

    code, report, err = _copy(target, source)

    assert code == 0, err
    assert (report["blobs_copied"], report["blobs_present"]) == (2, copied)
    assert report["uploads_copied"] == 0 and report["uploads_present"] == 1
    assert report["ok"] and bucket.read(altered) == originals[altered]


def test_a_target_database_that_holds_rows_is_refused(
    source: Source, database: Postgres, s3_server: S3Server, tmp_path: Path
) -> None:
    target = _target(tmp_path, s3_server, database.create_database())
    cli(target, "project", "create", "already-here")
    line = _refusal(target, source.server.data_dir)
    assert "the target database already holds rows (1 in projects" in line, line
    assert "new, empty database" in line


def test_an_unreachable_target_database_or_a_missing_bucket_is_refused(
    source: Source, database: Postgres, s3_server: S3Server, tmp_path: Path
) -> None:
    nowhere = f"postgresql://postgres@127.0.0.1:{free_port()}/cargohold"
    line = _refusal(_target(tmp_path, s3_server, nowhere), source.server.data_dir)
    assert f"the target database ({nowhere}) cannot be reached" in line, line

    target = _target(tmp_path, s3_server, database.create_database(), bucket="no-such-bucket")
    line = _refusal(target, source.server.data_dir)
    assert "the target blob store (s3://no-such-bucket/registry/ at" in line, line
    assert "does not answer" in line, line


def test_the_source_as_target_is_refused(source: Source, tmp_path: Path) -> None:
    line = _refusal(source.server, source.server.data_dir)
    assert "the source and the target are the same database" in line, line
    settings = tmp_path / "old.toml"
    settings.write_text(f'data_dir = "{source.server.data_dir}"\n')
    code, _, err = source.server.cli_in_this_process("copy", "--from-config", str(settings))
    assert code == 1 and "the source and the target are the same database" in err, err


def test_a_source_behind_the_newest_schema_is_refused(
    database: Postgres, s3_server: S3Server, tmp_path: Path
) -> None:
    old = Server(tmp_path / "old")
    cli(old, "migrate")
    old.sql("UPDATE alembic_version SET version_num = '0007'")
    line = _refusal(_target(tmp_path, s3_server, database.create_database()), old.data_dir)
    assert "the source's schema is at revision 0007" in line, line
    assert "run `cargohold migrate`" in line, line


def _peak_rss(pid: int) -> int | None:
    """The process's peak resident memory so far; None once it has ended."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return None
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return None  # a process that ended, not yet waited for


def test_a_large_blob_streams_through_with_flat_memory(
    database: Postgres, s3_server: S3Server, tmp_path: Path
) -> None:
    server = Server(tmp_path / "large")
    server.create_repository("big", "hosted")
    server.start()
    try:
        data = os.urandom(LARGE_BLOB)
        OciClient(server.url, server.admin_auth).push_blob("big/hosted/blob", data)
        del data
    finally:
        server.stop()
    target = _target(tmp_path, s3_server, database.create_database())
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "cargohold", "copy", "--json"),
            *("--from-data-dir", str(server.data_dir), "--data-dir", str(target.data_dir)),
        ],
        env={**os.environ, **target.env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    peak = 0
    deadline = time.monotonic() + 120
    while process.poll() is None and time.monotonic() < deadline:
        peak = max(peak, _peak_rss(process.pid) or 0)
        time.sleep(0.05)
    if process.poll() is None:
        process.kill()
    out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err.decode()
    report = json.loads(out)
    assert report["bytes_copied"] == report["bytes_verified"] >= LARGE_BLOB
    assert 0 < peak < PEAK_RSS_LIMIT, f"peak RSS {peak / 2**20:.0f} MiB"
