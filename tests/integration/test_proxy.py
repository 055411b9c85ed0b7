"""Proxy repositories at the protocol level: a Cargohold in front of real upstreams (the
reference registry open, behind htpasswd and behind a token server, and a second Cargohold),
counted and broken by FaultRelays.

One proxy server serves the whole module, started with a short upstream timeout and a short
negative cache, and with the shared relay `hub_relay` taken for Docker Hub. Each test makes
its own proxy repository (and most their own relay and upstream image), so that its counts
and its faults are its own.
"""

from __future__ import annotations

import json
import re
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from cargohold.registry.content import stripe
from cargohold.registry.singleflight import FileLocks
from tests.integration.clients import (
    Descriptor,
    OciImage,
    Skopeo,
    oci_image,
    oci_index,
    wait_until,
)
from tests.integration.oci_client import OCI_INDEX, OCI_MANIFEST, OciClient, descriptor, sha256
from tests.integration.server import Server
from tests.integration.upstream import (
    BLOB_PATH,
    MANIFEST_PATH,
    FaultRelay,
    ReferenceRegistry,
    TokenServer,
)

pytestmark = pytest.mark.clients  # the upstreams are real registries, seeded with skopeo

TTL = 2
"""cache_ttl of the proxy repositories, in seconds."""
NOT_FOUND_SECONDS = 2
TIMEOUT_SECONDS = 1
SLOW_SECONDS = 4.0
"""How long a slow upstream takes: well beyond the proxy's timeout."""
PROJECT = "px"
LAYER = 16 * 1024

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
ACCEPT = {"Accept": ", ".join((OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST))}
WARNING = re.compile(r'299 - "[^"]+"')


# --- helpers ----------------------------------------------------------------------------------


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


def sleep_until(moment: float) -> None:
    delay = moment - time.monotonic()
    if delay > 0:
        time.sleep(delay)


def api(server: Server, method: str, path: str, body: Any = None) -> Any:
    response = requests.request(
        method, f"{server.url}/api/v1{path}", json=body, auth=server.admin_auth, timeout=30
    )
    assert response.status_code in (200, 201, 204), (method, path, response.text)
    return response.json() if response.content else None


def new_proxy(
    server: Server,
    remote_url: str,
    *,
    ttl: int = TTL,
    user: str | None = None,
    password: str | None = None,
) -> str:
    """A new proxy repository of `remote_url` in the project `px`; returns its prefix."""
    name = unique("r-")
    body: dict[str, Any] = {
        "project": PROJECT,
        "name": name,
        "repository_type": "proxy",
        "remote_url": remote_url,
        "cache_ttl": ttl,
    }
    if user is not None:
        body |= {"upstream_username": user, "upstream_password": password}
    created = api(server, "POST", "/repos", body)
    assert created["repository_type"] == "proxy"
    assert "upstream_password" not in created
    return f"{PROJECT}/{name}"


def small_image(layout: Path, tag: str, *, layer_size: int = LAYER, layers: int = 1) -> OciImage:
    return oci_image(layout, tag, layers=layers, layer_size=layer_size)


def blobs_of(image: OciImage, manifest_digest: str) -> list[str]:
    """The config and layers of one image manifest of `image`, in order."""
    manifest = json.loads(image.read_blob(manifest_digest))
    return [manifest["config"]["digest"], *(layer["digest"] for layer in manifest["layers"])]


def put_tag(registry: ReferenceRegistry, name: str, tag: str, image: OciImage) -> None:
    """Point `tag` at `image` upstream (whose blobs `name` already holds): one quick PUT."""
    response = registry.request(
        "PUT",
        f"/v2/{name}/manifests/{tag}",
        data=image.read_blob(image.digest),
        headers={"Content-Type": image.descriptor.media_type},
        scope_actions="pull,push",
    )
    assert response.status_code == 201, response.text


def get_manifest(oci: OciClient, name: str, reference: str, **params: str) -> requests.Response:
    return oci.request("GET", f"/v2/{name}/manifests/{reference}", headers=ACCEPT, params=params)


def get_blob(oci: OciClient, name: str, digest: str, **params: str) -> requests.Response:
    return oci.request("GET", f"/v2/{name}/blobs/{digest}", params=params)


def manifest_digest(oci: OciClient, name: str, reference: str) -> str:
    response = get_manifest(oci, name, reference)
    assert response.status_code == 200, response.text
    assert response.headers["Docker-Content-Digest"] == sha256(response.content)
    digest: str = response.headers["Docker-Content-Digest"]
    return digest


@dataclass
class Pulled:
    digest: str
    manifests: list[str]
    blobs: list[str]


def pull(oci: OciClient, name: str, reference: str, *, architecture: str = "amd64") -> Pulled:
    """Pull like a client: the manifest, the child of `architecture` of an index, then the
    config and layers; every body is checked against its digest."""
    response = get_manifest(oci, name, reference)
    assert response.status_code == 200, (name, reference, response.text)
    digest = sha256(response.content)
    assert response.headers["Docker-Content-Digest"] == digest
    document = response.json()
    pulled = Pulled(digest, [digest], [])
    if "manifests" in document:
        for child in document["manifests"]:
            if child["platform"]["architecture"] == architecture:
                inner = pull(oci, name, child["digest"])
                pulled.manifests += inner.manifests
                pulled.blobs += inner.blobs
        return pulled
    for blob in [document["config"], *document["layers"]]:
        body = get_blob(oci, name, blob["digest"])
        assert body.status_code == 200, body.text
        assert sha256(body.content) == blob["digest"]
        pulled.blobs.append(blob["digest"])
    return pulled


