"""Storage lifecycle on a real server: pull statistics written in batches and at a
graceful stop, project quotas refused with DENIED and freed by deletes, cleanup policies
whose dry run lists exactly what the real run deletes, proxy caches evicted by age and size.

One server serves the module (pull statistics written every 0.2 s, no scheduled cleanup),
each test in projects of its own; the tests that stop a server or schedule cleanup start
their own. Setup goes through the API (the command line costs a process start) except where
the command line is what is tested.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.integration.clients import oci_image
from tests.integration.oci_client import (
    EMPTY_JSON,
    OCI_EMPTY,
    OCI_MANIFEST,
    OciClient,
    descriptor,
    sha256,
)
from tests.integration.server import Server
from tests.integration.test_proxy import blob_rows, pull
from tests.integration.upstream import FaultRelay, ReferenceRegistry

API = "/api/v1"
DAY = 86400.0
LAYER = "application/vnd.oci.image.layer.v1.tar"
WAIT_SECONDS = 10.0
PASSWORD = "a-long-enough-password"
QUICK_PULL_STATS = {"CARGOHOLD_PULL_STATS_FLUSH_SECONDS": "0.2"}
NO_SCHEDULE = {"CARGOHOLD_CLEANUP_POLICY_INTERVAL_SECONDS": "0"}


def api(server: Server, method: str, path: str, body: Any = None) -> Any:
    response = requests.request(
        method, server.url + API + path, json=body, auth=server.admin_auth, timeout=60
    )
    assert response.ok, (response.status_code, response.text)
    return response.json()


def create_repository(server: Server, project: str, name: str, **fields: Any) -> str:
    """A repository (hosted unless `fields` say otherwise) in a project made when new."""
    if (
        requests.get(f"{server.url}{API}/projects/{project}", auth=server.admin_auth).status_code
        == 404
    ):
        api(server, "POST", "/projects", {"name": project})
    api(server, "POST", "/repos", {"project": project, "name": name, **fields})
    return f"{project}/{name}"


def create_user(server: Server, name: str, project: str, role: str) -> tuple[str, str]:
    api(server, "POST", "/users", {"name": name, "password": PASSWORD})
    api(server, "PUT", f"/projects/{project}/members/{name}", {"role": role})
    return (name, PASSWORD)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    instance = Server(tmp_path_factory.mktemp("lifecycle") / "data")
    instance.start(env={**QUICK_PULL_STATS, **NO_SCHEDULE})
    yield instance
    instance.stop()


def tags_of(server: Server, repository: str) -> dict[str, dict[str, Any]]:
    """`image:tag` -> the API's tag entry (digest, updated_at, pull statistics)."""
    listed = api(server, "GET", f"/repos/{repository}/tags")
    return {f"{entry['image']}:{entry['tag']}": entry for entry in listed}


def eventually(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():
        assert time.monotonic() < deadline, f"not within {WAIT_SECONDS}s: {what}"
        time.sleep(0.05)


def pull_counts(server: Server, repository: str) -> dict[str, int]:
    return {key: entry["pull_count"] for key, entry in tags_of(server, repository).items()}


def test_pulls_are_counted_after_a_flush_and_head_is_not_a_pull(server: Server) -> None:
    repository = create_repository(server, "pulls", "apps")
    client = OciClient(server.url, server.admin_auth)
    image = f"{repository}/app"
    pushed = client.push_image(image, tag="v1")
    client.push_image(image, tag="v2")
    before = time.time()
    for _ in range(3):
        assert client.get_manifest(image, "v1").status_code == 200
    assert client.request("HEAD", f"/v2/{image}/manifests/v2").status_code == 200
    assert client.get_manifest(image, pushed.digest).status_code == 200  # by digest
    expected = {"app:v1": 3, "app:v2": 0}
    eventually(lambda: pull_counts(server, repository) == expected, "3 pulls of v1")
    v1 = tags_of(server, repository)["app:v1"]
    assert int(before) <= v1["last_pulled_at"] <= time.time()
    assert v1["digest"] == pushed.digest
    assert tags_of(server, repository)["app:v2"]["last_pulled_at"] is None


def test_a_graceful_stop_writes_the_pulls_counted_since_the_last_flush(tmp_path: Path) -> None:
    server = Server(tmp_path / "data")
    server.start(env={"CARGOHOLD_PULL_STATS_FLUSH_SECONDS": "3600", **NO_SCHEDULE})
    try:
        repository = create_repository(server, "team", "apps")
        client = OciClient(server.url, server.admin_auth)
        client.push_image(f"{repository}/app", tag="v1")
        for _ in range(2):
            assert client.get_manifest(f"{repository}/app", "v1").status_code == 200
        assert pull_counts(server, repository) == {"app:v1": 0}
        server.stop()  # SIGTERM: the server shuts down in order
        server.start(env=NO_SCHEDULE)
        assert pull_counts(server, repository) == {"app:v1": 2}
    finally:
        server.stop()


def usage(server: Server, project: str) -> int:
    used: int = api(server, "GET", f"/projects/{project}")["usage_bytes"]
    return used


def stored(server: Server, digest: str) -> bool:
    algorithm, encoded = digest.split(":")
    return (server.data_dir / "storage" / "blobs" / algorithm / encoded[:2] / encoded).exists()


def denied(response: requests.Response, needs: str) -> str:
    entry = OciClient.error_entry(response, 403, "DENIED")
    message: str = entry["message"]
    assert message.startswith("project team quota exceeded: "), message
    assert f"needs {needs}" in message, message
    return message


def image_manifest(layers: list[bytes]) -> bytes:
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": descriptor(OCI_EMPTY, EMPTY_JSON),
            "layers": [descriptor(LAYER, layer) for layer in layers],
        }
    ).encode()


