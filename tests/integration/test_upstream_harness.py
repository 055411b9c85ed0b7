"""The upstream harness works: the reference registry in each auth mode, the token server,
stop/start, request counting, and every fault of the relay, seen by skopeo and requests."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.integration.clients import ClientError, OciImage, oci_image, oci_index
from tests.integration.upstream import (
    BLOB_PATH,
    MANIFEST_PATH,
    FaultRelay,
    ReferenceRegistry,
    Scope,
    TokenServer,
    fetch_token,
    parse_challenge,
    sha256_of,
)

pytestmark = pytest.mark.clients

LAYER = 256 * 1024


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ReferenceRegistry, OciImage]]:
    """An open reference registry holding ``team/app/api:v1`` (one image, two layers)."""
    workdir = tmp_path_factory.mktemp("hub")
    with ReferenceRegistry(workdir / "registry") as registry:
        image = oci_image(workdir / "layout", "v1", layer_size=LAYER)
        registry.seed(image, "team/app/api")
        yield registry, image


@pytest.fixture
def relay(hub: tuple[ReferenceRegistry, OciImage]) -> Iterator[FaultRelay]:
    with FaultRelay(hub[0].url) as instance:
        yield instance


def blob_url(base: str, name: str, digest: str) -> str:
    return f"{base}/v2/{name}/blobs/{digest}"


# --- the reference registry in each mode ------------------------------------------------------


def test_open_registry_serves_seeded_images_and_counts_blob_requests(tmp_path: Path) -> None:
    alpine = oci_index(tmp_path / "layout", "3.19")
    api = oci_image(tmp_path / "layout", "v2")
    with ReferenceRegistry(tmp_path / "registry") as registry:
        assert registry.credentials is None
        assert registry.seed(alpine, "library/alpine") == alpine.digest
        assert registry.seed(api, "team/app/api", "stable") == api.digest

        raw = registry.skopeo.inspect(registry.ref("library/alpine", "3.19"), raw=True)
        assert [m["digest"] for m in raw["manifests"]] == [m.digest for m in alpine.manifests]
        assert registry.skopeo.list_tags(f"docker://{registry.host}/team/app/api") == ["stable"]

        registry.reset_counts()
        out = tmp_path / "out"
        registry.skopeo.copy(
            registry.ref("library/alpine", "3.19"), f"oci:{out}:copy", all_images=True
        )
        assert json.loads((out / "index.json").read_text())["manifests"][0]["digest"] == (
            alpine.digest
        )
        counts = registry.blob_requests(name="library/alpine", status=200)
        assert counts == {blob.digest: 1 for blob in alpine.blobs}
        assert registry.blob_requests(name="team/app/api") == {}
        assert registry.manifest_requests()["library/alpine:3.19"] >= 1
        children = registry.manifest_requests(status=200)
        assert all(children[f"library/alpine@{m.digest}"] == 1 for m in alpine.manifests)

        registry.delete_manifest("team/app/api", api.digest)
        with pytest.raises(ClientError):
            registry.skopeo.inspect(registry.ref("team/app/api", "stable"), raw=True)


def test_htpasswd_registry_wants_the_right_credentials(tmp_path: Path) -> None:
    image = oci_image(tmp_path / "layout", "v1")
    with ReferenceRegistry(tmp_path / "registry", mode="htpasswd") as registry:
        assert registry.htpasswd_path.read_text().startswith(f"{registry.user}:$2y$")
        registry.seed(image, "library/busybox")
        ref = registry.ref("library/busybox", "v1")
        assert registry.skopeo.inspect(ref, raw=True, creds=registry.credentials)["layers"]
        with pytest.raises(ClientError):
            registry.skopeo.inspect(ref, raw=True, creds=f"{registry.user}:wrong")
        with pytest.raises(ClientError):
            registry.skopeo.inspect(ref, raw=True)

        challenge = requests.get(registry.url + "/v2/", timeout=10)
        assert challenge.status_code == 401
        assert parse_challenge(challenge.headers["WWW-Authenticate"])[0] == "basic"
        path = f"/v2/library/busybox/manifests/{image.digest}"
        assert registry.request("GET", path, headers={"Accept": image.descriptor.media_type}).ok


def test_token_registry_accepts_only_tokens_of_its_token_server(tmp_path: Path) -> None:
    image = oci_index(tmp_path / "layout", "v1")
    with ReferenceRegistry(tmp_path / "registry", mode="token") as registry:
        tokens = registry.token_server
        assert tokens is not None
        registry.seed(image, "team/app/api")
        assert tokens.count >= 1
        assert all(r.account == registry.user and r.status == 200 for r in tokens.token_requests)

        ref = registry.ref("team/app/api", "v1")
        tokens.reset_counts()
        assert registry.skopeo.inspect(ref, raw=True, creds=registry.credentials)["manifests"]
        assert tokens.count >= 1
        with pytest.raises(ClientError):
            registry.skopeo.inspect(ref, raw=True, creds=f"{registry.user}:wrong")
        assert any(r.status == 401 for r in tokens.token_requests)
        with pytest.raises(ClientError):  # anonymous tokens carry no access by default
            registry.skopeo.inspect(ref, raw=True)

        # By hand: the challenge names the realm and scope; the token opens the manifest.
        path = f"/v2/team/app/api/manifests/{image.digest}"
        accept = {"Accept": image.descriptor.media_type}
        denied = requests.get(registry.url + path, headers=accept, timeout=10)
        scheme, params = parse_challenge(denied.headers["WWW-Authenticate"])
        assert (denied.status_code, scheme) == (401, "bearer")
        assert params["realm"] == tokens.realm
        assert params["scope"] == "repository:team/app/api:pull"
        token = fetch_token(params["realm"], params["service"], [params["scope"]], registry.auth)

        def get(token: str) -> int:
            headers = {**accept, "Authorization": f"Bearer {token}"}
            return requests.get(registry.url + path, headers=headers, timeout=10).status_code

        assert get(token) == 200
        other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pull = [Scope("repository", "team/app/api", ("pull",))]
        assert get(tokens.issue("someone", registry.service, pull, key=other_key)) == 401
        assert get(tokens.issue("someone", "another-service", pull)) == 401
        assert get(tokens.issue("someone", registry.service, pull, expires_in=-300)) == 401
        assert get(tokens.issue("someone", registry.service, pull)) == 200


def test_shared_token_server_can_grant_anonymous_pulls_like_docker_hub(tmp_path: Path) -> None:
    image = oci_image(tmp_path / "layout", "v1")
    with (
        TokenServer(tmp_path / "auth", anonymous_pull=True) as tokens,
        ReferenceRegistry(tmp_path / "registry", mode="token", token_server=tokens) as registry,
    ):
        registry.seed(image, "library/alpine")
        ref = registry.ref("library/alpine", "v1")
        assert registry.skopeo.inspect(ref, raw=True)["config"]["digest"]
        anonymous = [r for r in tokens.token_requests if r.account is None]
        assert anonymous
        assert all(g.actions in ((), ("pull",)) for r in anonymous for g in r.granted)
        other = oci_image(tmp_path / "layout", "v2")
        with pytest.raises(ClientError):  # no push for anonymous
            registry.skopeo.copy(other.ref, registry.ref("library/alpine", "v2"))

        # POST: the OAuth2 password grant.
        answer = requests.post(
            tokens.realm,
            data={
                "grant_type": "password",
                "username": registry.user,
                "password": registry.password,
                "service": registry.service,
                "scope": "repository:library/alpine:pull",
                "client_id": "test",
            },
            timeout=10,
        )
        assert answer.status_code == 200
        assert answer.json()["access_token"]


def test_stopped_registry_refuses_then_serves_the_same_content_again(tmp_path: Path) -> None:
    image = oci_image(tmp_path / "layout", "v1")
    with ReferenceRegistry(tmp_path / "registry") as registry:
        registry.seed(image, "library/alpine")
        url = registry.url
        before = registry.skopeo.inspect(registry.ref("library/alpine", "v1"), raw=True)
        with FaultRelay(registry.url) as relay:
            registry.stop()
            assert not registry.running
            with pytest.raises(requests.ConnectionError):
                requests.get(url + "/v2/", timeout=5)
            assert requests.get(relay.url + "/v2/", timeout=10).status_code == 502

            registry.start()
            assert registry.url == url
            after = registry.skopeo.inspect(registry.ref("library/alpine", "v1"), raw=True)
            assert after == before
            registry.reset_counts()
            blob = image.blobs[0]
            body = requests.get(blob_url(relay.url, "library/alpine", blob.digest), timeout=10)
            assert sha256_of(body.content) == blob.digest
            log = registry.wait_for_log(lambda entries: len(entries) >= 1)
            assert [(e.method, e.status, e.size) for e in log] == [("GET", 200, blob.size)]
            assert registry.blob_requests() == {blob.digest: 1}


# --- the fault relay --------------------------------------------------------------------------


def test_relay_is_transparent_to_skopeo_and_counts_requests(
    hub: tuple[ReferenceRegistry, OciImage], relay: FaultRelay, tmp_path: Path
) -> None:
    registry, image = hub
    registry.reset_counts()
    out = tmp_path / "out"
    registry.skopeo.copy(f"docker://{relay.host}/team/app/api:v1", f"oci:{out}:v1")
    for blob in image.blobs:
        assert relay.counts()[("GET", f"/v2/team/app/api/blobs/{blob.digest}")] == 1
        assert registry.blob_requests()[blob.digest] == 1
    assert relay.count("GET", MANIFEST_PATH) >= 1

    # Pushes go through too: upload Locations are rewritten to the relay.
    registry.skopeo.copy(f"oci:{out}:v1", f"docker://{relay.host}/team/app/copy:v1")
    assert relay.count("PUT", r"/v2/team/app/copy/blobs/uploads/.*") >= 1
    assert registry.blob_requests("PUT") == {}  # uploads are not blob URLs
    raw = registry.skopeo.inspect(registry.ref("team/app/copy", "v1"), raw=True)
    assert [layer["digest"] for layer in raw["layers"]] == [
        b.digest for b in image.blobs if b.media_type.endswith("gzip")
    ]

    blob = image.blobs[0]
    head = requests.head(blob_url(relay.url, "team/app/api", blob.digest), timeout=10)
    assert head.status_code == 200
    assert head.headers["Docker-Content-Digest"] == blob.digest
    assert int(head.headers["Content-Length"]) == blob.size


def test_relay_passes_the_bearer_challenge_unchanged(tmp_path: Path) -> None:
    image = oci_image(tmp_path / "layout", "v1", layers=1, layer_size=1024)
    with (
        ReferenceRegistry(tmp_path / "registry", mode="token") as registry,
        FaultRelay(registry.url) as relay,
    ):
        assert registry.token_server is not None
        registry.seed(image, "library/alpine")
        challenge = requests.get(relay.url + "/v2/", timeout=10).headers["WWW-Authenticate"]
        assert parse_challenge(challenge)[1]["realm"] == registry.token_server.realm
        ref = f"docker://{relay.host}/library/alpine:v1"
        assert registry.skopeo.inspect(ref, raw=True, creds=registry.credentials)["layers"]


def test_relay_cuts_a_blob_body_short(
    hub: tuple[ReferenceRegistry, OciImage], relay: FaultRelay
) -> None:
    _, image = hub
    blob = max(image.blobs, key=lambda b: b.size)
    url = blob_url(relay.url, "team/app/api", blob.digest)
    fault = relay.cut(after=10_000, times=1)
    response = requests.get(url, stream=True, timeout=10)
    assert response.status_code == 200
    assert int(response.headers["Content-Length"]) == blob.size
    received = bytearray()
    with pytest.raises(requests.RequestException):
        for chunk in response.iter_content(1000):
            received += chunk
    assert len(received) == 10_000
    assert fault.hits == 1
    assert relay.requests()[-1].faults == ("cut",)

    again = requests.get(url, timeout=10)  # times=1: the next one goes through
    assert sha256_of(again.content) == blob.digest


def test_relay_corrupts_a_blob_body_keeping_its_length(
    hub: tuple[ReferenceRegistry, OciImage], relay: FaultRelay
) -> None:
    _, image = hub
    blob = image.blobs[0]
    url = blob_url(relay.url, "team/app/api", blob.digest)
    relay.corrupt(at=-1)
    response = requests.get(url, timeout=10)
    assert response.status_code == 200
    assert response.headers["Docker-Content-Digest"] == blob.digest
    assert len(response.content) == blob.size
    assert sha256_of(response.content) != blob.digest
    assert response.content[:-1] == image.read_blob(blob.digest)[:-1]

    relay.clear()
    assert sha256_of(requests.get(url, timeout=10).content) == blob.digest


def test_relay_answers_injected_statuses(
    hub: tuple[ReferenceRegistry, OciImage], relay: FaultRelay
) -> None:
    _, image = hub
    blob_path = f"/v2/team/app/api/blobs/{image.blobs[0].digest}"
    relay.fail(503, BLOB_PATH, times=1)
    relay.fail(429, MANIFEST_PATH, method="GET", headers={"Retry-After": "2"})

    unavailable = requests.get(relay.url + blob_path, timeout=10)
    assert unavailable.status_code == 503
    assert unavailable.json()["errors"][0]["code"] == "UNAVAILABLE"
    assert requests.get(relay.url + blob_path, timeout=10).status_code == 200

    manifest = f"{relay.url}/v2/team/app/api/manifests/v1"
    limited = requests.get(manifest, timeout=10)
    assert (limited.status_code, limited.headers["Retry-After"]) == (429, "2")
    # GET only. (distribution 2.8 answers 404 for an OCI manifest without a matching Accept.)
    accept = {"Accept": image.descriptor.media_type}
    assert requests.head(manifest, headers=accept, timeout=10).status_code == 200
    assert relay.counts()[("GET", blob_path)] == 2


def test_relay_delays_matching_requests(
    hub: tuple[ReferenceRegistry, OciImage], relay: FaultRelay
) -> None:
    _, image = hub
    relay.delay(0.5, MANIFEST_PATH)
    manifest = f"{relay.url}/v2/team/app/api/manifests/v1"
    accept = {"Accept": image.descriptor.media_type}
    start = time.monotonic()
    assert requests.get(manifest, headers=accept, timeout=10).status_code == 200
    elapsed = time.monotonic() - start
    assert 0.45 <= elapsed < 10
    assert relay.requests()[-1].faults == ("delay",)


def test_stopped_relay_refuses_connections_until_started(relay: FaultRelay) -> None:
    url = relay.url + "/v2/"
    assert requests.get(url, timeout=10).status_code == 200
    relay.stop()
    with pytest.raises(requests.ConnectionError):
        requests.get(url, timeout=5)
    relay.start()
    assert requests.get(url, timeout=10).status_code == 200