def read_blob_stream(oci: OciClient, name: str, digest: str) -> tuple[int, int, Exception | None]:
    """GET a blob, reading what arrives: (announced length, bytes received, error if the
    transfer broke off)."""
    response = oci.http.get(oci.url(f"/v2/{name}/blobs/{digest}"), stream=True, timeout=30)
    assert response.status_code == 200, response.text
    announced = int(response.headers["Content-Length"])
    received = 0
    try:
        for chunk in response.iter_content(4096):
            received += len(chunk)
    except requests.RequestException as error:
        return announced, received, error
    finally:
        response.close()
    return announced, received, None


def blob_rows(server: Server, digest: str) -> tuple[int, int]:
    """(rows of `blobs`, rows of `image_blobs`) for the digest in the proxy's metadata."""
    [(known,)] = server.sql("SELECT count(*) FROM blobs WHERE digest = :d", d=digest).rows
    [(linked,)] = server.sql("SELECT count(*) FROM image_blobs WHERE digest = :d", d=digest).rows
    return int(known), int(linked)


def no_uploads_left(server: Server) -> None:
    wait_until(
        lambda: not server.blobs.under("uploads"), timeout=5, what="partial downloads removed"
    )


def wait_for_event(server: Server, event: str, name: str) -> None:
    """The proxy logged `proxy event=EVENT name=NAME`."""
    line = f"proxy event={event} name={name} "
    wait_until(lambda: line in server.log(), timeout=5, what=f"log line {line!r}", interval=0.05)


# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("proxy")


@pytest.fixture(scope="module")
def hub(workdir: Path) -> Iterator[ReferenceRegistry]:
    """The open reference registry: the upstream of most tests."""
    with ReferenceRegistry(workdir / "hub") as registry:
        yield registry


@pytest.fixture(scope="module")
def hub_relay(hub: ReferenceRegistry) -> Iterator[FaultRelay]:
    """A relay to `hub` that the proxy server takes for Docker Hub."""
    with FaultRelay(hub.url) as relay:
        yield relay


@pytest.fixture(scope="module")
def cargohold(workdir: Path, hub_relay: FaultRelay) -> Iterator[Server]:
    """The proxy server, with the repository `px/hub`: a proxy of Docker Hub (`hub_relay`)
    made with the command line."""
    server = Server(workdir / "proxy-data")
    server.cli("project", "create", PROJECT)
    server.cli(
        "repo", "create", PROJECT, "hub", "--type", "proxy",
        "--remote-url", hub_relay.url, "--cache-ttl", str(TTL),
    )  # fmt: skip
    server.start(
        env={
            "CARGOHOLD_DOCKER_HUB_HOSTS": hub_relay.host,
            "CARGOHOLD_PROXY_TIMEOUT_SECONDS": str(TIMEOUT_SECONDS),
            "CARGOHOLD_PROXY_NOT_FOUND_SECONDS": str(NOT_FOUND_SECONDS),
        }
    )
    yield server
    server.stop()


@pytest.fixture(scope="module")
def hub_proxy(cargohold: Server) -> str:
    return f"{PROJECT}/hub"


@pytest.fixture
def oci(cargohold: Server) -> OciClient:
    return OciClient(cargohold.url, cargohold.admin_auth)


@pytest.fixture
def relay(hub: ReferenceRegistry) -> Iterator[FaultRelay]:
    """A relay to `hub` of the test's own, for its counts and its faults."""
    with FaultRelay(hub.url) as instance:
        yield instance


# --- names: Docker Hub's library/ rule --------------------------------------------------------


def test_docker_hub_single_name_is_library_and_index_children_come_on_demand(
    hub: ReferenceRegistry,
    hub_relay: FaultRelay,
    hub_proxy: str,
    cargohold: Server,
    oci: OciClient,
    workdir: Path,
) -> None:
    image_name = unique("alpine-")
    image = oci_index(workdir / "layouts" / image_name, "3", layers=1, layer_size=LAYER)
    hub.seed(image, f"library/{image_name}")
    name = f"{hub_proxy}/{image_name}"
    upstream = f"/v2/library/{image_name}"
    amd64, arm64 = image.manifests

    assert manifest_digest(oci, name, "3") == image.digest
    assert hub_relay.count(path=rf"/v2/{image_name}/.*") == 0
    assert hub_relay.count("HEAD", f"{upstream}/manifests/3") == 1
    assert hub_relay.count("GET", f"{upstream}/manifests/.*") == 1  # the index, nothing more
    assert hub_relay.count(path=f"{upstream}/manifests/{amd64.digest}") == 0
    wait_for_event(cargohold, "miss", name)

    pulled = pull(oci, name, amd64.digest)
    assert pulled.blobs == blobs_of(image, amd64.digest)
    counts = hub_relay.counts()
    assert counts[("GET", f"{upstream}/manifests/{amd64.digest}")] == 1
    assert hub_relay.count(path=f"{upstream}/manifests/{arm64.digest}") == 0
    assert {d: counts[("GET", f"{upstream}/blobs/{d}")] for d in pulled.blobs} == {
        d: 1 for d in pulled.blobs
    }
    for digest in blobs_of(image, arm64.digest):
        assert hub_relay.count(path=f"{upstream}/blobs/{digest}") == 0

    gets = hub_relay.count("GET", f"{upstream}/.*")
    again = pull(oci, name, "3")
    assert again.manifests == [image.digest, amd64.digest]
    assert hub_relay.count("GET", f"{upstream}/.*") == gets
    wait_for_event(cargohold, "hit", name)