def test_a_project_quota_refuses_the_push_that_exceeds_it_and_deletes_free_it(
    server: Server,
) -> None:
    server.cli("project", "create", "team", "--quota-bytes", "10000")
    create_repository(server, "team", "apps")
    outside = create_repository(server, "other", "apps")
    client = OciClient(server.url, server.admin_auth)
    first, second = "team/apps/first", "team/apps/second"
    a, b, c, d = (os.urandom(size) for size in (4000, 4000, 4000, 1900))
    client.push_blob(first, a)
    client.push_blob(second, a)  # the project holds it already: counted once
    assert usage(server, "team") == 4000
    location = client.start_upload(first)
    assert client.patch_chunk(location, b, start=0).status_code == 202
    assert client.close_upload(location, sha256(b)).status_code == 201
    client.push_blob(first, EMPTY_JSON)
    client.push_blob(first, d)
    assert usage(server, "team") == 9902
    listed = {p["name"]: p for p in api(server, "GET", "/projects")}
    assert (listed["team"]["quota_bytes"], listed["team"]["usage_bytes"]) == (10000, 9902)

    # Refused before a byte is stored: a whole blob, a chunk, a mount, a manifest.
    too_much = client.request(
        "POST", f"/v2/{first}/blobs/uploads/", params={"digest": sha256(c)}, data=c
    )
    assert "9.7 KiB used of 9.8 KiB" in denied(too_much, "3.9 KiB")
    location = client.start_upload(first)
    denied(client.patch_chunk(location, c, start=0), "3.9 KiB")
    client.push_blob(f"{outside}/source", c)
    mount = client.request(
        "POST",
        f"/v2/{first}/blobs/uploads/",
        params={"mount": sha256(c), "from": f"{outside}/source"},
    )
    denied(mount, "3.9 KiB")
    manifest = image_manifest([a, b, d])
    denied(client.put_manifest(first, "v1", manifest), f"{len(manifest)} bytes")
    # Without a declared length, refused once the digest is known, and not kept.
    location = client.start_upload(second)
    assert client.patch_chunk(location, iter([c])).status_code == 202
    denied(client.close_upload(location, sha256(c)), "3.9 KiB")
    assert client.request("HEAD", f"/v2/{second}/blobs/{sha256(c)}").status_code == 404
    assert usage(server, "team") == 9902

    # Deleting frees: the unused blob, then the image and its blobs.
    assert client.request("DELETE", f"/v2/{first}/blobs/{sha256(d)}").status_code == 202
    assert usage(server, "team") == 8002
    pushed = client.push_manifest(first, "v1", image_manifest([a, b]))
    assert usage(server, "team") == 8002 + len(pushed.body)
    denied(
        client.request(
            "POST", f"/v2/{second}/blobs/uploads/", params={"digest": sha256(c)}, data=c
        ),
        "3.9 KiB",
    )
    assert client.request("DELETE", f"/v2/{first}/manifests/{pushed.digest}").status_code == 202
    for name, blob in ((first, a), (first, b), (second, a)):
        assert client.request("DELETE", f"/v2/{name}/blobs/{sha256(blob)}").status_code == 202
    assert usage(server, "team") == 2
    client.push_blob(second, c)
    assert usage(server, "team") == 4002
    assert stored(server, sha256(c))


