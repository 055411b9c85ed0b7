"""Garbage collection on a real server: `cargohold gc` and `POST /api/v1/gc` report in a dry
run exactly what a run then deletes, only system administrators may collect through the
API, images still pull whole afterwards; and collections running again and again with no
grace period during a skopeo push workload that shares layers with deleted images never
leave a pushed image incomplete."""

from __future__ import annotations

import json
import os
import random
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.integration.clients import ClientError, OciImage, Skopeo, oci_image_of, random_layer
from tests.integration.oci_client import EMPTY_JSON, OciClient, Pushed, sha256
from tests.integration.server import Server
from tests.integration.test_fsck import layers_of, pull_whole
from tests.integration.test_lifecycle import image_manifest

NO_GRACE = {"CARGOHOLD_GC_GRACE_SECONDS": "0"}


@dataclass
class Gc:
    code: int
    report: dict[str, Any]
    summary: str


def gc(server: Server, *options: str) -> Gc:
    """Run `cargohold gc --json` as an operator would; the report is on stdout."""
    done = server.cli("gc", "--json", *options, check=False)
    return Gc(done.returncode, json.loads(done.stdout) if done.stdout else {}, done.stderr)


def api_gc(server: Server, auth: tuple[str, str] | None, dry_run: bool) -> requests.Response:
    return requests.post(
        f"{server.url}/api/v1/gc", json={"dry_run": dry_run}, auth=auth, timeout=60
    )


def without_timing(report: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in report.items() if key not in ("dry_run", "seconds")}


@dataclass
class Garbage:
    kept: list[tuple[str, Pushed]]
    # Digests of the layers only the removed images used.
    dropped_layers: list[str]


def make_garbage(server: Server, client: OciClient) -> Garbage:
    """In `test/hosted` (which keeps untagged manifests): an image deleted, one untagged;
    in `test/pruned` (which deletes them): one untagged, one an index keeps."""
    server.cli("repo", "create", "test", "pruned", "--untagged-manifests", "delete")
    deleted, untagged_kept = server.unique_name(), server.unique_name()
    untagged_gone, indexed = (server.unique_name("test/pruned") for _ in range(2))
    gone = client.push_image(deleted, layers=2)
    assert client.request("DELETE", f"/v2/{deleted}/manifests/{gone.digest}").status_code == 202
    kept_untagged = client.push_image(untagged_kept, tag=None)
    pruned = client.push_image(untagged_gone)
    assert client.request("DELETE", f"/v2/{untagged_gone}/manifests/latest").status_code == 202
    child = client.push_image(indexed, tag=None)
    client.push_index(indexed, [child], tag="multi")
    return Garbage(
        [(untagged_kept, kept_untagged), (indexed, child)], layers_of(gone) + layers_of(pruned)
    )


def test_a_dry_run_lists_what_the_command_then_deletes(own_server: Server) -> None:
    client = OciClient(own_server.url, own_server.admin_auth)
    garbage = make_garbage(own_server, client)

    dry = gc(own_server, "--dry-run", "--grace-seconds", "0")
    assert dry.code == 0, dry.summary
    assert dry.report["dry_run"] and "dry run: would remove 1 manifests" in dry.summary
    assert sorted(blob["digest"] for blob in dry.report["blobs"]) == sorted(garbage.dropped_layers)
    assert all(own_server.blobs.read(digest) is not None for digest in garbage.dropped_layers)
    assert gc(own_server).report["files"] == 0, "the default grace period protects them"

    done = gc(own_server, "--grace-seconds", "0")
    assert done.code == 0, done.summary
    assert without_timing(done.report) == without_timing(dry.report)
    # Three layers of 1 KiB and the untagged manifest.
    assert done.report["files"] == 4 and done.report["bytes_freed"] > 3 * 1024
    assert all(own_server.blobs.read(digest) is None for digest in garbage.dropped_layers)
    for name, image in garbage.kept:
        pull_whole(client, name, image)
    assert gc(own_server, "--grace-seconds", "0").report["links"] == 0