def test_single_name_is_kept_as_is_when_the_upstream_is_not_docker_hub(
    hub: ReferenceRegistry, relay: FaultRelay, cargohold: Server, oci: OciClient, workdir: Path
) -> None:
    image_name = unique("busybox-")
    image = small_image(workdir / "layouts" / image_name, "1")
    hub.seed(image, f"library/{image_name}")
    proxy = new_proxy(cargohold, relay.url)

    missing = get_manifest(oci, f"{proxy}/{image_name}", "1")
    OciClient.expect_error(missing, 404, "MANIFEST_UNKNOWN")
    assert relay.count("HEAD", f"/v2/{image_name}/manifests/1") == 1
    assert relay.count(path="/v2/library/.*") == 0

    assert pull(oci, f"{proxy}/library/{image_name}", "1").digest == image.digest
    assert relay.count("GET", f"/v2/library/{image_name}/blobs/.*") == len(image.blobs)
    assert relay.count(path="/v2/library/library/.*") == 0


def test_deeper_names_keep_their_path_on_docker_hub(
    hub: ReferenceRegistry,
    hub_relay: FaultRelay,
    hub_proxy: str,
    oci: OciClient,
    workdir: Path,
) -> None:
    team = unique("team-")
    api_image = small_image(workdir / "layouts" / team, "1")
    hub.seed(api_image, f"{team}/app/api")
    explicit = unique("explicit-")
    library_image = small_image(workdir / "layouts" / explicit, "1")
    hub.seed(library_image, f"library/{explicit}")

    assert pull(oci, f"{hub_proxy}/{team}/app/api", "1").digest == api_image.digest
    assert hub_relay.count("GET", f"/v2/{team}/app/api/blobs/.*") == len(api_image.blobs)
    assert hub_relay.count(path=f"/v2/library/{team}/.*") == 0

    assert pull(oci, f"{hub_proxy}/library/{explicit}", "1").digest == library_image.digest
    assert hub_relay.count("GET", f"/v2/library/{explicit}/blobs/.*") == len(library_image.blobs)
    assert hub_relay.count(path=f"/v2/library/library/{explicit}/.*") == 0


def test_second_pull_of_an_image_makes_no_upstream_blob_request(
    hub: ReferenceRegistry,
    hub_relay: FaultRelay,
    hub_proxy: str,
    cargohold: Server,
    workdir: Path,
) -> None:
    image_name = unique("nginx-")
    image = oci_index(workdir / "layouts" / image_name, "1.25", layers=1, layer_size=LAYER)
    hub.seed(image, f"library/{image_name}")
    upstream = f"/v2/library/{image_name}"
    skopeo = Skopeo(workdir / f"skopeo-{image_name}")
    source = f"docker://{cargohold.host}/{hub_proxy}/{image_name}:1.25"

    skopeo.copy(
        source,
        f"oci:{workdir / image_name}-1:copy",
        all_images=True,
        src_creds=cargohold.admin_creds,
    )
    counts = hub_relay.counts()
    assert {b.digest: counts[("GET", f"{upstream}/blobs/{b.digest}")] for b in image.blobs} == {
        b.digest: 1 for b in image.blobs
    }
    gets = hub_relay.count("GET", f"{upstream}/.*")

    out = workdir / f"{image_name}-2"
    skopeo.copy(source, f"oci:{out}:copy", all_images=True, src_creds=cargohold.admin_creds)
    assert hub_relay.count("GET", f"{upstream}/blobs/.*") == len(image.blobs)
    assert hub_relay.count("GET", f"{upstream}/.*") == gets
    assert json.loads((out / "index.json").read_text())["manifests"][0]["digest"] == image.digest


# --- tags: revalidated by HEAD after cache_ttl; digests never -------------------------------