def set_tag_times(
    server: Server,
    repository: str,
    image: str,
    tag: str,
    pushed_days_ago: float,
    pulled_days_ago: float | None,
) -> None:
    """Give a tag a push time and a last pull, as if it had lived that long."""
    project, name = repository.split("/")
    now = time.time()
    pulled = None if pulled_days_ago is None else now - pulled_days_ago * DAY
    changed = server.sql(
        "UPDATE tags SET updated_at = :updated, last_pulled_at = :pulled, pull_count = :count"
        " WHERE name = :tag AND image_id = (SELECT images.id FROM images"
        " JOIN repositories ON repositories.id = images.repository_id"
        " JOIN projects ON projects.id = repositories.project_id"
        " WHERE projects.name = :project AND repositories.name = :repository"
        " AND images.name = :image)",
        updated=now - pushed_days_ago * DAY,
        pulled=pulled,
        count=0 if pulled is None else 1,
        tag=tag,
        project=project,
        repository=name,
        image=image,
    ).changed
    assert changed == 1, (image, tag)


def removed(report: dict[str, Any]) -> set[tuple[str, str, str]]:
    return {(t["image"], t["tag"], t["digest"]) for t in report["deleted_tags"]}


def test_the_dry_run_lists_exactly_what_the_real_run_then_deletes(server: Server) -> None:
    repository = create_repository(server, "policies", "apps")
    keeper = create_user(server, "keeper", "policies", "maintainer")
    developer = create_user(server, "dev", "policies", "developer")
    client = OciClient(server.url, server.admin_auth)
    # (image, tag): pushed days ago, last pulled days ago (None: never)
    ages: dict[tuple[str, str], tuple[float, float | None]] = {
        ("app", "v1"): (90, 1),
        ("app", "v2"): (60, None),
        ("app", "v3"): (45, 40),
        ("app", "v4"): (20, None),
        ("app", "v5"): (5, None),
        ("app", "latest"): (100, None),
        ("base", "b1"): (80, None),
        ("base", "b2"): (70, None),
    }
    digests = {}
    for (image, tag), (pushed, pulled) in ages.items():
        digests[image, tag] = client.push_image(f"{repository}/{image}", tag=tag).digest
        set_tag_times(server, repository, image, tag, pushed, pulled)
    server.cli(
        "repo", "update", "policies", "apps", "--cleanup-keep-last", "2",
        "--cleanup-unpulled-days", "30", "--cleanup-keep", "latest",
    )  # fmt: skip
    assert api(server, "GET", f"/repos/{repository}")["cleanup_policy"] == {
        "keep_last": 2,
        "older_than_days": None,
        "unpulled_days": 30.0,
        "keep_patterns": ["latest"],
        "match_patterns": [],
    }

    path = f"{server.url}{API}/repos/{repository}/cleanup"
    refused = requests.post(path, json={"dry_run": True}, auth=developer, timeout=60)
    assert refused.status_code == 403, refused.text
    dry = requests.post(path, json={"dry_run": True}, auth=keeper, timeout=60)
    assert dry.status_code == 200, dry.text
    listed = removed(dry.json())
    # Kept: v5 and v4 (the newest two), v1 (pulled lately), latest (a kept pattern), base.
    assert listed == {("app", "v2", digests["app", "v2"]), ("app", "v3", digests["app", "v3"])}
    reasons = {t["tag"]: t["reasons"] for t in dry.json()["deleted_tags"]}
    assert reasons["v2"] == [
        "not among the 2 newest tags of app",
        "never pulled since pushed 60.0 days ago (limit 30)",
    ]
    assert dry.json()["dry_run"] is True
    assert client.tags(f"{repository}/app") == ["latest", "v1", "v2", "v3", "v4", "v5"]

    real = json.loads(server.cli("cleanup", "policies/apps", "--json").stdout)
    assert real["dry_run"] is False
    assert removed(real) == listed
    assert client.tags(f"{repository}/app") == ["latest", "v1", "v4", "v5"]
    assert client.tags(f"{repository}/base") == ["b1", "b2"]
    # Only the tags went: their manifests stay, untagged, for garbage collection.
    untagged = client.get_manifest(f"{repository}/app", digests["app", "v2"])
    assert untagged.status_code == 200
    assert api(server, "POST", f"/repos/{repository}/cleanup", {})["deleted_tags"] == []
    server.cli("repo", "update", "policies", "apps", "--no-cleanup")
    assert api(server, "GET", f"/repos/{repository}")["cleanup_policy"] is None


