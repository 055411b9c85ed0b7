"""Who may do what under /v2/, over the real server: a matrix of principals (anonymous, each
project role, a user of another project, the system administrator, two robots) by endpoint,
with Basic credentials and with a Bearer token from the token endpoint; then anonymous read,
the cross-project cases, mounts, the catalog and `GET /v2/`.

Answers (docker-token-auth-*.md and DESIGN.md): no credentials and no access → 401 with a
challenge naming the scope (the needed actions plus pull,push); Basic credentials without the
permission → 403 DENIED; a token without the access → 401 `error="insufficient_scope"`.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests

from tests.integration.auth_support import (
    ALL,
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
from tests.integration.oci_client import OCI_MANIFEST, OciClient, Pushed, sha256
from tests.integration.server import Server

PASSWORD = "permissions-password"

# Each principal, and what it may do in `perm/hosted` (the repository the matrix exercises).
PRINCIPALS: dict[str, str] = {
    "anonymous": "",
    "reader": "pull",
    "developer": "pull,push",
    "maintainer": "pull,push,delete",
    "project-admin": "pull,push,delete",
    "other-project": "",  # admin of perm2, nothing in perm
    "system-admin": "pull,push,delete",
    "robot-pull": "pull",  # --grant perm=pull
    "robot-repo-all": "pull,push,delete",  # --grant perm/hosted=pull,push,delete
}
ROLES = {"reader", "developer", "maintainer"}

HOSTED = "perm/hosted"
BASE = f"{HOSTED}/base"  # an image every matrix read goes to
OTHER_BASE = "perm/other/base"  # same project, another repository
FOREIGN_BASE = "perm2/hosted/base"  # another project
PUBLIC_PROJECT_BASE = "pubp/hosted/base"  # project with anonymous read
PUBLIC_REPO_BASE = "perm/pubrepo/base"  # repository with anonymous read, in perm
PUBLIC_PROJECT_OTHER = "pubp/second/base"


@dataclass
class World:
    server: Server
    admin: OciClient
    auth: dict[str, tuple[str, str] | None]
    images: dict[str, Pushed]
    layers: dict[str, bytes] = field(default_factory=dict)

    def basic(self, principal: str) -> tuple[str, str] | None:
        return self.auth[principal]


def _push_base(admin: OciClient, name: str) -> tuple[Pushed, bytes]:
    layer = os.urandom(512)
    admin.push_blob(name, layer)
    config = admin.push_blob(name, b"{}")
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": config, "size": 2},
        "layers": [
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar",
                "digest": sha256(layer),
                "size": len(layer),
            }
        ],
    }
    return admin.push_manifest(name, "latest", manifest), layer


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    server = Server(tmp_path_factory.mktemp("permissions") / "data")
    # Started first: the administrator `admin` is created at a first start with no users.
    server.start()
    try:
        yield _populate(server)
    finally:
        server.stop()


def _populate(server: Server) -> World:
    for project in ("perm", "perm2"):
        cli(server, "project", "create", project)
    cli(server, "project", "create", "pubp", "--anonymous-read")
    for project, repository in (
        ("perm", "hosted"),
        ("perm", "other"),
        ("perm2", "hosted"),
        ("pubp", "hosted"),
        ("pubp", "second"),
    ):
        cli(server, "repo", "create", project, repository)
    cli(server, "repo", "create", "perm", "pubrepo", "--anonymous-read")
    for role in ROLES:
        create_user(server, f"u-{role}", PASSWORD, {"perm": role})
    create_user(server, "u-padmin", PASSWORD, {"perm": "admin"})
    create_user(server, "u-outsider", PASSWORD, {"perm2": "admin"})
    keys = {
        "robot-pull": create_robot(server, "pull-bot", "perm=pull"),
        "robot-repo-all": create_robot(server, "repo-bot", "perm/hosted=pull,push,delete"),
    }
    admin = OciClient(server.url, server.admin_auth)
    auth: dict[str, tuple[str, str] | None] = {
        "anonymous": None,
        **{role: (f"u-{role}", PASSWORD) for role in ROLES},
        "project-admin": ("u-padmin", PASSWORD),
        "other-project": ("u-outsider", PASSWORD),
        "system-admin": server.admin_auth,
        "robot-pull": ("sa$pull-bot", keys["robot-pull"]),
        "robot-repo-all": ("sa$repo-bot", keys["robot-repo-all"]),
    }
    images: dict[str, Pushed] = {}
    layers: dict[str, bytes] = {}
    for name in (BASE, OTHER_BASE, FOREIGN_BASE, PUBLIC_PROJECT_BASE, PUBLIC_REPO_BASE):
        images[name], layers[name] = _push_base(admin, name)
    return World(server, admin, auth, images, layers)


class Client:
    """Requests as one principal: Basic credentials, a Bearer token, or nothing."""

    def __init__(self, base: str, headers: dict[str, str]) -> None:
        self.base = base
        self.headers = headers

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        headers = {**self.headers, **kwargs.pop("headers", {})}
        url = path if path.startswith("http") else self.base + path
        return requests.request(method, url, headers=headers, timeout=60, **kwargs)


Connect = Callable[[list[str]], Client]


def connector(world: World, principal: str, mode: str) -> Connect:
    """For Basic mode, the principal's credentials (or none); for Bearer mode, a token asked
    for the given scopes with those credentials (anonymously for anonymous)."""
    auth = world.basic(principal)

    def connect(scopes: list[str]) -> Client:
        if mode == "bearer":
            return Client(world.server.url, bearer(fetch_token(world.server, auth, scopes)))
        return Client(world.server.url, basic_header(*auth) if auth else {})

    return connect


@dataclass(frozen=True)
class Case:
    response: requests.Response
    # The name whose scope a refusal's challenge must carry.
    name: str
    # Checks the request's effect, given whether it was allowed.
    effect: Callable[[bool], None] | None = None


def _fresh_tag(world: World) -> str:
    tag = "t-" + uuid.uuid4().hex[:12]
    world.admin.push_manifest(BASE, tag, world.images[BASE].body)
    return tag


def _manifest_get(world: World, connect: Connect) -> Case:
    response = connect([repository_scope(BASE)]).request(
        "GET", f"/v2/{BASE}/manifests/latest", headers={"Accept": OCI_MANIFEST}
    )

    def effect(allowed: bool) -> None:
        if allowed:
            assert response.content == world.images[BASE].body

    return Case(response, BASE, effect)


def _manifest_head(world: World, connect: Connect) -> Case:
    response = connect([repository_scope(BASE)]).request(
        "HEAD", f"/v2/{BASE}/manifests/latest", headers={"Accept": OCI_MANIFEST}
    )

    def effect(allowed: bool) -> None:
        if allowed:
            assert response.headers["Docker-Content-Digest"] == world.images[BASE].digest

    return Case(response, BASE, effect)


def _manifest_put(world: World, connect: Connect) -> Case:
    tag = "put-" + uuid.uuid4().hex[:12]
    response = connect([repository_scope(BASE)]).request(
        "PUT",
        f"/v2/{BASE}/manifests/{tag}",
        data=world.images[BASE].body,
        headers={"Content-Type": OCI_MANIFEST},
    )

    def effect(allowed: bool) -> None:
        stored = world.admin.get_manifest(BASE, tag)
        assert stored.status_code == (200 if allowed else 404), stored.text

    return Case(response, BASE, effect)


def _manifest_delete(world: World, connect: Connect) -> Case:
    tag = _fresh_tag(world)
    response = connect([repository_scope(BASE)]).request("DELETE", f"/v2/{BASE}/manifests/{tag}")

    def effect(allowed: bool) -> None:
        stored = world.admin.get_manifest(BASE, tag)
        assert stored.status_code == (404 if allowed else 200), stored.text

    return Case(response, BASE, effect)


def _blob_get(world: World, connect: Connect) -> Case:
    layer = world.layers[BASE]
    response = connect([repository_scope(BASE)]).request("GET", f"/v2/{BASE}/blobs/{sha256(layer)}")

    def effect(allowed: bool) -> None:
        if allowed:
            assert response.content == layer

    return Case(response, BASE, effect)


def _blob_head(world: World, connect: Connect) -> Case:
    layer = world.layers[BASE]
    response = connect([repository_scope(BASE)]).request(
        "HEAD", f"/v2/{BASE}/blobs/{sha256(layer)}"
    )

    def effect(allowed: bool) -> None:
        if allowed:
            assert response.headers["Content-Length"] == str(len(layer))

    return Case(response, BASE, effect)


def _blob_delete(world: World, connect: Connect) -> Case:
    digest = world.admin.push_blob(BASE, os.urandom(64))
    response = connect([repository_scope(BASE)]).request("DELETE", f"/v2/{BASE}/blobs/{digest}")

    def effect(allowed: bool) -> None:
        stored = world.admin.request("HEAD", f"/v2/{BASE}/blobs/{digest}")
        assert stored.status_code == (404 if allowed else 200)

    return Case(response, BASE, effect)


def _upload_post(world: World, connect: Connect) -> Case:
    response = connect([repository_scope(BASE)]).request("POST", f"/v2/{BASE}/blobs/uploads/")

    def effect(allowed: bool) -> None:
        if allowed:
            assert response.headers["Location"].startswith(f"/v2/{BASE}/blobs/uploads/")

    return Case(response, BASE, effect)


def _upload_patch(world: World, connect: Connect) -> Case:
    location = world.admin.start_upload(BASE)
    response = connect([repository_scope(BASE)]).request(
        "PATCH",
        location,
        data=b"abc",
        headers={"Content-Type": "application/octet-stream"},
    )

    def effect(allowed: bool) -> None:
        status = world.admin.request("GET", location)
        assert status.status_code == 204, status.text
        assert status.headers["Range"] == ("0-2" if allowed else "0-0")

    return Case(response, BASE, effect)


def _upload_put(world: World, connect: Connect) -> Case:
    location = world.admin.start_upload(BASE)
    data = os.urandom(100)
    response = connect([repository_scope(BASE)]).request(
        "PUT",
        location,
        params={"digest": sha256(data)},
        data=data,
        headers={"Content-Type": "application/octet-stream"},
    )

    def effect(allowed: bool) -> None:
        stored = world.admin.request("HEAD", f"/v2/{BASE}/blobs/{sha256(data)}")
        assert stored.status_code == (200 if allowed else 404)

    return Case(response, BASE, effect)


def _upload_get(world: World, connect: Connect) -> Case:
    location = world.admin.start_upload(BASE)
    response = connect([repository_scope(BASE)]).request("GET", location)

    def effect(allowed: bool) -> None:
        if allowed:
            assert response.headers["Range"] == "0-0"

    return Case(response, BASE, effect)


def _upload_delete(world: World, connect: Connect) -> Case:
    location = world.admin.start_upload(BASE)
    response = connect([repository_scope(BASE)]).request("DELETE", location)

    def effect(allowed: bool) -> None:
        status = world.admin.request("GET", location)
        assert status.status_code == (404 if allowed else 204), status.text

    return Case(response, BASE, effect)


def _mount(world: World, connect: Connect) -> Case:
    target = f"{HOSTED}/mount-{uuid.uuid4().hex[:10]}"
    digest = sha256(world.layers[BASE])
    response = connect([repository_scope(target), repository_scope(BASE, "pull")]).request(
        "POST", f"/v2/{target}/blobs/uploads/", params={"mount": digest, "from": BASE}
    )

    def effect(allowed: bool) -> None:
        stored = world.admin.request("HEAD", f"/v2/{target}/blobs/{digest}")
        assert stored.status_code == (200 if allowed else 404)

    return Case(response, target, effect)


def _tags_list(world: World, connect: Connect) -> Case:
    response = connect([repository_scope(BASE)]).request("GET", f"/v2/{BASE}/tags/list")

    def effect(allowed: bool) -> None:
        if allowed:
            assert "latest" in response.json()["tags"]

    return Case(response, BASE, effect)


def _referrers(world: World, connect: Connect) -> Case:
    digest = world.images[BASE].digest
    response = connect([repository_scope(BASE)]).request("GET", f"/v2/{BASE}/referrers/{digest}")

    def effect(allowed: bool) -> None:
        if allowed:
            assert response.json()["manifests"] == []

    return Case(response, BASE, effect)


@dataclass(frozen=True)
class Endpoint:
    needed: str
    ok: int
    run: Callable[[World, Connect], Case]


PULL, WRITE, DELETE = "pull", "pull,push", "delete"
ENDPOINTS: dict[str, Endpoint] = {
    "manifest-GET": Endpoint(PULL, 200, _manifest_get),
    "manifest-HEAD": Endpoint(PULL, 200, _manifest_head),
    "manifest-PUT": Endpoint(WRITE, 201, _manifest_put),
    "manifest-DELETE": Endpoint(DELETE, 202, _manifest_delete),
    "blob-GET": Endpoint(PULL, 200, _blob_get),
    "blob-HEAD": Endpoint(PULL, 200, _blob_head),
    "blob-DELETE": Endpoint(DELETE, 202, _blob_delete),
    "upload-POST": Endpoint(WRITE, 202, _upload_post),
    "upload-PATCH": Endpoint(WRITE, 202, _upload_patch),
    "upload-PUT": Endpoint(WRITE, 201, _upload_put),
    "upload-GET": Endpoint(WRITE, 204, _upload_get),
    "upload-DELETE": Endpoint(WRITE, 204, _upload_delete),
    "mount": Endpoint(WRITE, 201, _mount),
    "tags-list": Endpoint(PULL, 200, _tags_list),
    "referrers": Endpoint(PULL, 200, _referrers),
}


def _challenge_actions(needed: str) -> str:
    wanted = {"pull", "push", *needed.split(",")}
    return ",".join(a for a in ("pull", "push", "delete") if a in wanted)


@pytest.mark.parametrize("mode", ["basic", "bearer"])
@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
@pytest.mark.parametrize("principal", list(PRINCIPALS))
def test_matrix(world: World, principal: str, endpoint: str, mode: str) -> None:
    spec = ENDPOINTS[endpoint]
    case = spec.run(world, connector(world, principal, mode))
    allowed = set(spec.needed.split(",")) <= set(PRINCIPALS[principal].split(","))
    if allowed:
        expect(case.response, spec.ok)
    elif mode == "bearer":
        expect(
            case.response,
            401,
            "UNAUTHORIZED",
            challenge(
                world.server, case.name, _challenge_actions(spec.needed), "insufficient_scope"
            ),
        )
    elif principal == "anonymous":
        expect(
            case.response,
            401,
            "UNAUTHORIZED",
            challenge(world.server, case.name, _challenge_actions(spec.needed)),
        )
    else:
        expect(case.response, 403, "DENIED")
        assert "WWW-Authenticate" not in case.response.headers
    if case.effect is not None:
        case.effect(allowed)


@pytest.mark.parametrize("principal", list(PRINCIPALS))
def test_token_holds_only_what_is_permitted(world: World, principal: str) -> None:
    """Asked for everything on three repositories and the catalog, the token holds the
    intersection with what the principal may do, and asking is never an error."""
    token = fetch_token(
        world.server,
        world.basic(principal),
        [
            repository_scope(BASE),
            repository_scope(OTHER_BASE),
            f"{repository_scope(FOREIGN_BASE)} registry:catalog:*",
        ],
    )
    expected: dict[tuple[str, str], list[str]] = {}
    for name, actions in (
        (BASE, PRINCIPALS[principal]),
        (OTHER_BASE, "" if principal == "robot-repo-all" else PRINCIPALS[principal]),
        (FOREIGN_BASE, ALL if principal in ("other-project", "system-admin") else ""),
    ):
        if actions:
            expected[("repository", name)] = actions.split(",")
    if principal != "anonymous":
        expected[("registry", "catalog")] = ["*"]
    assert access_of(token) == expected


def _catalog(client: Client) -> set[str]:
    response = client.request("GET", "/v2/_catalog", params={"n": "10000"})
    expect(response, 200)
    names: list[str] = response.json()["repositories"]
    return set(names)


CATALOG_VISIBLE: dict[str, set[str]] = {
    "anonymous": set(),
    "reader": {BASE, OTHER_BASE},
    "developer": {BASE, OTHER_BASE},
    "maintainer": {BASE, OTHER_BASE},
    "project-admin": {BASE, OTHER_BASE},
    "other-project": {FOREIGN_BASE},
    "system-admin": {BASE, OTHER_BASE, FOREIGN_BASE},
    "robot-pull": {BASE, OTHER_BASE},
    "robot-repo-all": {BASE},
}


@pytest.mark.parametrize("mode", ["basic", "bearer"])
@pytest.mark.parametrize("principal", list(PRINCIPALS))
def test_catalog_lists_only_what_the_caller_may_pull(
    world: World, principal: str, mode: str
) -> None:
    client = connector(world, principal, mode)(["registry:catalog:*"])
    names = _catalog(client)
    known = {BASE, OTHER_BASE, FOREIGN_BASE, PUBLIC_PROJECT_BASE, PUBLIC_REPO_BASE}
    # Anonymous-read names are everyone's.
    assert names & known == CATALOG_VISIBLE[principal] | {PUBLIC_PROJECT_BASE, PUBLIC_REPO_BASE}


# Anonymous read


@pytest.mark.parametrize("name", [PUBLIC_PROJECT_BASE, PUBLIC_REPO_BASE])
def test_anonymous_read_lets_anyone_pull(world: World, name: str) -> None:
    anonymous = OciClient(world.server.url)
    image = world.images[name]
    layer = world.layers[name]
    got = anonymous.request("GET", f"/v2/{name}/manifests/latest")
    expect(got, 200)
    assert got.content == image.body
    expect(anonymous.request("HEAD", f"/v2/{name}/manifests/{image.digest}"), 200)
    blob = anonymous.request("GET", f"/v2/{name}/blobs/{sha256(layer)}")
    expect(blob, 200)
    assert blob.content == layer
    expect(anonymous.request("HEAD", f"/v2/{name}/blobs/{sha256(layer)}"), 200)
    assert anonymous.tags(name) == ["latest"]
    expect(anonymous.request("GET", f"/v2/{name}/referrers/{image.digest}"), 200)
    # An image name not pushed yet is simply unknown (the repository is readable).
    missing = name.rsplit("/", 1)[0] + "/never-pushed"
    expect(anonymous.request("GET", f"/v2/{missing}/manifests/latest"), 404, "MANIFEST_UNKNOWN")


@pytest.mark.parametrize("name", [PUBLIC_PROJECT_BASE, PUBLIC_REPO_BASE])
def test_anonymous_read_does_not_let_anyone_push_or_delete(world: World, name: str) -> None:
    anonymous = OciClient(world.server.url)
    image = world.images[name]
    expect(
        anonymous.request("POST", f"/v2/{name}/blobs/uploads/"),
        401,
        "UNAUTHORIZED",
        challenge(world.server, name, "pull,push"),
    )
    expect(
        anonymous.put_manifest(name, "pushed-anonymously", image.body),
        401,
        "UNAUTHORIZED",
        challenge(world.server, name, "pull,push"),
    )
    expect(
        anonymous.request("DELETE", f"/v2/{name}/manifests/latest"),
        401,
        "UNAUTHORIZED",
        challenge(world.server, name, "pull,push,delete"),
    )
    expect(
        anonymous.request("DELETE", f"/v2/{name}/blobs/{sha256(world.layers[name])}"),
        401,
        "UNAUTHORIZED",
        challenge(world.server, name, "pull,push,delete"),
    )
    assert world.admin.get_manifest(name, "latest").status_code == 200
    assert world.admin.get_manifest(name, "pushed-anonymously").status_code == 404


@pytest.mark.parametrize("name", [PUBLIC_PROJECT_BASE, PUBLIC_REPO_BASE])
def test_anonymous_token_for_a_public_name_holds_pull_only(world: World, name: str) -> None:
    token = fetch_token(world.server, None, [repository_scope(name)])
    assert access_of(token) == {("repository", name): ["pull"]}
    pulled = requests.get(
        f"{world.server.url}/v2/{name}/manifests/latest", headers=bearer(token), timeout=30
    )
    expect(pulled, 200)
    expect(
        requests.post(
            f"{world.server.url}/v2/{name}/blobs/uploads/", headers=bearer(token), timeout=30
        ),
        401,
        "UNAUTHORIZED",
        challenge(world.server, name, "pull,push", "insufficient_scope"),
    )


def test_anonymous_read_of_one_repository_opens_no_other(world: World) -> None:
    """perm/pubrepo is public; the rest of perm is not."""
    anonymous = OciClient(world.server.url)
    for name in (BASE, OTHER_BASE):
        expect(
            anonymous.get_manifest(name, "latest"),
            401,
            "UNAUTHORIZED",
            challenge(world.server, name, "pull,push"),
        )
    # Nor does a public project open another project.
    expect(
        anonymous.get_manifest(FOREIGN_BASE, "latest"),
        401,
        "UNAUTHORIZED",
        challenge(world.server, FOREIGN_BASE, "pull,push"),
    )


def test_members_of_other_projects_pull_public_names_but_do_not_push(world: World) -> None:
    outsider = OciClient(world.server.url, world.basic("other-project"))
    assert outsider.get_manifest(PUBLIC_REPO_BASE, "latest").status_code == 200
    assert outsider.get_manifest(PUBLIC_PROJECT_BASE, "latest").status_code == 200
    expect(outsider.request("POST", f"/v2/{PUBLIC_REPO_BASE}/blobs/uploads/"), 403, "DENIED")
    expect(outsider.request("POST", f"/v2/{PUBLIC_PROJECT_BASE}/blobs/uploads/"), 403, "DENIED")


# One project's members in another project


@pytest.mark.parametrize("principal", ["project-admin", "maintainer", "reader", "robot-pull"])
def test_a_member_of_one_project_cannot_read_another(world: World, principal: str) -> None:
    member = OciClient(world.server.url, world.basic(principal))
    expect(member.get_manifest(FOREIGN_BASE, "latest"), 403, "DENIED")
    expect(member.request("GET", f"/v2/{FOREIGN_BASE}/tags/list"), 403, "DENIED")
    digest = sha256(world.layers[FOREIGN_BASE])
    expect(member.request("HEAD", f"/v2/{FOREIGN_BASE}/blobs/{digest}"), 403, "DENIED")
    token = fetch_token(world.server, world.basic(principal), [repository_scope(FOREIGN_BASE)])
    assert access_of(token) == {}
    expect(
        requests.get(
            f"{world.server.url}/v2/{FOREIGN_BASE}/manifests/latest",
            headers=bearer(token),
            timeout=30,
        ),
        401,
        "UNAUTHORIZED",
        challenge(world.server, FOREIGN_BASE, "pull,push", "insufficient_scope"),
    )


def test_a_token_for_one_name_does_not_open_another(world: World) -> None:
    """Access is per name: a token for perm/hosted/base is no use on perm/hosted/other-img,
    even for a principal allowed there."""
    token = fetch_token(world.server, world.basic("maintainer"), [repository_scope(BASE)])
    other = f"{HOSTED}/other-img"
    expect(
        requests.get(f"{world.server.url}/v2/{other}/tags/list", headers=bearer(token), timeout=30),
        401,
        "UNAUTHORIZED",
        challenge(world.server, other, "pull,push", "insufficient_scope"),
    )


def test_robot_grant_on_one_repository_opens_no_other(world: World) -> None:
    robot = OciClient(world.server.url, world.basic("robot-repo-all"))
    expect(robot.get_manifest(OTHER_BASE, "latest"), 403, "DENIED")
    expect(robot.request("POST", f"/v2/{OTHER_BASE}/blobs/uploads/"), 403, "DENIED")
    assert robot.get_manifest(BASE, "latest").status_code == 200


# Mounts need pull on `from`, else they are plain uploads


@pytest.mark.parametrize(
    ("principal", "source"),
    [
        ("developer", FOREIGN_BASE),  # no role in perm2
        ("robot-repo-all", OTHER_BASE),  # granted perm/hosted only
        ("maintainer", "nope/nothing/here"),  # no such name
    ],
)
@pytest.mark.parametrize("mode", ["basic", "bearer"])
def test_mount_without_pull_on_the_source_is_a_plain_upload(
    world: World, principal: str, source: str, mode: str
) -> None:
    target = f"{HOSTED}/mount-{uuid.uuid4().hex[:10]}"
    layer = world.layers.get(source, world.layers[FOREIGN_BASE])
    digest = sha256(layer)
    client = connector(world, principal, mode)(
        [repository_scope(target), repository_scope(source, "pull")]
    )
    response = client.request(
        "POST", f"/v2/{target}/blobs/uploads/", params={"mount": digest, "from": source}
    )
    expect(response, 202)
    assert response.headers["Location"].startswith(f"/v2/{target}/blobs/uploads/")
    expect(world.admin.request("HEAD", f"/v2/{target}/blobs/{digest}"), 404)


def test_mount_with_pull_on_the_source_in_another_project(world: World) -> None:
    """The positive control: the system administrator may pull perm2, so the mount works."""
    target = f"{HOSTED}/mount-{uuid.uuid4().hex[:10]}"
    digest = sha256(world.layers[FOREIGN_BASE])
    response = world.admin.request(
        "POST", f"/v2/{target}/blobs/uploads/", params={"mount": digest, "from": FOREIGN_BASE}
    )
    expect(response, 201)
    assert response.headers["Docker-Content-Digest"] == digest
    expect(world.admin.request("HEAD", f"/v2/{target}/blobs/{digest}"), 200)


def test_mount_with_a_token_lacking_the_source_scope_is_a_plain_upload(world: World) -> None:
    """The principal may pull the source, but its token does not say so."""
    target = f"{HOSTED}/mount-{uuid.uuid4().hex[:10]}"
    digest = sha256(world.layers[BASE])
    token = fetch_token(world.server, world.basic("developer"), [repository_scope(target)])
    response = requests.post(
        f"{world.server.url}/v2/{target}/blobs/uploads/",
        params={"mount": digest, "from": BASE},
        headers=bearer(token),
        timeout=30,
    )
    expect(response, 202)
    expect(world.admin.request("HEAD", f"/v2/{target}/blobs/{digest}"), 404)


# Names that do not exist, and GET /v2/


@pytest.mark.parametrize("name", ["nope/nothing/img", "perm/no-such-repo/img", "solo"])
def test_unknown_names_asked_anonymously_get_the_same_401(world: World, name: str) -> None:
    anonymous = OciClient(world.server.url)
    for method, path, actions in (
        ("GET", f"/v2/{name}/manifests/latest", "pull,push"),
        ("HEAD", f"/v2/{name}/manifests/latest", "pull,push"),
        ("GET", f"/v2/{name}/tags/list", "pull,push"),
        ("POST", f"/v2/{name}/blobs/uploads/", "pull,push"),
        ("DELETE", f"/v2/{name}/manifests/latest", "pull,push,delete"),
    ):
        expect(
            anonymous.request(method, path),
            401,
            "UNAUTHORIZED",
            challenge(world.server, name, actions),
        )
    # With an anonymous token the answer is the one an existing private name gets.
    for existing in (name, BASE):
        token = fetch_token(world.server, None, [repository_scope(existing)])
        assert access_of(token) == {}
        response = requests.get(
            f"{world.server.url}/v2/{existing}/manifests/latest",
            headers=bearer(token),
            timeout=30,
        )
        expect(
            response,
            401,
            "UNAUTHORIZED",
            challenge(world.server, existing, "pull,push", "insufficient_scope"),
        )
        body = json.loads(response.text)
        assert body["errors"][0]["message"] == f"the token does not grant pull on {existing}"


def test_unknown_names_are_404_to_who_has_signed_in(world: World) -> None:
    reader = OciClient(world.server.url, world.basic("reader"))
    expect(reader.get_manifest("nope/nothing/img", "latest"), 404, "NAME_UNKNOWN")


def test_ping_challenges_without_valid_credentials(world: World) -> None:
    """GET /v2/ is 401 with a scope-less challenge to anyone without valid credentials,
    although anonymous-read names exist here; 200 with valid Basic or Bearer credentials."""
    url = world.server.url + "/v2/"
    expected = challenge(world.server)
    expect(requests.get(url, timeout=30), 401, "UNAUTHORIZED", expected)
    expect(
        requests.get(url, auth=("u-reader", "wrong-password"), timeout=30),
        401,
        "UNAUTHORIZED",
        expected,
    )
    expect(
        requests.get(url, auth=("no-such-user", "whatever-password"), timeout=30),
        401,
        "UNAUTHORIZED",
        expected,
    )
    for principal in PRINCIPALS:
        auth = world.basic(principal)
        if auth is None:
            continue
        response = requests.get(url, auth=auth, timeout=30)
        expect(response, 200)
        assert response.headers["Docker-Distribution-API-Version"] == "registry/2.0"
        token = fetch_token(world.server, auth)
        expect(requests.get(url, headers=bearer(token), timeout=30), 200)
    # A token is valid credentials even when anonymous and empty.
    expect(requests.get(url, headers=bearer(fetch_token(world.server, None)), timeout=30), 200)


def test_wrong_basic_password_on_a_resource_is_401_with_the_scope(world: World) -> None:
    response = requests.get(
        f"{world.server.url}/v2/{BASE}/manifests/latest",
        auth=("u-maintainer", "not-the-password"),
        timeout=30,
    )
    expect(response, 401, "UNAUTHORIZED", challenge(world.server, BASE, "pull,push"))