def test_tag_is_revalidated_by_head_after_cache_ttl_and_a_moved_tag_is_seen_only_then(
    hub: ReferenceRegistry, relay: FaultRelay, cargohold: Server, oci: OciClient, workdir: Path
) -> None:
    upstream_name = f"{unique('reval-')}/app"
    first = small_image(workdir / "layouts" / upstream_name, "v1")
    second = small_image(workdir / "layouts" / upstream_name, "v2")
    hub.seed(first, upstream_name)
    hub.seed(second, upstream_name)
    proxy = new_proxy(cargohold, relay.url)
    name = f"{proxy}/{upstream_name}"
    tag_path = f"/v2/{upstream_name}/manifests/v1"

    asked = time.monotonic()
    pulled = pull(oci, name, "v1")
    checked = time.monotonic()  # the proxy checked the tag between these two moments
    assert pulled.digest == first.digest
    assert relay.count("HEAD", tag_path) == 1
    assert relay.count("GET", tag_path) == 0
    assert relay.count("GET", f"/v2/{upstream_name}/manifests/{first.digest}") == 1

    # Within cache_ttl: nothing asked upstream, not even after the tag moved there.
    relay.reset_counts()
    assert manifest_digest(oci, name, "v1") == first.digest
    put_tag(hub, upstream_name, "v1", second)
    assert manifest_digest(oci, name, "v1") == first.digest
    assert time.monotonic() - asked < TTL  # (the answers above came within cache_ttl)
    assert relay.requests() == []

    # After cache_ttl: a HEAD sees the new digest; the manifest is fetched by digest.
    sleep_until(checked + TTL + 0.2)
    assert manifest_digest(oci, name, "v1") == second.digest
    checked = time.monotonic()
    assert [(r.method, r.path) for r in relay.requests()] == [
        ("HEAD", tag_path),
        ("GET", f"/v2/{upstream_name}/manifests/{second.digest}"),
    ]

    # After cache_ttl again, unchanged upstream: one HEAD and no GET.
    sleep_until(checked + TTL + 0.2)
    relay.reset_counts()
    assert manifest_digest(oci, name, "v1") == second.digest
    assert [(r.method, r.path) for r in relay.requests()] == [("HEAD", tag_path)]
    wait_for_event(cargohold, "revalidated", name)
    wait_for_event(cargohold, "hit", name)

    # Digests are never revalidated: the first image is served by digest from the cache.
    relay.reset_counts()
    assert pull(oci, name, first.digest).blobs == pulled.blobs
    assert relay.requests() == []


# --- the upstream fails -----------------------------------------------------------------------

STALE_NAME = "stale/app"


@pytest.fixture(scope="module")
def stale_image(hub: ReferenceRegistry, workdir: Path) -> OciImage:
    """`stale/app:1` (an index) and `stale/app:2` upstream."""
    image = oci_index(workdir / "layouts" / "stale", "1", layers=1, layer_size=LAYER)
    hub.seed(image, STALE_NAME)
    hub.seed(small_image(workdir / "layouts" / "stale", "2"), STALE_NAME)
    return image


def _break(relay: FaultRelay, fault: str) -> str:
    """Make the upstream fail as `fault` says; returns what the proxy's messages name."""
    if fault == "down":
        relay.stop()
        return "did not answer"
    if fault == "slow":
        relay.delay(SLOW_SECONDS)
        return "did not answer"
    if fault == "5xx":
        relay.fail(503)
        return "answered 503"
    relay.fail(429, headers={"Retry-After": "7"})
    return "answered 429"


@pytest.mark.parametrize("fault", ["down", "slow", "5xx", "429"])
def test_cached_content_is_served_with_a_warning_when_the_upstream_fails(
    fault: str,
    stale_image: OciImage,
    relay: FaultRelay,
    cargohold: Server,
    oci: OciClient,
) -> None:
    proxy = new_proxy(cargohold, relay.url)
    name = f"{proxy}/{STALE_NAME}"
    _, arm64 = stale_image.manifests
    pulled = pull(oci, name, "1")
    checked = time.monotonic()
    live = oci.request("GET", f"/v2/{name}/tags/list")
    assert live.status_code == 200, live.text
    assert live.json()["tags"] == ["1", "2"]  # the upstream's list
    assert "Warning" not in live.headers
    sleep_until(checked + TTL + 0.2)

    problem = _break(relay, fault)
    started = time.monotonic()
    tag = get_manifest(oci, name, "1")
    assert time.monotonic() - started < SLOW_SECONDS - 1
    assert tag.status_code == 200, tag.text
    assert tag.headers["Docker-Content-Digest"] == stale_image.digest
    warning = tag.headers.get("Warning", "")
    assert WARNING.fullmatch(warning), warning
    assert problem in warning and relay.url in warning
    wait_for_event(cargohold, "stale", name)

    assert pull(oci, name, stale_image.digest).blobs == pulled.blobs  # digests and blobs

    tags = oci.request("GET", f"/v2/{name}/tags/list")
    assert tags.status_code == 200, tags.text
    assert tags.json()["tags"] == ["1"]  # the cached ones
    assert WARNING.fullmatch(tags.headers.get("Warning", "")) and problem in tags.headers["Warning"]
    referrers = oci.request("GET", f"/v2/{name}/referrers/{stale_image.digest}")
    assert referrers.status_code == 200, referrers.text
    assert referrers.json()["manifests"] == []
    assert problem in referrers.headers.get("Warning", "")

    status, code = (429, "TOOMANYREQUESTS") if fault == "429" else (502, "UNSUPPORTED")
    arm64_blob = blobs_of(stale_image, arm64.digest)[-1]
    for never_cached in (
        get_manifest(oci, name, "2"),
        get_manifest(oci, name, arm64.digest),
        get_blob(oci, name, arm64_blob),
        oci.request("GET", f"/v2/{proxy}/never/pulled/tags/list"),
    ):
        message = OciClient.error_entry(never_cached, status, code)["message"]
        assert "not cached" in message and problem in message and relay.url in message
        if fault == "429":
            assert never_cached.headers.get("Retry-After") == "7"