def test_policies_run_on_a_schedule(tmp_path: Path) -> None:
    scheduled = Server(tmp_path / "data")
    scheduled.start(env={"CARGOHOLD_CLEANUP_POLICY_INTERVAL_SECONDS": "1"})
    try:
        repository = create_repository(scheduled, "team", "apps")
        client = OciClient(scheduled.url, scheduled.admin_auth)
        client.push_image(f"{repository}/app", tag="old")
        client.push_image(f"{repository}/app", tag="new")
        api(scheduled, "PATCH", f"/repos/{repository}", {"cleanup_policy": {"keep_last": 1}})
        eventually(lambda: client.tags(f"{repository}/app") == ["new"], "old deleted")
        assert "deleted team/apps/app:old (sha256:" in scheduled.log()
        assert "cleanup of 1 repositories deleted 1 tags" in scheduled.log()
    finally:
        scheduled.stop()


def set_manifest_pulled(server: Server, digest: str, pulled_days_ago: float) -> None:
    changed = server.sql(
        "UPDATE manifests SET last_pulled_at = :pulled WHERE digest = :digest",
        pulled=time.time() - pulled_days_ago * DAY,
        digest=digest,
    ).changed
    assert changed == 1, digest


def evicted(report: dict[str, Any]) -> list[tuple[str, str]]:
    return [(e["image"], e["digest"]) for e in report["evicted_manifests"]]


@pytest.mark.clients  # the upstream is the reference registry, seeded with skopeo
def test_a_proxy_cache_is_evicted_by_age_then_by_size_and_pulled_again(
    server: Server, tmp_path: Path
) -> None:
    with ReferenceRegistry(tmp_path / "hub") as hub, FaultRelay(hub.url) as relay:
        images = {
            name: oci_image(tmp_path / "layouts" / name, "1", layers=1, layer_size=8192)
            for name in ("old", "mid", "new")
        }
        for name, image in images.items():
            hub.seed(image, f"lib/{name}")
        proxy = create_repository(
            server, "px", "cache", repository_type="proxy", remote_url=relay.url, cache_ttl=3600
        )
        client = OciClient(server.url, server.admin_auth)
        for name in images:
            pull(client, f"{proxy}/lib/{name}", "1")
        eventually(lambda: set(pull_counts(server, proxy).values()) == {1}, "pulls written")
        for name, days in (("old", 40), ("mid", 10), ("new", 1)):
            set_manifest_pulled(server, images[name].digest, days)

        server.cli("repo", "update", "px", "cache", "--cache-max-age-days", "30")
        dry = api(server, "POST", f"/repos/{proxy}/cleanup", {"dry_run": True})
        assert evicted(dry) == [("lib/old", images["old"].digest)]
        assert dry["evicted_manifests"][0]["reasons"][0].startswith("not pulled for 40.0 days")
        assert evicted(api(server, "POST", f"/repos/{proxy}/cleanup", {})) == evicted(dry)
        old_layer = images["old"].blobs[-1].digest
        assert blob_rows(server, old_layer) == (1, 0)  # unlinked: the bytes are GC's
        assert set(pull_counts(server, proxy)) == {"lib/mid:1", "lib/new:1"}

        # By size: what `new` alone holds fits; `mid`, pulled less lately, goes.
        new_bytes = images["new"].descriptor.size + sum(b.size for b in images["new"].blobs)
        limits = {"cache_max_age_days": None, "cache_max_bytes": new_bytes}
        api(server, "PATCH", f"/repos/{proxy}", limits)
        dry = api(server, "POST", f"/repos/{proxy}/cleanup", {"dry_run": True})
        assert evicted(dry) == [("lib/mid", images["mid"].digest)]
        assert evicted(api(server, "POST", f"/repos/{proxy}/cleanup", {})) == evicted(dry)
        assert set(pull_counts(server, proxy)) == {"lib/new:1"}

        # The next pull fetches from the upstream again.
        relay.reset_counts()
        again = pull(client, f"{proxy}/lib/old", "1")
        assert again.digest == images["old"].digest
        assert relay.count("GET", "/v2/lib/old/manifests/.*") == 1
        assert relay.count("GET", f"/v2/lib/old/blobs/{old_layer}") == 1
        assert blob_rows(server, old_layer) == (1, 1)