def test_deleting_and_collecting_frees_a_projects_quota(own_server: Server) -> None:
    """Pushes up to the quota succeed and the next is refused; deleting the image's manifest
    alone frees little (its blobs stay linked until collected); collecting frees the rest."""
    own_server.cli("project", "create", "quota", "--quota-bytes", "10000")
    own_server.create_repository("quota", "apps")
    client = OciClient(own_server.url, own_server.admin_auth)
    name = "quota/apps/app"
    a, b, c = (os.urandom(4000) for _ in range(3))
    for blob in (EMPTY_JSON, a, b):
        client.push_blob(name, blob)
    pushed = client.push_manifest(name, "v1", image_manifest([a, b]))

    def push_c() -> requests.Response:
        return client.request(
            "POST", f"/v2/{name}/blobs/uploads/", params={"digest": sha256(c)}, data=c
        )

    message = OciClient.error_entry(push_c(), 403, "DENIED")["message"]
    assert message.startswith("project quota quota exceeded"), message
    assert client.request("DELETE", f"/v2/{name}/manifests/{pushed.digest}").status_code == 202
    OciClient.error_entry(push_c(), 403, "DENIED")

    collected = gc(own_server, "--grace-seconds", "0")
    assert collected.code == 0 and len(collected.report["blobs"]) == 3, collected.summary
    assert push_c().status_code == 201
    client.push_blob(name, EMPTY_JSON)  # collected with the rest
    client.push_manifest(name, "v2", image_manifest([c]))


def test_the_api_collects_for_system_administrators_only(tmp_path: Path) -> None:
    server = Server(tmp_path / "data")
    server.create_repository("test", "hosted")
    server.start(env=NO_GRACE)
    try:
        server.create_user("alice", "alice-password-1234", role_in={"test": "admin"})
        client = OciClient(server.url, server.admin_auth)
        garbage = make_garbage(server, client)
        assert api_gc(server, None, dry_run=True).status_code == 401
        refused = api_gc(server, ("alice", "alice-password-1234"), dry_run=True)
        assert refused.status_code == 403, refused.text

        dry = api_gc(server, server.admin_auth, dry_run=True)
        assert dry.status_code == 200, dry.text
        assert all(server.blobs.read(digest) is not None for digest in garbage.dropped_layers)
        done = api_gc(server, server.admin_auth, dry_run=False)
        assert done.status_code == 200, done.text
        assert without_timing(done.json()) == without_timing(dry.json())
        assert all(server.blobs.read(digest) is None for digest in garbage.dropped_layers)
        for name, image in garbage.kept:
            pull_whole(client, name, image)

        # The policy is a repository field of the API too.
        policy = requests.patch(
            f"{server.url}/api/v1/repos/test/pruned",
            json={"untagged_manifests": "keep"},
            auth=server.admin_auth,
            timeout=60,
        )
        assert policy.status_code == 200 and policy.json()["untagged_manifests"] == "keep"

        with held_lease(server):
            busy = api_gc(server, server.admin_auth, dry_run=False)
            assert busy.status_code == 409 and "is running" in busy.json()["message"]
            cli = gc(server)
            assert cli.code == 1 and "a garbage collection is running" in cli.summary
    finally:
        server.stop()


@contextmanager
def held_lease(server: Server) -> Iterator[None]:
    """Another node collecting: its lease in the database."""
    server.sql("DELETE FROM maintenance_leases")
    server.sql(
        "INSERT INTO maintenance_leases (name, holder, expires_at) VALUES (:name, :holder, :until)",
        name="garbage-collection",
        holder="node-b:42",
        until=time.time() + 600,
    )
    try:
        yield
    finally:
        server.sql("DELETE FROM maintenance_leases")


# Collecting during a push workload

ROUNDS = 5
PUSHERS = 4
PUSH_ATTEMPTS = 20
# Collections come this often: often enough to hit pushes in flight, seldom enough to let a
# push through now and then (with no grace period, a collection between a blob's upload and
# its manifest refuses the push).
PAUSE_SECONDS = (0.1, 0.6)


@dataclass(frozen=True)
class Pushing:
    name: str
    image: OciImage


class Collectors:
    """Collections with no grace period, again and again until stopped: through the API
    (in the server's process) and the command line (another process)."""

    def __init__(self, server: Server) -> None:
        self._server = server
        self._stop = threading.Event()
        self.collected = 0
        self.errors: list[str] = []
        self._threads = [
            threading.Thread(target=self._loop, args=(self._through_api,)),
            threading.Thread(target=self._loop, args=(self._through_cli,)),
        ]

    def __enter__(self) -> Collectors:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=120)

    def _loop(self, collect: Any) -> None:
        while not self._stop.is_set():
            collect()
            self._stop.wait(random.uniform(*PAUSE_SECONDS))

    def _through_api(self) -> None:
        response = api_gc(self._server, self._server.admin_auth, dry_run=False)
        if response.status_code == 200:
            self.collected += len(response.json()["blobs"])
        elif response.status_code != 409:
            self.errors.append(f"API: {response.status_code} {response.text}")

    def _through_cli(self) -> None:
        done = gc(self._server, "--grace-seconds", "0")
        if done.code == 0:
            self.collected += len(done.report["blobs"])
        elif "is running" not in done.summary:
            self.errors.append(f"CLI: {done.summary}")