def test_upstream_404_is_remembered_for_proxy_not_found_seconds(
    hub: ReferenceRegistry, relay: FaultRelay, cargohold: Server, oci: OciClient, workdir: Path
) -> None:
    upstream_name = f"{unique('late-')}/app"
    image = small_image(workdir / "layouts" / upstream_name, "base")
    hub.seed(image, upstream_name)
    proxy = new_proxy(cargohold, relay.url)
    name = f"{proxy}/{upstream_name}"
    absent = sha256(uuid.uuid4().bytes)

    asked = time.monotonic()
    OciClient.expect_error(get_manifest(oci, name, "late"), 404, "MANIFEST_UNKNOWN")
    OciClient.expect_error(get_manifest(oci, name, absent), 404, "MANIFEST_UNKNOWN")
    answered = time.monotonic()
    assert relay.count(path=MANIFEST_PATH) == 2

    put_tag(hub, upstream_name, "late", image)  # the tag appears upstream
    OciClient.expect_error(get_manifest(oci, name, "late"), 404, "MANIFEST_UNKNOWN")
    OciClient.expect_error(get_manifest(oci, name, absent), 404, "MANIFEST_UNKNOWN")
    assert time.monotonic() - asked < NOT_FOUND_SECONDS  # (asked again within the window)
    assert relay.count(path=MANIFEST_PATH) == 2

    sleep_until(answered + NOT_FOUND_SECONDS + 0.2)
    assert pull(oci, name, "late").digest == image.digest
    OciClient.expect_error(get_manifest(oci, name, absent), 404, "MANIFEST_UNKNOWN")
    assert relay.count(path=f"/v2/{upstream_name}/manifests/{absent}") == 2


# --- blobs: verified before they are cached ---------------------------------------------------


def _proxied_layer(
    hub: ReferenceRegistry,
    relay: FaultRelay,
    cargohold: Server,
    oci: OciClient,
    workdir: Path,
    prefix: str,
) -> tuple[str, Descriptor, str]:
    """A fresh image upstream behind a new proxy, its manifest already pulled: the proxy's
    name for it, its largest layer, and that layer's upstream path (for relay faults)."""
    upstream_name = f"{unique(prefix)}/app"
    image = small_image(workdir / "layouts" / upstream_name, "1", layer_size=256 * 1024)
    hub.seed(image, upstream_name)
    name = f"{new_proxy(cargohold, relay.url)}/{upstream_name}"
    layer = max(image.blobs, key=lambda blob: blob.size)
    assert manifest_digest(oci, name, "1") == image.digest
    return name, layer, f"/v2/{upstream_name}/blobs/{layer.digest}"


def _broken_blob_is_not_cached(
    relay: FaultRelay, cargohold: Server, oci: OciClient, name: str, digest: str
) -> None:
    """Nothing of the blob is kept, and the proxy does not claim to have it."""
    assert cargohold.blobs.read(digest) is None
    assert blob_rows(cargohold, digest) == (0, 0)
    no_uploads_left(cargohold)
    relay.stop()
    try:
        head = oci.request("HEAD", f"/v2/{name}/blobs/{digest}")
        assert head.status_code == 502
        message = OciClient.error_entry(get_blob(oci, name, digest), 502, "UNSUPPORTED")["message"]
        assert "not cached" in message
    finally:
        relay.start()


def _next_pull_caches_the_blob(
    relay: FaultRelay, cargohold: Server, oci: OciClient, name: str, digest: str, path: str
) -> None:
    for _ in range(2):
        whole = get_blob(oci, name, digest)
        assert whole.status_code == 200, whole.text
        assert sha256(whole.content) == digest
    assert relay.count("GET", re.escape(path)) == 2  # the broken one and the good one
    assert cargohold.blobs.read(digest) is not None
    assert blob_rows(cargohold, digest) == (1, 1)


def test_upstream_cut_in_the_middle_of_a_blob_caches_nothing_and_the_next_pull_works(
    hub: ReferenceRegistry, relay: FaultRelay, cargohold: Server, oci: OciClient, workdir: Path
) -> None:
    name, layer, path = _proxied_layer(hub, relay, cargohold, oci, workdir, "cut-")

    fault = relay.cut(after=4096, path=re.escape(path), times=1)
    announced, received, error = read_blob_stream(oci, name, layer.digest)
    assert fault.hits == 1
    assert announced == layer.size
    assert error is not None and received < layer.size
    _broken_blob_is_not_cached(relay, cargohold, oci, name, layer.digest)
    _next_pull_caches_the_blob(relay, cargohold, oci, name, layer.digest, path)


def test_upstream_serving_wrong_bytes_for_a_digest_is_refused_and_not_cached(
    hub: ReferenceRegistry, relay: FaultRelay, cargohold: Server, oci: OciClient, workdir: Path
) -> None:
    name, layer, path = _proxied_layer(hub, relay, cargohold, oci, workdir, "corrupt-")

    fault = relay.corrupt(path=re.escape(path), times=1, at=-1)  # the very last byte
    announced, received, error = read_blob_stream(oci, name, layer.digest)
    assert fault.hits == 1
    assert announced == layer.size
    assert error is not None and received < layer.size  # never the whole, wrong body
    wait_for_event(cargohold, "corrupt", name)
    _broken_blob_is_not_cached(relay, cargohold, oci, name, layer.digest)
    _next_pull_caches_the_blob(relay, cargohold, oci, name, layer.digest, path)


