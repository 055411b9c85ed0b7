"""Flat URL routing over the real server, at the protocol level: repositories reached by a
flat alias, by the catch-all and by a host name, made through the command line and the API;
every endpoint (manifests, blobs, uploads and their Location headers, tags, referrers,
mounts, the catalog) under the name as the client typed it; token scopes of aliased names;
permissions (an alias never widens access); and proxies of a Docker-Hub-like upstream behind
an alias, as the catch-all and bound to a host, keeping the `library/` rule.

The module's server (`flat`) holds:

| repository      | reached also as                      | who                                 |
|-----------------|--------------------------------------|-------------------------------------|
| common/hosted   | (canonical only)                     | `dev` develops in `common`          |
| common/mirror   | alias `common/external/` (CLI)       | robot `sa$mirror`: pull,push here   |
| team/shared     | alias `common/` (CLI): nested        | nobody but the administrator        |
| legacy/apps     | alias `docker-remote/` (API)         | `reader` reads `legacy`             |
| legacy/catch    | the catch-all (API)                  | `reader` reads `legacy`             |
| pub/open        | alias `public/` (API), anonymous read |                                    |
| bound/hosted    | host `dockerhub.example.test` (API)  | `binder` develops in `bound`        |

Proxies live on a second server (`hub_server`) in front of the reference registry, which it
takes for Docker Hub (`CARGOHOLD_DOCKER_HUB_HOSTS`).
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.integration.auth_support import (
    access_of,
    basic_header,
    bearer,
    challenge,
    cli,
    create_robot,
    create_user,
    expect,
    fetch_token,
    repository_scope,
)
from tests.integration.clients import oci_image
from tests.integration.oci_client import (
    EMPTY_JSON,
    OCI_EMPTY,
    OCI_INDEX,
    OCI_MANIFEST,
    OciClient,
    descriptor,
    next_link,
    sha256,
)
from tests.integration.server import Server
from tests.integration.upstream import ReferenceRegistry

PASSWORD = "flat-routing-password"
BOUND_HOST = "dockerhub.example.test"
API = "/api/v1"


@dataclass
class Flat:
    server: Server
    admin: OciClient
    robot_key: str

    def client(self, user: str | None) -> OciClient:
        """A protocol client signed in as `user` (Basic), or anonymous."""
        if user is None:
            return OciClient(self.server.url)
        if user == "sa$mirror":
            return OciClient(self.server.url, (user, self.robot_key))
        return OciClient(self.server.url, (user, PASSWORD))

    def api(self, method: str, path: str, body: Any = None) -> requests.Response:
        return requests.request(
            method, self.server.url + API + path, json=body, auth=self.server.admin_auth, timeout=30
        )

    @property
    def bound_host(self) -> str:
        return f"{BOUND_HOST}:{self.server.port}"


def unique(prefix: str = "img") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="module")
def flat(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flat]:
    server = Server(tmp_path_factory.mktemp("flat") / "data")
    # Through the command line, as an operator would, before the server starts...
    for project in ("common", "team", "legacy", "pub", "bound"):
        cli(server, "project", "create", project)
    cli(server, "repo", "create", "common", "hosted")
    server.cli("repo", "create", "common", "mirror", "--flat-alias-prefix", "common/external")
    cli(server, "repo", "create", "team", "shared", "--flat-alias-prefix", "/common/")
    server.start()
    try:
        # ...and through the API while it runs.
        admin_api = (server.url + API, server.admin_auth)
        for body in (
            {"project": "legacy", "name": "apps", "flat_alias_prefix": "docker-remote/"},
            {"project": "legacy", "name": "catch", "is_catch_all": True},
            {
                "project": "pub",
                "name": "open",
                "flat_alias_prefix": "public",
                "anonymous_read": True,
            },
            {"project": "bound", "name": "hosted", "host_name": BOUND_HOST},
        ):
            response = requests.post(
                admin_api[0] + "/repos", json=body, auth=admin_api[1], timeout=30
            )
            assert response.status_code == 201, response.text
        create_user(server, "dev", PASSWORD, {"common": "developer"})
        create_user(server, "reader", PASSWORD, {"legacy": "reader"})
        create_user(server, "binder", PASSWORD, {"bound": "developer"})
        create_user(server, "outsider", PASSWORD)
        key = create_robot(server, "mirror", "common/mirror=pull,push")
        yield Flat(server, OciClient(server.url, server.admin_auth), key)
    finally:
        server.stop()


# Set-up through the command line and the API


def cli_refused(server: Server, *args: str) -> str:
    """What the command line says on stderr when it refuses `args` (run in this process)."""
    code, _, err = server.cli_in_this_process(*args)
    assert code == 1, (args, err)
    return err


def test_the_command_line_shows_and_refuses_flat_routing(flat: Flat) -> None:
    listing = {
        line.split("\t")[0]: line.split("\t")[-1]
        for line in flat.server.cli("repo", "list").stdout.splitlines()
    }
    assert len(listing) >= 7, listing
    assert listing["common/mirror"] == "anonymous_read=false alias=common/external/"
    assert listing["team/shared"] == "anonymous_read=false alias=common/"
    assert listing["legacy/catch"] == "anonymous_read=false catch_all"
    assert listing["bound/hosted"] == f"anonymous_read=false host={BOUND_HOST}"
    assert listing["common/hosted"] == "anonymous_read=false"
    refusals = [
        (["--flat-alias-prefix", "common/external/"], "flat alias of common/mirror"),
        (["--flat-alias-prefix", "common/hosted"], "is already the repository common/hosted"),
        (["--catch-all"], "legacy/catch is already the catch-all repository"),
        (
            ["--host-name", BOUND_HOST.upper()],
            f"host {BOUND_HOST} is already bound to bound/hosted",
        ),
        (["--flat-alias-prefix", "Upper/Case"], "is not a name prefix"),
        (["--host-name", "http://x"], "is not a host name"),
    ]
    # One refusal by the command itself (exit status, message on stderr)...
    done = flat.server.cli(
        "repo", "create", "common", "refused", "--catch-all", "--anonymous-read", check=False
    )
    assert done.returncode == 1, done
    assert done.stderr == "cargohold: legacy/catch is already the catch-all repository\n"
    # ...the others by its code in this process (the same `main`, without a second of start-up
    # each).
    for options, message in refusals:
        assert message in cli_refused(flat.server, "repo", "create", "common", "refused", *options)
    refused = cli_refused(
        flat.server, "repo", "update", "common", "hosted", "--flat-alias-prefix", "docker-remote"
    )
    assert "flat alias of legacy/apps" in refused
    assert "common/refused" not in cli(flat.server, "repo", "list")
    assert "\tanonymous_read=false\n" in cli(flat.server, "repo", "list")


def test_the_api_shows_the_flat_routing_fields(flat: Flat) -> None:
    response = flat.api("GET", "/repos")
    assert response.status_code == 200, response.text
    shown = {
        f"{r['project']}/{r['name']}": (r["flat_alias_prefix"], r["is_catch_all"], r["host_name"])
        for r in response.json()
    }
    assert shown["common/mirror"] == ("common/external/", False, None)
    assert shown["legacy/apps"] == ("docker-remote/", False, None)
    assert shown["legacy/catch"] == (None, True, None)
    assert shown["pub/open"] == ("public/", False, None)
    assert shown["bound/hosted"] == (None, False, BOUND_HOST)
    assert shown["common/hosted"] == (None, False, None)


def test_a_repository_made_while_the_catch_all_exists_serves_its_names_at_once(
    flat: Flat,
) -> None:
    """Made by another process (the command line): the catch-all does not keep its names."""
    repository = unique("late")
    flat.server.cli("repo", "create", "common", repository)
    name = f"common/{repository}/app"
    pushed = flat.admin.push_image(name)
    expect(flat.admin.get_manifest(f"legacy/catch/{name}", "latest"), 404, "MANIFEST_UNKNOWN")
    alias = unique("late-alias")
    cli(flat.server, "repo", "update", "common", repository, "--flat-alias-prefix", alias)
    got = flat.admin.get_manifest(f"{alias}/app", "latest")
    expect(got, 200)
    assert got.content == pushed.body
    # Removed again (through the API: a removal made by another process is seen within a few
    # seconds only), the name is the catch-all's once more.
    removed = flat.api("PATCH", f"/repos/common/{repository}", {"flat_alias_prefix": ""})
    assert removed.status_code == 200 and removed.json()["flat_alias_prefix"] is None
    expect(flat.admin.get_manifest(f"{alias}/app", "latest"), 404, "MANIFEST_UNKNOWN")
    expect(flat.admin.get_manifest(f"legacy/catch/{alias}/app", "latest"), 404)
    assert flat.admin.get_manifest(name, "latest").content == pushed.body


# Every endpoint under the name as typed

# (the name a client types, the same image under its repository's canonical prefix)
ROUTES = {
    "alias": ("common/external/{image}", "common/mirror/{image}"),
    "nested-alias": ("common/{image}", "team/shared/{image}"),
    "deep-alias": ("docker-remote/team/{image}", "legacy/apps/team/{image}"),
    "catch-all": ("{image}", "legacy/catch/{image}"),
    "catch-all-deep": ("library/{image}", "legacy/catch/library/{image}"),
    "canonical": ("common/hosted/{image}", "common/hosted/{image}"),
}


def names(route: str) -> tuple[str, str]:
    image = unique()
    typed, canonical = ROUTES[route]
    return typed.format(image=image), canonical.format(image=image)


@pytest.mark.parametrize("route", list(ROUTES))
def test_blob_uploads_answer_with_the_typed_name(flat: Flat, route: str) -> None:
    typed, canonical = names(route)
    admin = flat.admin
    # Monolithic POST.
    data = os.urandom(2048)
    response = admin.request(
        "POST", f"/v2/{typed}/blobs/uploads/", params={"digest": sha256(data)}, data=data
    )
    expect(response, 201)
    assert response.headers["Location"] == f"/v2/{typed}/blobs/{sha256(data)}"
    # A session: POST, PATCH, GET, PUT; every Location is under the typed name.
    chunked = os.urandom(4096)
    location = admin.start_upload(typed)
    assert location.startswith(f"/v2/{typed}/blobs/uploads/"), location
    patched = admin.patch_chunk(location, chunked[:1000], start=0)
    expect(patched, 202)
    assert patched.headers["Location"] == location
    assert patched.headers["Range"] == "0-999"
    status = admin.request("GET", location)
    expect(status, 204)
    assert status.headers["Location"] == location
    closed = admin.close_upload(location, sha256(chunked), chunked[1000:], start=1000)
    expect(closed, 201)
    assert closed.headers["Location"] == f"/v2/{typed}/blobs/{sha256(chunked)}"
    # Cancelled session.
    cancelled = admin.start_upload(typed)
    expect(admin.request("DELETE", cancelled), 204)
    expect(admin.request("GET", cancelled), 404, "BLOB_UPLOAD_UNKNOWN")
    # The blobs are the repository's: the same under the canonical name.
    for blob in (data, chunked):
        for name in (typed, canonical):
            got = admin.request("GET", f"/v2/{name}/blobs/{sha256(blob)}")
            expect(got, 200)
            assert got.content == blob
            expect(admin.request("HEAD", f"/v2/{name}/blobs/{sha256(blob)}"), 200)
    # Deleted through one name, gone under the other.
    expect(admin.request("DELETE", f"/v2/{typed}/blobs/{sha256(data)}"), 202)
    expect(admin.request("HEAD", f"/v2/{canonical}/blobs/{sha256(data)}"), 404)


def test_an_upload_session_belongs_to_its_repository_not_to_a_name(flat: Flat) -> None:
    typed, canonical = names("alias")
    location = flat.admin.start_upload(typed)
    upload_id = location.rsplit("/", 1)[1]
    # The same session under the canonical name of the same repository...
    expect(flat.admin.request("GET", f"/v2/{canonical}/blobs/uploads/{upload_id}"), 204)
    # ...but not under a name of another repository, such as the nested alias's.
    other = "common/" + canonical.rsplit("/", 1)[1]
    expect(
        flat.admin.request("GET", f"/v2/{other}/blobs/uploads/{upload_id}"),
        404,
        "BLOB_UPLOAD_UNKNOWN",
    )


@pytest.mark.parametrize("route", list(ROUTES))
def test_manifests_tags_and_referrers_under_the_typed_name(flat: Flat, route: str) -> None:
    typed, canonical = names(route)
    admin = flat.admin
    image = admin.push_image(typed, "v1")
    put = admin.put_manifest(typed, "v2", image.body)
    expect(put, 201)
    assert put.headers["Location"] == f"/v2/{typed}/manifests/{image.digest}"
    for name in (typed, canonical):
        got = admin.get_manifest(name, "v1")
        expect(got, 200)
        assert got.content == image.body
        assert got.headers["Docker-Content-Digest"] == image.digest
        expect(admin.request("HEAD", f"/v2/{name}/manifests/{image.digest}"), 200)
        listed = admin.request("GET", f"/v2/{name}/tags/list")
        expect(listed, 200)
        assert listed.json() == {"name": name, "tags": ["v1", "v2"]}
    # Paged: the Link carries the typed name.
    first = admin.request("GET", f"/v2/{typed}/tags/list", params={"n": 1})
    assert first.json() == {"name": typed, "tags": ["v1"]}
    assert next_link(first) == f"/v2/{typed}/tags/list?n=1&last=v1"

    # An artifact whose subject is the image, pushed under the canonical name, is a
    # referrer under either.
    admin.push_blob(canonical, EMPTY_JSON)
    artifact = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.example.sbom",
        "config": {"mediaType": OCI_EMPTY, "digest": sha256(EMPTY_JSON), "size": 2},
        "layers": [descriptor(OCI_EMPTY, EMPTY_JSON)],
        "subject": descriptor(OCI_MANIFEST, image.body),
    }
    sbom = admin.put_manifest(
        canonical, sha256(json.dumps(artifact).encode()), json.dumps(artifact).encode()
    )
    expect(sbom, 201)
    assert sbom.headers["OCI-Subject"] == image.digest
    for name in (typed, canonical):
        referrers = admin.request("GET", f"/v2/{name}/referrers/{image.digest}")
        expect(referrers, 200)
        assert referrers.headers["Content-Type"] == OCI_INDEX
        found = [(m["digest"], m["artifactType"]) for m in referrers.json()["manifests"]]
        assert found == [(sbom.headers["Docker-Content-Digest"], "application/vnd.example.sbom")]

    # Deleted under the typed name: gone under both.
    expect(admin.request("DELETE", f"/v2/{typed}/manifests/v2"), 202)
    assert admin.tags(canonical) == ["v1"]


def test_a_name_under_an_alias_is_not_under_another_repository(flat: Flat) -> None:
    typed, canonical = names("alias")
    pushed = flat.admin.push_image(typed)
    image = typed.rsplit("/", 1)[1]
    # Not in the repository of the shorter alias, nor the catch-all, nor another one.
    for elsewhere in (
        f"team/shared/external/{image}",
        f"legacy/catch/{typed}",
        f"common/hosted/{image}",
        image,
    ):
        expect(flat.admin.get_manifest(elsewhere, "latest"), 404, "MANIFEST_UNKNOWN")
    assert flat.admin.get_manifest(canonical, "latest").content == pushed.body


def test_a_name_equal_to_a_prefix_goes_to_the_shorter_prefix(flat: Flat) -> None:
    """`common/external` is no name in common/mirror: the alias `common/` takes it, as the
    image `external` of team/shared; `docker-remote` goes to the catch-all."""
    pushed = flat.admin.push_image("common/external")
    assert flat.admin.get_manifest("team/shared/external", "latest").content == pushed.body
    pushed = flat.admin.push_image("docker-remote")
    assert flat.admin.get_manifest("legacy/catch/docker-remote", "latest").content == pushed.body


# Mounts


@pytest.mark.parametrize(
    ("source_route", "target_route"),
    [
        ("alias", "canonical"),
        ("canonical", "alias"),
        ("alias", "catch-all"),
        ("catch-all", "deep-alias"),
    ],
)
def test_mounts_between_aliased_and_canonical_names(
    flat: Flat, source_route: str, target_route: str
) -> None:
    source, source_canonical = names(source_route)
    data = os.urandom(1024)
    flat.admin.push_blob(source, data)
    digest = sha256(data)
    # `from` as typed into the typed name, and as canonical into the canonical name.
    for origin, typed_target in ((source, True), (source_canonical, False)):
        target, target_canonical = names(target_route)
        into, other = (target, target_canonical) if typed_target else (target_canonical, target)
        expect(flat.admin.request("HEAD", f"/v2/{other}/blobs/{digest}"), 404)
        mounted = flat.admin.request(
            "POST", f"/v2/{into}/blobs/uploads/", params={"mount": digest, "from": origin}
        )
        expect(mounted, 201)
        assert mounted.headers["Location"] == f"/v2/{into}/blobs/{digest}"
        assert flat.admin.request("GET", f"/v2/{other}/blobs/{digest}").content == data


def test_a_mount_from_an_alias_the_caller_may_not_pull_is_a_plain_upload(flat: Flat) -> None:
    """`dev` may push common/hosted, not pull legacy/apps (`docker-remote/`) nor team/shared
    (`common/`, although the name starts with `common/`)."""
    data = os.urandom(1024)
    digest = sha256(data)
    for source in (f"docker-remote/{unique()}", f"common/{unique()}"):
        flat.admin.push_blob(source, data)
        target = f"common/hosted/{unique()}"
        response = flat.client("dev").request(
            "POST", f"/v2/{target}/blobs/uploads/", params={"mount": digest, "from": source}
        )
        expect(response, 202)
        assert response.headers["Location"].startswith(f"/v2/{target}/blobs/uploads/")
        expect(flat.admin.request("HEAD", f"/v2/{target}/blobs/{digest}"), 404)


# The catalog


def test_the_catalog_shows_names_as_clients_use_them(flat: Flat) -> None:
    pushed = {route: names(route) for route in ("alias", "nested-alias", "catch-all", "canonical")}
    for typed, _ in pushed.values():
        flat.admin.push_image(typed)
    # Images whose flat name another prefix takes: team/shared's `external/X` would be
    # `common/external/X` under its alias `common/`, which is common/mirror's; the catch-all's
    # `docker-remote/X` would be legacy/apps'. They are listed by their canonical names, once
    # each, even where the other repository holds an image of that flat name.
    image = unique()
    shadowed = [f"team/shared/external/{image}", f"legacy/catch/docker-remote/{image}"]
    for name in [*shadowed, f"common/mirror/{image}"]:
        flat.admin.push_image(name)
    listed = flat.admin.request("GET", "/v2/_catalog")
    expect(listed, 200)
    catalog = listed.json()["repositories"]
    for typed, canonical in pushed.values():
        assert typed in catalog, (typed, catalog)
        if canonical != typed:
            assert canonical not in catalog, (canonical, catalog)
    assert set(shadowed) <= set(catalog), catalog
    assert f"common/external/{image}" in catalog and f"docker-remote/{image}" not in catalog
    assert catalog == sorted(catalog) and len(set(catalog)) == len(catalog)
    # Every name listed serves under that very name: the image's tags.
    for name in catalog:
        assert flat.admin.tags(name), name
    # Paged, the same names in the same order.
    pages = flat.admin.pages("/v2/_catalog", "repositories", 7)
    assert [name for page in pages for name in page] == catalog
    assert all(len(page) == 7 for page in pages[:-1])
    # A developer of `common` sees common/mirror's and common/hosted's names, not team/shared's
    # (alias `common/`) nor the catch-all's.
    mine = flat.client("dev").request("GET", "/v2/_catalog").json()["repositories"]
    assert pushed["alias"][0] in mine and pushed["canonical"][0] in mine
    assert pushed["nested-alias"][0] not in mine and pushed["catch-all"][0] not in mine
    # (and what anyone may pull: pub/open's, under its alias `public/`)
    assert all(name.startswith(("common/", "public/")) for name in mine), mine


# Tokens


def test_a_token_for_the_typed_alias_works_and_opens_no_other_name(flat: Flat) -> None:
    typed, canonical = names("alias")
    image = flat.admin.push_image(typed)
    dev = ("dev", PASSWORD)
    # The challenge names what the client typed.
    anonymous = requests.get(f"{flat.server.url}/v2/{typed}/manifests/latest", timeout=30)
    expect(anonymous, 401, "UNAUTHORIZED", challenge(flat.server, typed, "pull,push"))

    token = fetch_token(flat.server, dev, [repository_scope(typed)])
    assert access_of(token) == {("repository", typed): ["pull", "push"]}
    got = requests.get(
        f"{flat.server.url}/v2/{typed}/manifests/latest", headers=bearer(token), timeout=30
    )
    expect(got, 200)
    assert got.content == image.body
    pushed = requests.put(
        f"{flat.server.url}/v2/{typed}/manifests/by-token",
        data=image.body,
        headers={**bearer(token), "Content-Type": OCI_MANIFEST},
        timeout=30,
    )
    expect(pushed, 201)
    # ...not the canonical name of the same repository,
    expect(
        requests.get(
            f"{flat.server.url}/v2/{canonical}/manifests/latest", headers=bearer(token), timeout=30
        ),
        401,
        "UNAUTHORIZED",
        challenge(flat.server, canonical, "pull,push", "insufficient_scope"),
    )
    # ...and a token for the canonical name does not open the alias.
    token = fetch_token(flat.server, dev, [repository_scope(canonical)])
    assert access_of(token) == {("repository", canonical): ["pull", "push"]}
    expect(
        requests.get(
            f"{flat.server.url}/v2/{canonical}/manifests/latest", headers=bearer(token), timeout=30
        ),
        200,
    )
    expect(
        requests.get(
            f"{flat.server.url}/v2/{typed}/manifests/latest", headers=bearer(token), timeout=30
        ),
        401,
        "UNAUTHORIZED",
        challenge(flat.server, typed, "pull,push", "insufficient_scope"),
    )


def test_the_oauth2_token_form_takes_an_aliased_scope(flat: Flat) -> None:
    typed, _ = names("deep-alias")
    flat.admin.push_image(typed)
    answer = requests.post(
        f"{flat.server.url}/v2/token",
        data={
            "grant_type": "password",
            "username": "reader",
            "password": PASSWORD,
            "service": "cargohold",
            "client_id": "tests",
            "scope": repository_scope(typed),
        },
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    token = answer.json()["access_token"]
    assert access_of(token) == {("repository", typed): ["pull"]}
    expect(
        requests.get(
            f"{flat.server.url}/v2/{typed}/manifests/latest", headers=bearer(token), timeout=30
        ),
        200,
    )


@pytest.mark.parametrize(
    ("user", "route"),
    [
        ("outsider", "alias"),
        ("dev", "nested-alias"),  # `common/...` is team/shared's, not common's
        ("dev", "deep-alias"),
        ("dev", "catch-all"),
        ("sa$mirror", "nested-alias"),
    ],
)
def test_a_token_for_an_alias_grants_only_what_the_repository_permits(
    flat: Flat, user: str, route: str
) -> None:
    typed, _ = names(route)
    secret = flat.robot_key if user == "sa$mirror" else PASSWORD
    token = fetch_token(flat.server, (user, secret), [repository_scope(typed)])
    assert access_of(token) == {}


# Permissions: an alias never widens access


@pytest.mark.parametrize(
    ("user", "route", "allowed"),
    [
        # `dev` develops in common: common/mirror and common/hosted, under any of their names.
        ("dev", "alias", "pull,push"),
        ("dev", "canonical", "pull,push"),
        ("dev", "nested-alias", ""),
        ("dev", "deep-alias", ""),
        ("dev", "catch-all", ""),
        # `reader` reads legacy: legacy/apps and the catch-all.
        ("reader", "deep-alias", "pull"),
        ("reader", "catch-all", "pull"),
        ("reader", "catch-all-deep", "pull"),
        ("reader", "alias", ""),
        # The robot's grant is common/mirror's alone.
        ("sa$mirror", "alias", "pull,push"),
        ("sa$mirror", "canonical", ""),
        ("sa$mirror", "nested-alias", ""),
        ("outsider", "alias", ""),
        ("outsider", "catch-all", ""),
    ],
)
def test_the_permission_is_the_repositorys_under_every_name(
    flat: Flat, user: str, route: str, allowed: str
) -> None:
    typed, canonical = names(route)
    image = flat.admin.push_image(typed)
    client = flat.client(user)
    for name in {typed, canonical}:
        got = client.get_manifest(name, "latest")
        if "pull" in allowed:
            expect(got, 200)
            assert got.content == image.body
        else:
            expect(got, 403, "DENIED")
        put = client.put_manifest(name, "by-" + user.replace("$", "-"), image.body)
        if "push" in allowed:
            expect(put, 201)
        else:
            expect(put, 403, "DENIED")
        expect(
            client.request("POST", f"/v2/{name}/blobs/uploads/"), 202 if "push" in allowed else 403
        )
        expect(client.request("DELETE", f"/v2/{name}/manifests/latest"), 403, "DENIED")
    # What was refused left nothing behind.
    tags = flat.admin.tags(canonical)
    assert tags == (["by-" + user.replace("$", "-"), "latest"] if "push" in allowed else ["latest"])


def test_an_anonymous_read_repository_stays_read_only_through_its_alias(flat: Flat) -> None:
    image_name = unique()
    typed, canonical = f"public/{image_name}", f"pub/open/{image_name}"
    image = flat.admin.push_image(typed)
    layer = json.loads(image.body)["layers"][0]["digest"]
    anonymous = flat.client(None)
    for name in (typed, canonical):
        got = anonymous.get_manifest(name, "latest")
        expect(got, 200)
        assert got.content == image.body
        expect(anonymous.request("GET", f"/v2/{name}/blobs/{layer}"), 200)
        assert anonymous.tags(name) == ["latest"]
        for method, path, actions in (
            ("POST", f"/v2/{name}/blobs/uploads/", "pull,push"),
            ("PUT", f"/v2/{name}/manifests/anonymous", "pull,push"),
            ("DELETE", f"/v2/{name}/manifests/latest", "pull,push,delete"),
            ("DELETE", f"/v2/{name}/blobs/{layer}", "pull,push,delete"),
        ):
            refused = anonymous.request(
                method, path, data=image.body, headers={"Content-Type": OCI_MANIFEST}
            )
            expect(refused, 401, "UNAUTHORIZED", challenge(flat.server, name, actions))
        # An anonymous token holds pull only; a signed-in outsider may pull, not push.
        token = fetch_token(flat.server, None, [repository_scope(name)])
        assert access_of(token) == {("repository", name): ["pull"]}
        outsider = flat.client("outsider")
        expect(outsider.get_manifest(name, "latest"), 200)
        expect(outsider.put_manifest(name, "outsider", image.body), 403, "DENIED")
    assert flat.admin.tags(canonical) == ["latest"]
    expect(flat.admin.request("GET", f"/v2/{canonical}/blobs/{layer}"), 200)


def test_the_catch_all_tells_the_anonymous_nothing(flat: Flat) -> None:
    """Every name reaches the (private) catch-all: asked anonymously, a pushed name and one
    never pushed get the same challenge."""
    pushed, _ = names("catch-all")
    flat.admin.push_image(pushed)
    for name in (pushed, unique("never"), "no/such/repo/image"):
        expect(
            flat.client(None).get_manifest(name, "latest"),
            401,
            "UNAUTHORIZED",
            challenge(flat.server, name, "pull,push"),
        )


# A repository bound to a host name


def test_a_host_bound_repository_takes_every_name_asked_of_its_host(flat: Flat) -> None:
    host = {"Host": flat.bound_host}
    image_name = unique("nginx")
    admin = flat.admin
    # Pushed under the bound host, with the bare name...
    data = os.urandom(1024)
    location = admin.request("POST", f"/v2/{image_name}/blobs/uploads/", headers=host)
    expect(location, 202)
    upload = location.headers["Location"]
    assert upload.startswith(f"/v2/{image_name}/blobs/uploads/"), upload
    closed = admin.request("PUT", upload, params={"digest": sha256(data)}, data=data, headers=host)
    expect(closed, 201)
    assert closed.headers["Location"] == f"/v2/{image_name}/blobs/{sha256(data)}"
    admin.push_blob(f"bound/hosted/{image_name}", EMPTY_JSON)
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_EMPTY, "digest": sha256(EMPTY_JSON), "size": 2},
        "layers": [descriptor("application/vnd.oci.image.layer.v1.tar", data)],
    }
    body = json.dumps(manifest).encode()
    put = admin.request(
        "PUT",
        f"/v2/{image_name}/manifests/1",
        data=body,
        headers={**host, "Content-Type": OCI_MANIFEST},
    )
    expect(put, 201)
    # ...is bound/hosted's, under its canonical name on any host...
    assert admin.get_manifest(f"bound/hosted/{image_name}", "1").content == body
    got = admin.request("GET", f"/v2/{image_name}/manifests/1", headers=host)
    assert got.content == body
    listed = admin.request("GET", f"/v2/{image_name}/tags/list", headers=host)
    assert listed.json() == {"name": image_name, "tags": ["1"]}
    # ...and under the bound host even a name with another repository's prefix is its own.
    expect(admin.request("GET", f"/v2/common/hosted/{image_name}/manifests/1", headers=host), 404)
    # On another host the bare name is the catch-all's, where it is unknown.
    expect(admin.get_manifest(image_name, "1"), 404, "MANIFEST_UNKNOWN")
    # The host name is not case-sensitive.
    upper = {"Host": flat.bound_host.upper()}
    assert admin.request("GET", f"/v2/{image_name}/manifests/1", headers=upper).content == body


def test_a_host_bound_repository_challenges_and_grants_under_its_host(flat: Flat) -> None:
    host = {"Host": flat.bound_host}
    name = unique("nginx")
    flat.admin.push_image(f"bound/hosted/{name}")
    url = f"{flat.server.url}/v2/{name}/manifests/latest"
    refused = requests.get(url, headers=host, timeout=30)
    expect(refused, 401, "UNAUTHORIZED")
    realm = f"http://{flat.bound_host}/v2/token"
    assert refused.headers["WWW-Authenticate"] == (
        f'Bearer realm="{realm}",service="cargohold",scope="repository:{name}:pull,push"'
    )
    # The token endpoint, asked of the bound host, resolves the scope there.
    asked = requests.get(
        f"{flat.server.url}/v2/token",
        params={"service": "cargohold", "scope": repository_scope(name)},
        headers={**host, **basic_header("binder", PASSWORD)},
        timeout=30,
    )
    assert asked.status_code == 200, asked.text
    token = asked.json()["token"]
    assert access_of(token) == {("repository", name): ["pull", "push"]}
    expect(requests.get(url, headers={**host, **bearer(token)}, timeout=30), 200)
    # Asked of another host, the same scope is the catch-all's, where binder may do nothing;
    # and the token from the bound host opens nothing there.
    elsewhere = fetch_token(flat.server, ("binder", PASSWORD), [repository_scope(name)])
    assert access_of(elsewhere) == {}
    expect(requests.get(url, headers=bearer(token), timeout=30), 401, "UNAUTHORIZED")
    # Basic credentials: the permission is the bound repository's.
    expect(flat.client("binder").request("GET", url, headers=host), 200)
    expect(flat.client("dev").request("GET", url, headers=host), 403, "DENIED")


def test_a_host_bound_repository_keeps_its_tokens_on_its_host_behind_a_public_url(
    tmp_path: Path,
) -> None:
    """With `public_url` set (a registry behind a reverse proxy), challenges name the public
    token endpoint, except under a bound host: there scope names resolve to the bound
    repository only if the token is asked of that host, so the realm stays on it."""
    server = Server(tmp_path / "data")
    server.cli("project", "create", "bound")
    server.cli("repo", "create", "bound", "hosted", "--host-name", BOUND_HOST)
    public = f"http://127.0.0.1:{server.port}/"
    server.start(env={"CARGOHOLD_PUBLIC_URL": public})
    try:
        name = unique("nginx")
        admin = OciClient(server.url, server.admin_auth)
        pushed = admin.push_image(f"bound/hosted/{name}")
        host = f"{BOUND_HOST}:{server.port}"
        url = f"{server.url}/v2/{name}/manifests/latest"
        refused = requests.get(url, headers={"Host": host}, timeout=30)
        expect(refused, 401, "UNAUTHORIZED")
        realm = f"http://{host}/v2/token"
        assert refused.headers["WWW-Authenticate"] == (
            f'Bearer realm="{realm}",service="cargohold",scope="repository:{name}:pull,push"'
        )
        ping = requests.get(f"{server.url}/v2/", headers={"Host": host}, timeout=30)
        assert ping.headers["WWW-Authenticate"].startswith(f'Bearer realm="{realm}"')
        # Elsewhere, the public URL's.
        elsewhere = requests.get(
            f"{server.url}/v2/bound/hosted/{name}/manifests/latest", timeout=30
        )
        assert elsewhere.headers["WWW-Authenticate"].startswith(f'Bearer realm="{public}v2/token"')
        # What a client does with the bound host's challenge works.
        asked = requests.get(
            f"{server.url}/v2/token",
            params={"service": "cargohold", "scope": f"repository:{name}:pull"},
            headers={"Host": host, **basic_header(*server.admin_auth)},
            timeout=30,
        )
        token = asked.json()["token"]
        assert access_of(token) == {("repository", name): ["pull"]}
        got = requests.get(url, headers={"Host": host, **bearer(token)}, timeout=30)
        expect(got, 200)
        assert got.content == pushed.body
    finally:
        server.stop()


# Proxies of a Docker-Hub-like upstream


@dataclass
class Hub:
    registry: ReferenceRegistry
    server: Server
    nginx: str
    """The digest of `library/nginx:1` upstream."""
    tool: str
    """The digest of `team/tool:1` upstream."""


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    """The reference registry (open) holding `library/nginx:1` and `team/tool:1`, and a
    cargohold that takes it for Docker Hub, with three proxies of it: `common/dockerhub`
    behind the alias `common/external/`, `hub/all` the catch-all, `hub/bound` bound to
    `dockerhub.example.test`."""
    workdir = tmp_path_factory.mktemp("flat-hub")
    with ReferenceRegistry(workdir / "registry") as registry:
        nginx = registry.seed(oci_image(workdir / "nginx", "1", layer_size=1024), "library/nginx")
        tool = registry.seed(oci_image(workdir / "tool", "1", layer_size=1024), "team/tool")
        server = Server(workdir / "data")
        cli(server, "project", "create", "common")
        cli(server, "project", "create", "hub")
        proxy = ["--type", "proxy", "--remote-url", registry.url]
        cli(
            server,
            "repo",
            "create",
            "common",
            "dockerhub",
            *proxy,
            "--flat-alias-prefix",
            "common/external/",
        )
        server.cli("repo", "create", "hub", "all", *proxy, "--catch-all")
        cli(server, "repo", "create", "hub", "bound", *proxy, "--host-name", BOUND_HOST)
        server.start(env={"CARGOHOLD_DOCKER_HUB_HOSTS": registry.host})
        try:
            yield Hub(registry, server, nginx, tool)
        finally:
            server.stop()


@pytest.mark.parametrize(
    ("name", "bound"),
    [
        ("common/external/library/nginx", False),
        ("common/external/nginx", False),
        ("common/dockerhub/nginx", False),
        ("library/nginx", False),
        ("nginx", False),
        ("hub/all/nginx", False),
        ("nginx", True),
        ("library/nginx", True),
    ],
)
def test_a_docker_hub_proxy_keeps_the_library_rule_under_every_name(
    hub: Hub, name: str, bound: bool
) -> None:
    client = OciClient(hub.server.url, hub.server.admin_auth)
    headers = {"Host": f"{BOUND_HOST}:{hub.server.port}"} if bound else {}
    hub.registry.reset_counts()
    got = client.request(
        "GET",
        f"/v2/{name}/manifests/1",
        headers={**headers, "Accept": f"{OCI_MANIFEST}, {OCI_INDEX}"},
    )
    expect(got, 200)
    assert got.headers["Docker-Content-Digest"] == hub.nginx
    manifest = got.json()
    for blob in (manifest["config"], *manifest["layers"]):
        fetched = client.request("GET", f"/v2/{name}/blobs/{blob['digest']}", headers=headers)
        expect(fetched, 200)
        assert sha256(fetched.content) == blob["digest"]
    listed = client.request("GET", f"/v2/{name}/tags/list", headers=headers)
    assert listed.json() == {"name": name, "tags": ["1"]}
    # Upstream, every request was for library/nginx.
    log = hub.registry.wait_for_log(lambda log: any("/tags/list" in e.uri for e in log))
    upstream = {e.path for e in log if e.path != "/v2/"}
    assert upstream, log
    assert all(path.startswith("/v2/library/nginx/") for path in upstream), upstream


@pytest.mark.parametrize(
    ("name", "bound"),
    [("common/external/team/tool", False), ("team/tool", False), ("team/tool", True)],
)
def test_a_docker_hub_proxy_passes_other_names_unchanged(hub: Hub, name: str, bound: bool) -> None:
    client = OciClient(hub.server.url, hub.server.admin_auth)
    headers = {"Host": f"{BOUND_HOST}:{hub.server.port}"} if bound else {}
    got = client.request(
        "GET", f"/v2/{name}/manifests/1", headers={**headers, "Accept": OCI_MANIFEST}
    )
    expect(got, 200)
    assert got.headers["Docker-Content-Digest"] == hub.tool
    expect(
        client.request(
            "GET", f"/v2/{name}/manifests/2", headers={**headers, "Accept": OCI_MANIFEST}
        ),
        404,
        "MANIFEST_UNKNOWN",
    )


@pytest.mark.parametrize("name", ["common/external/library/nginx", "nginx", "library/nginx"])
def test_a_proxy_takes_no_push_under_any_name(hub: Hub, name: str) -> None:
    client = OciClient(hub.server.url, hub.server.admin_auth)
    expect(client.request("POST", f"/v2/{name}/blobs/uploads/"), 405, "UNSUPPORTED")
    expect(client.put_manifest(name, "pushed", b"{}"), 405, "UNSUPPORTED")


def test_the_proxy_catalog_shows_the_cached_names_as_pulled(hub: Hub) -> None:
    client = OciClient(hub.server.url, hub.server.admin_auth)
    for name in ("common/external/nginx", "nginx", "library/nginx"):
        expect(client.get_manifest(name, "1"), 200)
    catalog = client.request("GET", "/v2/_catalog").json()["repositories"]
    assert {"common/external/nginx", "nginx", "library/nginx"} <= set(catalog), catalog
    assert not any(name.startswith(("hub/all/", "common/dockerhub/")) for name in catalog)