def push(skopeo: Skopeo, server: Server, pushing: Pushing, refusals: list[str]) -> None:
    """Push with skopeo; a push whose blobs were collected between their upload and the
    manifest is refused (MANIFEST_BLOB_UNKNOWN) and pushed again, as a client would."""
    for _ in range(PUSH_ATTEMPTS):
        try:
            skopeo.copy(
                pushing.image.ref,
                f"docker://{server.host}/{pushing.name}:v1",
                dest_creds=server.admin_creds,
            )
            return
        except ClientError as error:
            assert "blob unknown" in str(error).lower(), error
            refusals.append(pushing.name)
    raise AssertionError(f"{pushing.name} was refused {PUSH_ATTEMPTS} times")


def pulled_whole(skopeo: Skopeo, server: Server, pushing: Pushing, layout: Path) -> None:
    """Pull with skopeo into an OCI layout; every blob is the one pushed, byte for byte."""
    layout.mkdir(parents=True)
    skopeo.copy(
        f"docker://{server.host}/{pushing.name}:v1",
        f"oci:{layout}:v1",
        src_creds=server.admin_creds,
    )
    index = json.loads((layout / "index.json").read_text())
    assert [entry["digest"] for entry in index["manifests"]] == [pushing.image.digest]
    for descriptor in (pushing.image.descriptor, *pushing.image.blobs):
        encoded = descriptor.digest.removeprefix("sha256:")
        pulled = (layout / "blobs" / "sha256" / encoded).read_bytes()
        assert pulled == pushing.image.read_blob(descriptor.digest), descriptor.digest


def test_collecting_during_pushes_of_shared_layers_never_breaks_an_image(
    tmp_path: Path,
) -> None:
    skopeo = Skopeo(tmp_path / "skopeo")
    server = Server(tmp_path / "data")
    if server.on_object_storage:
        pytest.skip(
            "timed for local disks: with no grace period, a push slowed by the test S3 server"
            " meets a collection between its blobs and its manifest every time it is tried"
        )
    server.create_repository("test", "hosted")
    server.cli("repo", "update", "test", "hosted", "--untagged-manifests", "delete")
    server.start(env={**NO_GRACE, "CARGOHOLD_GC_INTERVAL_SECONDS": "1"})
    client = OciClient(server.url, server.admin_auth)
    kept: list[Pushing] = []
    victims: list[Pushing] = []
    refusals: list[str] = []
    collected = 0

    def image(shared: bytes) -> Pushing:
        name = server.unique_name()
        layout = tmp_path / "layouts" / name.rsplit("/", 1)[1]
        return Pushing(name, oci_image_of(layout, "v1", [shared, random_layer(seed=None)]))

    try:
        with ThreadPoolExecutor(PUSHERS) as pool:
            for round_number in range(ROUNDS + 1):
                # This round's images share a layer each with last round's victims, which
                # are deleted now, so that collections remove what the pushes upload.
                shared_layers = [
                    victim.image.read_blob(victim.image.blobs[0].digest) for victim in victims
                ] or [random_layer() for _ in range(PUSHERS)]
                for victim in victims:
                    untagged = client.request("DELETE", f"/v2/{victim.name}/manifests/v1")
                    assert untagged.status_code == 202, untagged.text
                survivors = [image(shared) for shared in shared_layers]
                victims = (
                    [image(random_layer()) for _ in range(PUSHERS)] if round_number < ROUNDS else []
                )
                with Collectors(server) as collectors:
                    list(
                        pool.map(
                            lambda pushing: push(skopeo, server, pushing, refusals),
                            [*survivors, *victims],
                        )
                    )
                assert collectors.errors == []
                collected += collectors.collected
                kept.extend(survivors)
        final = api_gc(server, server.admin_auth, dry_run=False)
        assert final.status_code == 200, final.text
        assert collected + len(final.json()["blobs"]) >= ROUNDS * PUSHERS, "victims stayed"
        for number, pushing in enumerate(kept):
            pulled_whole(skopeo, server, pushing, tmp_path / "pulled" / str(number))
        print(f"{len(kept)} images pulled whole; {len(refusals)} pushes refused and retried")
    finally:
        server.stop()