def test_a_client_going_away_during_a_blob_does_not_hold_up_the_next_pull(
    hub: ReferenceRegistry, relay: FaultRelay, cargohold: Server, oci: OciClient, workdir: Path
) -> None:
    name, layer, path = _proxied_layer(hub, relay, cargohold, oci, workdir, "gone-")

    relay.delay(0.6, re.escape(path), times=1)  # within the proxy's timeout
    with pytest.raises(requests.Timeout):  # gone before the upstream answered
        oci.request("GET", f"/v2/{name}/blobs/{layer.digest}", timeout=0.3)
    started = time.monotonic()
    whole = oci.request("GET", f"/v2/{name}/blobs/{layer.digest}", timeout=10)
    assert whole.status_code == 200, whole.text
    assert sha256(whole.content) == layer.digest
    assert time.monotonic() - started < 5
    no_uploads_left(cargohold)


def test_twenty_concurrent_pulls_of_a_cold_image_make_one_upstream_fetch_each(
    hub: ReferenceRegistry, relay: FaultRelay, cargohold: Server, workdir: Path
) -> None:
    upstream_name = f"{unique('herd-')}/app"
    image = small_image(workdir / "layouts" / upstream_name, "1", layers=2, layer_size=128 * 1024)
    hub.seed(image, upstream_name)
    proxy = new_proxy(cargohold, relay.url)
    name = f"{proxy}/{upstream_name}"
    relay.delay(0.2, BLOB_PATH)  # the first fetch of each blob is still going when all ask
    pullers = 20
    barrier = threading.Barrier(pullers)

    def one(_: int) -> Pulled:
        client = OciClient(cargohold.url, cargohold.admin_auth)
        barrier.wait(timeout=30)
        return pull(client, name, "1")

    locks = cargohold.data_dir / "locks"
    lock_files_before = set(locks.iterdir()) if locks.exists() else set()
    with ThreadPoolExecutor(pullers) as pool:
        results = list(pool.map(one, range(pullers)))
    expected = blobs_of(image, image.digest)
    assert all(r.digest == image.digest and r.blobs == expected for r in results)
    # The fetches' lock files (one per proxied digest and reference) went with them; what
    # stays is the stripes of stored content, a few thousand at most however much is cached.
    stripes = {FileLocks(locks).path(stripe(d)) for d in [image.digest, *expected]}
    assert (set(locks.iterdir()) if locks.exists() else set()) - lock_files_before <= stripes

    counts = relay.counts()
    manifests = f"/v2/{upstream_name}/manifests"
    assert counts[("HEAD", f"{manifests}/1")] == 1
    assert counts[("GET", f"{manifests}/1")] == 0
    assert counts[("GET", f"{manifests}/{image.digest}")] == 1
    blob_gets = {d: counts[("GET", f"/v2/{upstream_name}/blobs/{d}")] for d in expected}
    assert blob_gets == {d: 1 for d in expected}


# --- the spec's ns parameter, refusals --------------------------------------------------------


def test_ns_parameter_answers_oci_namespace_only_for_the_upstream(
    hub: ReferenceRegistry,
    relay: FaultRelay,
    hub_proxy: str,
    cargohold: Server,
    oci: OciClient,
    workdir: Path,
) -> None:
    image_name = unique("ns-")
    image = small_image(workdir / "layouts" / image_name, "1")
    hub.seed(image, f"library/{image_name}")
    proxy = new_proxy(cargohold, relay.url)
    blob = image.blobs[0].digest

    def namespaces(name: str, ns: str | None) -> set[str | None]:
        params = {} if ns is None else {"ns": ns}
        answers = [
            get_manifest(oci, name, "1", **params),
            get_blob(oci, name, blob, **params),
            oci.request("HEAD", f"/v2/{name}/blobs/{blob}", params=params),
            oci.request("GET", f"/v2/{name}/tags/list", params=params),
        ]
        assert [a.status_code for a in answers] == [200] * len(answers)
        return {a.headers.get("OCI-Namespace") for a in answers}

    plain = f"{proxy}/library/{image_name}"
    assert namespaces(plain, relay.host) == {relay.host}
    assert namespaces(plain, "docker.io") == {None}
    assert namespaces(plain, "registry.example:5000") == {None}
    assert namespaces(plain, None) == {None}

    hub_name = f"{hub_proxy}/{image_name}"
    assert namespaces(hub_name, "docker.io") == {"docker.io"}
    assert namespaces(hub_name, "registry.example:5000") == {None}


def test_pushes_uploads_and_deletes_on_a_proxy_are_unsupported(
    hub: ReferenceRegistry,
    hub_relay: FaultRelay,
    hub_proxy: str,
    cargohold: Server,
    oci: OciClient,
    workdir: Path,
) -> None:
    image_name = unique("readonly-")
    image = small_image(workdir / "layouts" / image_name, "1")
    hub.seed(image, f"library/{image_name}")
    name = f"{hub_proxy}/{image_name}"
    pulled = pull(oci, name, "1")
    hosted = unique("hosted-")
    api(cargohold, "POST", "/repos", {"project": PROJECT, "name": hosted})
    data = uuid.uuid4().bytes
    source = f"{PROJECT}/{hosted}/app"
    oci.push_blob(source, data)
    manifest = image.read_blob(image.digest)

    attempts = {
        "upload": oci.request("POST", f"/v2/{name}/blobs/uploads/"),
        "monolithic upload": oci.request(
            "POST", f"/v2/{name}/blobs/uploads/", params={"digest": sha256(data)}, data=data
        ),
        "mount": oci.request(
            "POST", f"/v2/{name}/blobs/uploads/", params={"mount": sha256(data), "from": source}
        ),
        "manifest push": oci.put_manifest(name, "pushed", manifest),
        "tag delete": oci.request("DELETE", f"/v2/{name}/manifests/1"),
        "manifest delete": oci.request("DELETE", f"/v2/{name}/manifests/{image.digest}"),
        "blob delete": oci.request("DELETE", f"/v2/{name}/blobs/{pulled.blobs[0]}"),
    }
    for what, response in attempts.items():
        message = OciClient.error_entry(response, 405, "UNSUPPORTED")["message"]
        assert "proxy" in message, what

    assert pull(oci, name, "1") == pulled
    assert get_blob(oci, name, sha256(data)).status_code == 404
    assert hub_relay.count(path=f"/v2/library/{image_name}/blobs/uploads/.*") == 0
    assert hub_relay.count("DELETE") == 0
    assert hub_relay.count("PUT") == 0


# --- upstream authentication ------------------------------------------------------------------


def test_htpasswd_upstream_is_pulled_with_the_proxy_credentials(
    cargohold: Server, oci: OciClient, workdir: Path
) -> None:
    with ReferenceRegistry(workdir / unique("htpasswd-"), mode="htpasswd") as registry:
        image = oci_index(workdir / "layouts" / "htpasswd", "1", layers=1, layer_size=LAYER)
        registry.seed(image, "team/app")
        proxy = new_proxy(cargohold, registry.url, user=registry.user, password=registry.password)
        registry.reset_counts()
        pulled = pull(oci, f"{proxy}/team/app", "1")
        assert pulled.manifests == [image.digest, image.manifests[0].digest]
        registry.wait_for_log(lambda log: sum(registry.blob_requests().values()) >= 2)
        assert registry.blob_requests(status=200) == {digest: 1 for digest in pulled.blobs}

        wrong = new_proxy(cargohold, registry.url, user=registry.user, password="wrong")
        refused = get_manifest(oci, f"{wrong}/team/app", "1")
        message = OciClient.error_entry(refused, 502, "UNSUPPORTED")["message"]
        assert "refused the proxy's credentials (401)" in message and registry.url in message

        anonymous = new_proxy(cargohold, registry.url)
        refused = get_manifest(oci, f"{anonymous}/team/app", "1")
        message = OciClient.error_entry(refused, 502, "UNSUPPORTED")["message"]
        assert "requires credentials" in message


TOKEN_SECONDS = 14
"""Token lifetime upstream; the proxy stops using a token 10 s before it ends."""
TOKEN_USE_SECONDS = TOKEN_SECONDS - 10


def test_token_upstream_tokens_are_cached_per_scope_until_they_expire(
    cargohold: Server, oci: OciClient, workdir: Path
) -> None:
    base = workdir / unique("token-")
    with (
        TokenServer(base / "auth", expires_in=TOKEN_SECONDS) as tokens,
        ReferenceRegistry(base / "registry", mode="token", token_server=tokens) as registry,
    ):
        first = small_image(base / "layout", "1")
        second = small_image(base / "layout", "2")
        other = small_image(base / "layout-b", "1")
        registry.seed(first, "team/a")
        registry.seed(second, "team/a")
        registry.seed(other, "team/b")
        proxy = new_proxy(cargohold, registry.url, user=registry.user, password=registry.password)

        def asked() -> list[tuple[str | None, list[str], int]]:
            return [
                (r.account, [str(s) for s in r.scopes], r.status) for r in tokens.token_requests
            ]

        tokens.reset_counts()
        issued = time.monotonic()
        assert pull(oci, f"{proxy}/team/a", "1").digest == first.digest
        pulled = time.monotonic()
        scope_a = (registry.user, ["repository:team/a:pull"], 200)
        assert asked() == [scope_a]

        assert pull(oci, f"{proxy}/team/a", "2").digest == second.digest  # same scope
        assert pull(oci, f"{proxy}/team/b", "1").digest == other.digest  # another scope
        assert time.monotonic() - issued < TOKEN_USE_SECONDS  # (all within the token's use)
        assert asked() == [scope_a, (registry.user, ["repository:team/b:pull"], 200)]

        # Past the token's use (and cache_ttl): the tag's HEAD needs a new token.
        sleep_until(pulled + max(TOKEN_USE_SECONDS, TTL) + 0.2)
        tokens.reset_counts()
        assert manifest_digest(oci, f"{proxy}/team/a", "1") == first.digest
        assert asked() == [scope_a]

        wrong = new_proxy(cargohold, registry.url, user=registry.user, password="wrong")
        refused = get_manifest(oci, f"{wrong}/team/a", "1")
        message = OciClient.error_entry(refused, 502, "UNSUPPORTED")["message"]
        assert "token service" in message and "refused the proxy's credentials (401)" in message


# --- a second Cargohold as upstream -----------------------------------------------------------

READER = "proxy-reader"
READER_PASSWORD = "proxy-reader-password-1"
SIGNATURE = "application/vnd.example.signature.v1+json"
SBOM = "application/vnd.example.sbom.v1+json"


@pytest.fixture(scope="module")
def upstream_cargohold(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A second Cargohold: the hosted repository `up/hosted` and a user who may read it."""
    server = Server(tmp_path_factory.mktemp("upstream-cargohold") / "data")
    server.start()
    api(server, "POST", "/projects", {"name": "up"})
    api(server, "POST", "/repos", {"project": "up", "name": "hosted"})
    api(server, "POST", "/users", {"name": READER, "password": READER_PASSWORD})
    api(server, "PUT", f"/projects/up/members/{READER}", {"role": "reader"})
    yield server
    server.stop()


def _access_lines(server: Server, since: int) -> list[str]:
    """The access log lines of the server's log after `since` characters, URL-decoded."""
    return [
        urllib.parse.unquote(line)
        for line in server.log()[since:].splitlines()
        if "aiohttp.access" in line
    ]


def test_second_cargohold_as_upstream_through_its_token_challenge(
    upstream_cargohold: Server, cargohold: Server, oci: OciClient
) -> None:
    upstream = OciClient(upstream_cargohold.url, upstream_cargohold.admin_auth)
    image_name = f"up/hosted/{unique('app-')}"
    pushed = upstream.push_image(image_name, "1", layers=2)
    proxy = new_proxy(cargohold, upstream_cargohold.url, user=READER, password=READER_PASSWORD)
    since = len(upstream_cargohold.log())

    pulled = pull(oci, f"{proxy}/{image_name}", "1")
    assert pulled.digest == pushed.digest
    assert len(pulled.blobs) == 3

    lines = _access_lines(upstream_cargohold, since)
    token_lines = [line for line in lines if "GET /v2/token?" in line]
    assert len(token_lines) == 1, lines
    assert f"repository:{image_name}:pull" in token_lines[0]
    assert '" 200 ' in token_lines[0]
    challenged = [line for line in lines if f"/v2/{image_name}/" in line and '" 401 ' in line]
    assert len(challenged) == 1, lines
    blob_lines = [line for line in lines if f"GET /v2/{image_name}/blobs/" in line]
    assert len(blob_lines) == 3 and all('" 200 ' in line for line in blob_lines), lines


def test_tags_and_referrers_come_from_the_upstream_and_from_the_cache_when_it_stops(
    upstream_cargohold: Server, cargohold: Server, oci: OciClient
) -> None:
    upstream = OciClient(upstream_cargohold.url, upstream_cargohold.admin_auth)
    image_name = f"up/hosted/{unique('signed-')}"
    one = upstream.push_image(image_name, "1")
    upstream.push_image(image_name, "2")
    subject = descriptor(OCI_MANIFEST, one.body)
    signature = upstream.push_image(image_name, None, artifactType=SIGNATURE, subject=subject)
    sbom = upstream.push_image(image_name, None, artifactType=SBOM, subject=subject)
    proxy = new_proxy(cargohold, upstream_cargohold.url, user=READER, password=READER_PASSWORD)
    name = f"{proxy}/{image_name}"

    assert pull(oci, name, "1").digest == one.digest
    checked = time.monotonic()
    tags = oci.request("GET", f"/v2/{name}/tags/list")
    assert tags.json() == {"name": name, "tags": ["1", "2"]}
    assert "Warning" not in tags.headers
    referrers = oci.request("GET", f"/v2/{name}/referrers/{one.digest}")
    assert referrers.status_code == 200, referrers.text
    assert {(m["digest"], m["artifactType"]) for m in referrers.json()["manifests"]} == {
        (signature.digest, SIGNATURE),
        (sbom.digest, SBOM),
    }
    assert "Warning" not in referrers.headers
    filtered = oci.request(
        "GET", f"/v2/{name}/referrers/{one.digest}", params={"artifactType": SIGNATURE}
    )
    assert [m["digest"] for m in filtered.json()["manifests"]] == [signature.digest]
    assert filtered.headers.get("OCI-Filters-Applied") == "artifactType"
    assert manifest_digest(oci, name, signature.digest) == signature.digest  # now cached

    upstream_cargohold.stop()
    try:
        sleep_until(checked + TTL + 0.2)
        tag = get_manifest(oci, name, "1")
        assert tag.status_code == 200, tag.text
        assert upstream_cargohold.url in tag.headers.get("Warning", "")

        tags = oci.request("GET", f"/v2/{name}/tags/list")
        assert tags.json()["tags"] == ["1"]
        assert WARNING.fullmatch(tags.headers.get("Warning", ""))
        referrers = oci.request("GET", f"/v2/{name}/referrers/{one.digest}")
        assert referrers.status_code == 200, referrers.text
        assert [m["digest"] for m in referrers.json()["manifests"]] == [signature.digest]
        assert WARNING.fullmatch(referrers.headers.get("Warning", ""))

        never_cached = get_manifest(oci, name, "2")
        message = OciClient.error_entry(never_cached, 502, "UNSUPPORTED")["message"]
        assert "did not answer" in message and upstream_cargohold.url in message
    finally:
        upstream_cargohold.start()
