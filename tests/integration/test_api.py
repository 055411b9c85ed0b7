"""The management API under /api/v1 over the real socket: every endpoint's answers and
refusals, who may do what, secrets shown once and working, and the OpenAPI document.

The server is this module's own: these tests sign in wrongly on purpose, which must not
throttle the shared one (its limit is raised here; `test_throttled_sign_ins_are_429` starts
one with a low limit).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from openapi_spec_validator import validate

from tests.integration.oci_client import OciClient
from tests.integration.server import Server

API = "/api/v1"
JSON = "application/json"
CHALLENGE = 'Basic realm="cargohold"'
PASSWORD = "a-long-enough-password"

Auth = tuple[str, str]


@pytest.fixture(scope="module")
def api_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    instance = Server(tmp_path_factory.mktemp("api") / "data")
    instance.start(env={"CARGOHOLD_LOGIN_FAILURE_LIMIT": "100000"})
    yield instance
    instance.stop()


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


@dataclass
class Api:
    """A client of the API signed in with `auth` (Basic), or `token` (Bearer), or nothing."""

    base: str
    auth: Auth | None = None
    token: str | None = None

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        headers = dict(kwargs.pop("headers", {}))
        if self.token is not None:
            headers["Authorization"] = f"Bearer {self.token}"
        return requests.request(
            method, self.base + API + path, auth=self.auth, headers=headers, timeout=60, **kwargs
        )

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, body: Any = None, **kwargs: Any) -> requests.Response:
        return self.request("POST", path, json=body, **kwargs)

    def patch(self, path: str, body: Any, **kwargs: Any) -> requests.Response:
        return self.request("PATCH", path, json=body, **kwargs)

    def put(self, path: str, body: Any, **kwargs: Any) -> requests.Response:
        return self.request("PUT", path, json=body, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("DELETE", path, **kwargs)


def ok(response: requests.Response, status: int = 200) -> Any:
    assert response.status_code == status, (response.status_code, response.text)
    if status == 204:
        assert response.content == b""
        return None
    assert response.headers["Content-Type"].startswith(JSON)
    return response.json()


def refused(response: requests.Response, status: int, contains: str = "") -> str:
    """The answer is the API's error JSON with `status`; its message."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["Content-Type"].startswith(JSON), response.headers
    body = response.json()
    assert set(body) == {"message"}, body
    message: str = body["message"]
    assert contains.lower() in message.lower(), message
    if status == 401:
        assert response.headers["WWW-Authenticate"] == CHALLENGE
    return message


@pytest.fixture(scope="module")
def admin(api_server: Server) -> Api:
    return Api(api_server.url, api_server.admin_auth)


@pytest.fixture(scope="module")
def anonymous(api_server: Server) -> Api:
    return Api(api_server.url)


@pytest.fixture
def make_user(admin: Api) -> Callable[..., Api]:
    """A new user (`is_admin` as asked) and a client signed in as it."""

    def make(*, is_admin: bool = False) -> Api:
        name = unique("user-")
        ok(admin.post("/users", {"name": name, "password": PASSWORD, "is_admin": is_admin}), 201)
        return Api(admin.base, (name, PASSWORD))

    return make


@pytest.fixture
def project(admin: Api) -> str:
    """A new private project with the hosted repository `apps`."""
    name = unique("proj-")
    ok(admin.post("/projects", {"name": name}), 201)
    ok(admin.post("/repos", {"project": name, "name": "apps"}), 201)
    return name


def make_robot(admin: Api, grants: list[dict[str, Any]]) -> Api:
    created = ok(admin.post("/robots", {"name": unique("bot-"), "grants": grants}), 201)
    return Api(admin.base, (created["name"], created["key"]))


def set_role(admin: Api, project: str, user: Api, role: str) -> None:
    assert user.auth is not None
    ok(admin.put(f"/projects/{project}/members/{user.auth[0]}", {"role": role}))


def token_for(base: str, auth: Auth | None) -> str:
    response = requests.get(base + "/v2/token", params={"service": "cargohold"}, auth=auth)
    assert response.status_code == 200, response.text
    token: str = response.json()["token"]
    return token


# Authentication and the answers every route shares


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/projects"),
        ("POST", "/projects"),
        ("GET", "/repos/test/hosted"),
        ("POST", "/repos"),
        ("GET", "/users"),
        ("PATCH", "/users/admin"),
        ("DELETE", "/robots/ci"),
        ("POST", "/robots/ci/key"),
        ("PUT", "/projects/test/members/admin"),
    ],
)
def test_anonymous_callers_get_a_basic_challenge(anonymous: Api, method: str, path: str) -> None:
    response = anonymous.request(method, path, json={"name": "x"})
    refused(response, 401, "authentication required")


def test_wrong_or_malformed_credentials_are_401(api_server: Server, anonymous: Api) -> None:
    refused(Api(api_server.url, ("admin", "wrong-password")).get("/projects"), 401, "invalid")
    refused(Api(api_server.url, (unique("nobody-"), "x")).get("/projects"), 401)
    refused(anonymous.get("/projects", headers={"Authorization": "Basic !!!"}), 401, "malformed")
    refused(Api(api_server.url, token="not-a-token").get("/projects"), 401)


def test_an_anonymous_token_is_not_a_sign_in(api_server: Server) -> None:
    token = token_for(api_server.url, None)
    refused(Api(api_server.url, token=token).get("/projects"), 401)


def test_a_bearer_token_acts_with_the_accounts_live_permissions(
    admin: Api, make_user: Callable[..., Api]
) -> None:
    user = make_user(is_admin=True)
    assert user.auth is not None
    name = user.auth[0]
    # A token without any scope: the API does not look at scopes.
    bearer = Api(admin.base, token=token_for(admin.base, user.auth))
    assert name in [u["name"] for u in ok(bearer.get("/users"))]
    ok(admin.patch(f"/users/{name}", {"is_admin": False}))
    refused(bearer.get("/users"), 403, "administrators")
    ok(admin.patch(f"/users/{name}", {"is_admin": True}))
    ok(bearer.get("/users"))
    ok(admin.patch(f"/users/{name}", {"disabled": True}))
    refused(bearer.get("/projects"), 401, "disabled")


def test_throttled_sign_ins_are_429_with_retry_after(tmp_path: Path) -> None:
    server = Server(tmp_path / "data")
    server.start(env={"CARGOHOLD_LOGIN_FAILURE_LIMIT": "2"})
    try:
        wrong = Api(server.url, ("admin", "wrong-password"))
        refused(wrong.get("/projects"), 401)
        refused(wrong.get("/projects"), 401)
        for client in (wrong, Api(server.url, server.admin_auth)):
            response = client.get("/projects")
            refused(response, 429, "too many failed sign-ins")
            assert 1 <= int(response.headers["Retry-After"]) <= 301
    finally:
        server.stop()


def test_unknown_endpoints_and_methods_answer_json(admin: Api) -> None:
    refused(admin.get("/nothing-here"), 404, "no API endpoint")
    refused(admin.get(""), 404, "no API endpoint")
    response = admin.delete("/projects")
    refused(response, 405, "DELETE is not supported")
    assert set(response.headers["Allow"].split(", ")) == {"GET", "POST"}


@pytest.mark.parametrize(
    ("data", "contains"),
    [
        (b"{not json", "not valid JSON"),
        (b"", "JSON request body is required"),
        (b"[1, 2]", "should be an object"),
        (b'{"name": 7}', "name: Input should be a valid string"),
        (b'{"name": "x", "anonymous_read": "yes"}', "anonymous_read: Input should be a valid"),
        (b'{"name": "x", "colour": "red"}', "colour: unknown field"),
        (b"{}", "name: Field required"),
    ],
)
def test_bad_bodies_are_400(admin: Api, data: bytes, contains: str) -> None:
    response = admin.request("POST", "/projects", data=data, headers={"Content-Type": JSON})
    refused(response, 400, contains)


def test_the_openapi_document_lists_every_route_with_its_schemas(anonymous: Api) -> None:
    response = anonymous.get("/openapi.json")
    document = ok(response)
    validate(document)
    assert document["openapi"].startswith("3.1")
    expected = {
        ("get", "/projects"),
        ("post", "/projects"),
        ("get", "/projects/{project}"),
        ("patch", "/projects/{project}"),
        ("get", "/projects/{project}/members"),
        ("put", "/projects/{project}/members/{user}"),
        ("delete", "/projects/{project}/members/{user}"),
        ("get", "/repos"),
        ("post", "/repos"),
        ("get", "/repos/{project}/{name}"),
        ("patch", "/repos/{project}/{name}"),
        ("get", "/repos/{project}/{name}/tags"),
        ("post", "/repos/{project}/{name}/cleanup"),
        ("get", "/users"),
        ("post", "/users"),
        ("get", "/users/{name}"),
        ("patch", "/users/{name}"),
        ("delete", "/users/{name}"),
        ("get", "/robots"),
        ("post", "/robots"),
        ("get", "/robots/{name}"),
        ("patch", "/robots/{name}"),
        ("delete", "/robots/{name}"),
        ("post", "/robots/{name}/key"),
        ("post", "/gc"),
        ("get", "/openapi.json"),
    }
    listed = {
        (method, path.removeprefix(API))
        for path, operations in document["paths"].items()
        for method in operations
    }
    assert listed == expected
    schemas = document["components"]["schemas"]
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            body = operation.get("requestBody")
            if body is not None:
                ref = body["content"][JSON]["schema"]["$ref"]
                assert ref.removeprefix("#/components/schemas/") in schemas, (method, path)
            success = [code for code in operation["responses"] if code.startswith("2")]
            assert len(success) == 1, (method, path)
            if success != ["204"]:
                assert "schema" in operation["responses"][success[0]]["content"][JSON]
    assert set(schemas["RepositoryCreate"]["properties"]) == {
        "project",
        "name",
        "format",
        "repository_type",
        "remote_url",
        "cache_ttl",
        "flat_alias_prefix",
        "is_catch_all",
        "host_name",
        "anonymous_read",
        "upstream_username",
        "upstream_password",
        "untagged_manifests",
    }
    update = schemas["RepositoryUpdate"]["properties"]
    assert {"flat_alias_prefix", "is_catch_all", "host_name"} <= set(update)
    patch = document["paths"]["/api/v1/repos/{project}/{name}"]["patch"]
    assert "409" in patch["responses"]


# Projects


def test_project_lifecycle(admin: Api) -> None:
    name = unique("proj-")
    before = time.time()
    created = ok(admin.post("/projects", {"name": name}), 201)
    assert set(created) == {
        "name",
        "anonymous_read",
        "created_at",
        "quota_bytes",
        "usage_bytes",
    }
    assert created["quota_bytes"] is None and created["usage_bytes"] == 0
    assert created["name"] == name and created["anonymous_read"] is False
    assert int(before) <= created["created_at"] <= time.time()
    assert ok(admin.get(f"/projects/{name}")) == created
    assert created in ok(admin.get("/projects"))
    changed = ok(admin.patch(f"/projects/{name}", {"anonymous_read": True}))
    assert changed == {**created, "anonymous_read": True}
    assert ok(admin.patch(f"/projects/{name}", {})) == changed
    assert ok(admin.get(f"/projects/{name}"))["anonymous_read"] is True


def test_project_refusals(admin: Api, project: str) -> None:
    refused(admin.post("/projects", {"name": project}), 409, "already exists")
    refused(admin.post("/projects", {"name": "Not Valid!"}), 400, "invalid")
    refused(admin.post("/projects", {"name": "x", "anonymous_read": 1}), 400, "anonymous_read")
    missing = unique("missing-")
    refused(admin.get(f"/projects/{missing}"), 404, "does not exist")
    refused(admin.patch(f"/projects/{missing}", {"anonymous_read": True}), 404)
    refused(admin.patch(f"/projects/{project}", {"name": "renamed"}), 400, "unknown field")
    refused(admin.get(f"/projects/{missing}/members"), 404)


def test_who_sees_and_changes_projects(
    admin: Api, make_user: Callable[..., Api], project: str
) -> None:
    outsider, reader, owner = make_user(), make_user(), make_user()
    set_role(admin, project, reader, "reader")
    set_role(admin, project, owner, "admin")

    refused(outsider.post("/projects", {"name": unique("p-")}), 403, "administrators")
    refused(owner.post("/projects", {"name": unique("p-")}), 403)
    assert project not in [p["name"] for p in ok(outsider.get("/projects"))]
    refused(outsider.get(f"/projects/{project}"), 404, "does not exist")
    refused(outsider.patch(f"/projects/{project}", {"anonymous_read": True}), 404)

    assert project in [p["name"] for p in ok(reader.get("/projects"))]
    assert ok(reader.get(f"/projects/{project}"))["name"] == project
    refused(reader.patch(f"/projects/{project}", {"anonymous_read": True}), 403, project)

    assert ok(owner.patch(f"/projects/{project}", {"anonymous_read": True}))["anonymous_read"]
    # Now anyone signed in sees it.
    assert ok(outsider.get(f"/projects/{project}"))["anonymous_read"] is True


def test_admins_see_every_project(admin: Api, project: str) -> None:
    names = [p["name"] for p in ok(admin.get("/projects"))]
    assert project in names and names == sorted(names)


# Repositories


def test_repository_lifecycle(api_server: Server, admin: Api, project: str) -> None:
    body = {
        "project": project,
        "name": "images",
        "format": "docker",
        "repository_type": "hosted",
        "remote_url": None,
        "cache_ttl": None,
        "flat_alias_prefix": None,
        "is_catch_all": False,
        "host_name": None,
        "anonymous_read": False,
        "untagged_manifests": "keep",
    }
    created = ok(admin.post("/repos", body), 201)
    assert created == {
        **body,
        "created_at": created["created_at"],
        "has_upstream_credentials": False,
        "cleanup_policy": None,
        "cache_max_age_days": None,
        "cache_max_bytes": None,
    }
    assert isinstance(created["created_at"], int)
    assert ok(admin.get(f"/repos/{project}/images")) == created
    assert created in ok(admin.get("/repos"))
    changed = ok(admin.patch(f"/repos/{project}/images", {"anonymous_read": True}))
    assert changed == {**created, "anonymous_read": True}
    assert ok(admin.patch(f"/repos/{project}/images", {})) == changed
    # It serves /v2 at once, and anonymous read took effect.
    pushed = OciClient(api_server.url, api_server.admin_auth).push_image(f"{project}/images/app")
    response = OciClient(api_server.url).get_manifest(f"{project}/images/app", "latest")
    assert response.status_code == 200 and response.content == pushed.body


def test_a_minimal_repository_body_makes_a_hosted_docker_repository(
    admin: Api, project: str
) -> None:
    created = ok(admin.post("/repos", {"project": project, "name": "min"}), 201)
    assert created["repository_type"] == "hosted" and created["format"] == "docker"
    # cache_ttl only concerns proxy repositories: accepted, and nothing to keep for a hosted one.
    created = ok(admin.post("/repos", {"project": project, "name": "ttl", "cache_ttl": 60}), 201)
    assert created["cache_ttl"] is None


@pytest.mark.parametrize(
    ("fields", "contains"),
    [
        ({"repository_type": "proxy"}, "a proxy repository needs a remote_url"),
        ({"remote_url": "https://registry-1.docker.io"}, "only a proxy has one"),
        ({"repository_type": "proxy", "remote_url": "registry-1.docker.io"}, "http(s) URL"),
        ({"upstream_username": "u", "upstream_password": "p"}, "need a remote_url"),
        ({"flat_alias_prefix": "Common/External/"}, "is not a name prefix"),
        ({"flat_alias_prefix": "common//external"}, "is not a name prefix"),
        ({"host_name": "https://hub.example.test/"}, "is not a host name"),
    ],
)
def test_unsupported_or_inconsistent_repositories_are_refused(
    admin: Api, project: str, fields: dict[str, Any], contains: str
) -> None:
    name = unique("r-")
    message = refused(admin.post("/repos", {"project": project, "name": name, **fields}), 400)
    assert contains in message
    refused(admin.get(f"/repos/{project}/{name}"), 404)


def test_a_project_quota_is_set_shown_and_removed(admin: Api, project: str) -> None:
    assert ok(admin.patch(f"/projects/{project}", {"quota_bytes": 5000}))["quota_bytes"] == 5000
    kept = ok(admin.patch(f"/projects/{project}", {"anonymous_read": False}))
    assert (kept["quota_bytes"], kept["usage_bytes"]) == (5000, 0)
    assert ok(admin.patch(f"/projects/{project}", {"quota_bytes": None}))["quota_bytes"] is None
    refused(admin.patch(f"/projects/{project}", {"quota_bytes": -1}), 400, "quota_bytes")
    created = ok(admin.post("/projects", {"name": unique("proj-"), "quota_bytes": 7}), 201)
    assert created["quota_bytes"] == 7


def test_cleanup_policies_and_cache_limits_are_set_shown_and_removed(
    admin: Api, project: str
) -> None:
    policy = {"keep_last": 3, "older_than_days": 30, "keep_patterns": ["latest"]}
    changed = ok(admin.patch(f"/repos/{project}/apps", {"cleanup_policy": policy}))
    assert changed["cleanup_policy"] == {
        **policy,
        "older_than_days": 30.0,
        "unpulled_days": None,
        "match_patterns": [],
    }
    assert (
        ok(admin.patch(f"/repos/{project}/apps", {"anonymous_read": False}))["cleanup_policy"]
        == changed["cleanup_policy"]
    )
    bad = {"cleanup_policy": {"keep_patterns": ["v["]}}
    refused(admin.patch(f"/repos/{project}/apps", bad), 400, "not a regular expression")
    refused(admin.patch(f"/repos/{project}/apps", {"cache_max_bytes": 10}), 400, "only a proxy")
    assert (
        ok(admin.patch(f"/repos/{project}/apps", {"cleanup_policy": None}))["cleanup_policy"]
        is None
    )
    proxy = {"project": project, "name": "hub", "repository_type": "proxy"}
    ok(admin.post("/repos", {**proxy, "remote_url": "https://registry.example.test"}), 201)
    limits = {"cache_max_age_days": 14, "cache_max_bytes": 10**9}
    assert ok(admin.patch(f"/repos/{project}/hub", limits)).items() >= limits.items()
    refused(admin.patch(f"/repos/{project}/hub", {"cleanup_policy": {}}), 400, "hosted")
    removed = ok(admin.patch(f"/repos/{project}/hub", {"cache_max_bytes": None}))
    assert (removed["cache_max_age_days"], removed["cache_max_bytes"]) == (14, None)


def test_flat_routing_fields_are_set_shown_changed_and_removed(
    api_server: Server, admin: Api, project: str
) -> None:
    alias = unique("alias-")
    host = f"{unique('h-')}.example.test"
    body = {
        "project": project,
        "name": "flat",
        "flat_alias_prefix": f"/{alias}/external",
        "is_catch_all": True,
        "host_name": host.upper(),
    }
    created = ok(admin.post("/repos", body), 201)
    try:
        assert (created["flat_alias_prefix"], created["is_catch_all"], created["host_name"]) == (
            f"{alias}/external/",
            True,
            host,
        )
        assert ok(admin.get(f"/repos/{project}/flat")) == created
        # The alias serves /v2 at once.
        pushed = OciClient(api_server.url, api_server.admin_auth).push_image(
            f"{alias}/external/app"
        )
        canonical = OciClient(api_server.url, api_server.admin_auth)
        assert canonical.get_manifest(f"{project}/flat/app", "latest").content == pushed.body
        # A clash names the other repository, and changes nothing.
        message = refused(
            admin.post("/repos", {"project": project, "name": "x", "is_catch_all": True}), 409
        )
        assert f"{project}/flat is already the catch-all repository" == message
        message = refused(
            admin.patch(f"/repos/{project}/apps", {"flat_alias_prefix": f"{alias}/external"}),
            409,
        )
        assert f"flat alias of {project}/flat" in message
        message = refused(admin.patch(f"/repos/{project}/apps", {"host_name": host}), 409)
        assert f"already bound to {project}/flat" in message
        assert ok(admin.get(f"/repos/{project}/apps"))["flat_alias_prefix"] is None
        # Changed: only what is given.
        changed = ok(admin.patch(f"/repos/{project}/flat", {"flat_alias_prefix": alias}))
        assert changed == {**created, "flat_alias_prefix": f"{alias}/"}
    finally:
        removed = ok(
            admin.patch(
                f"/repos/{project}/flat",
                {"flat_alias_prefix": "", "is_catch_all": False, "host_name": ""},
            )
        )
    assert (removed["flat_alias_prefix"], removed["is_catch_all"], removed["host_name"]) == (
        None,
        False,
        None,
    )


def test_only_system_administrators_set_flat_routing(
    admin: Api, make_user: Callable[..., Api], project: str
) -> None:
    owner = make_user()
    set_role(admin, project, owner, "admin")
    message = "only system administrators may set flat_alias_prefix, is_catch_all or host_name"
    for fields in (
        {"flat_alias_prefix": unique("a-")},
        {"is_catch_all": True},
        {"host_name": f"{unique('h-')}.example.test"},
    ):
        refused(owner.post("/repos", {"project": project, "name": "x", **fields}), 403, message)
        refused(owner.patch(f"/repos/{project}/apps", fields), 403, message)
    refused(owner.patch(f"/repos/{project}/apps", {"is_catch_all": False}), 403, message)
    refused(owner.patch(f"/repos/{project}/apps", {"flat_alias_prefix": ""}), 403, message)
    refused(admin.get(f"/repos/{project}/x"), 404)
    # What concerns the project alone stays theirs.
    created = ok(
        owner.post("/repos", {"project": project, "name": "x", "is_catch_all": False}), 201
    )
    assert (created["flat_alias_prefix"], created["is_catch_all"]) == (None, False)
    assert ok(owner.patch(f"/repos/{project}/x", {"anonymous_read": True}))["anonymous_read"]


def test_a_proxy_repository_keeps_its_upstream_credentials_to_itself(
    admin: Api, project: str
) -> None:
    body = {
        "project": project,
        "name": "hub",
        "repository_type": "proxy",
        "remote_url": "https://registry-1.docker.io/",
        "cache_ttl": 600,
        "upstream_username": "someone",
        "upstream_password": "upstream-secret",
    }
    created = ok(admin.post("/repos", body), 201)
    assert created["remote_url"] == "https://registry-1.docker.io"
    assert (created["cache_ttl"], created["has_upstream_credentials"]) == (600, True)
    for answer in (created, ok(admin.get(f"/repos/{project}/hub"), 200)):
        assert "upstream-secret" not in str(answer) and "someone" not in str(answer)
    changed = ok(admin.patch(f"/repos/{project}/hub", {"cache_ttl": 5}), 200)
    assert (changed["cache_ttl"], changed["has_upstream_credentials"]) == (5, True)
    refused(admin.patch(f"/repos/{project}/apps", {"cache_ttl": 5}), 400, "only a proxy")


@pytest.mark.parametrize(
    ("fields", "contains"),
    [
        ({"format": "helm"}, "format: Input should be 'docker'"),
        ({"repository_type": "group"}, "repository_type: Input should be 'hosted' or 'proxy'"),
        ({"cache_ttl": -1}, "cache_ttl: Input should be greater than or equal to 0"),
        ({"is_catch_all": "no"}, "is_catch_all"),
        ({"name": "Bad Name"}, "repository name 'Bad Name' is invalid"),
        ({"type": "hosted"}, "type: unknown field"),
    ],
)
def test_invalid_repository_bodies_are_400(
    admin: Api, project: str, fields: dict[str, Any], contains: str
) -> None:
    refused(admin.post("/repos", {"project": project, "name": "x", **fields}), 400, contains)


def test_repository_conflicts_and_missing_ones(admin: Api, project: str) -> None:
    refused(admin.post("/repos", {"project": project, "name": "apps"}), 409, "already exists")
    missing = unique("missing-")
    refused(admin.post("/repos", {"project": missing, "name": "x"}), 404, "does not exist")
    refused(admin.post("/repos", {"name": "x"}), 400, "project: Field required")
    refused(admin.get(f"/repos/{project}/nope"), 404, "does not exist")
    refused(admin.get(f"/repos/{missing}/apps"), 404)
    refused(admin.patch(f"/repos/{project}/nope", {"anonymous_read": True}), 404)
    refused(admin.patch(f"/repos/{project}/apps", {"flat_alias_prefix": "X/"}), 400, "prefix")
    refused(admin.patch(f"/repos/{project}/apps", {"host_name": "a b"}), 400, "host name")
    refused(admin.patch(f"/repos/{project}/apps", {"is_catch_all": "yes"}), 400, "is_catch_all")
    refused(
        admin.patch(f"/repos/{project}/apps", {"flat_alias_prefix": f"{project}/apps"}),
        409,
        "own canonical prefix",
    )
    refused(admin.patch(f"/repos/{project}/apps", {"repository_type": "proxy"}), 400, "unknown")
    refused(admin.patch(f"/repos/{project}/apps", {"remote_url": "https://r.io"}), 400, "proxy")


def test_project_admins_manage_their_repositories_only(
    admin: Api, make_user: Callable[..., Api], project: str
) -> None:
    owner, developer = make_user(), make_user()
    set_role(admin, project, owner, "admin")
    set_role(admin, project, developer, "developer")
    elsewhere = unique("other-")
    ok(admin.post("/projects", {"name": elsewhere}), 201)

    ok(owner.post("/repos", {"project": project, "name": "mine"}), 201)
    ok(owner.patch(f"/repos/{project}/mine", {"anonymous_read": True}))
    refused(owner.post("/repos", {"project": elsewhere, "name": "x"}), 404)
    set_role(admin, elsewhere, owner, "maintainer")
    refused(owner.post("/repos", {"project": elsewhere, "name": "x"}), 403, "administrators")
    refused(developer.post("/repos", {"project": project, "name": "x"}), 403)
    refused(developer.patch(f"/repos/{project}/apps", {"anonymous_read": True}), 403)


def test_users_see_the_repositories_they_can_pull_from(
    admin: Api, make_user: Callable[..., Api], project: str
) -> None:
    reader, outsider = make_user(), make_user()
    set_role(admin, project, reader, "reader")
    ok(admin.post("/repos", {"project": project, "name": "open", "anonymous_read": True}), 201)

    mine = {(r["project"], r["name"]) for r in ok(reader.get("/repos"))}
    assert {(project, "apps"), (project, "open")} <= mine
    public = {p["name"] for p in ok(admin.get("/projects")) if p["anonymous_read"]}
    for repository in ok(reader.get("/repos")):
        # Its project's repositories, and those anyone may pull from.
        assert repository["project"] in {project, *public} or repository["anonymous_read"]
    theirs = {(r["project"], r["name"]) for r in ok(outsider.get("/repos"))}
    assert (project, "open") in theirs and (project, "apps") not in theirs
    ok(outsider.get(f"/repos/{project}/open"))
    refused(outsider.get(f"/repos/{project}/apps"), 404, "does not exist")
    # Seen through its open repository, the project is visible too; changing it is not.
    ok(outsider.get(f"/projects/{project}"))
    refused(outsider.patch(f"/repos/{project}/open", {"anonymous_read": False}), 403)


def test_robots_see_what_their_grants_name_and_change_nothing(admin: Api, project: str) -> None:
    ok(admin.post("/repos", {"project": project, "name": "other"}), 201)
    robot = make_robot(admin, [{"project": project, "repository": "apps", "actions": ["pull"]}])
    assert [(r["project"], r["name"]) for r in ok(robot.get("/repos"))] == [(project, "apps")]
    assert [p["name"] for p in ok(robot.get("/projects"))] == [project]
    ok(robot.get(f"/repos/{project}/apps"))
    ok(robot.get(f"/projects/{project}"))
    refused(robot.get(f"/repos/{project}/other"), 404)
    refused(robot.get("/repos/test/hosted"), 404)
    message = "robot accounts may only read"
    refused(robot.post("/repos", {"project": project, "name": "x"}), 403, message)
    refused(robot.patch(f"/repos/{project}/apps", {"anonymous_read": True}), 403, message)
    refused(robot.patch(f"/projects/{project}", {"anonymous_read": True}), 403, message)
    refused(robot.post("/projects", {"name": unique("p-")}), 403)
    refused(robot.get(f"/projects/{project}/members"), 403, message)
    refused(robot.get("/users"), 403)
    refused(robot.get("/robots"), 403)
    assert robot.auth is not None
    refused(robot.get(f"/users/{robot.auth[0]}"), 403)


# Users


def test_a_user_with_a_chosen_password(admin: Api) -> None:
    name = unique("user-")
    created = ok(admin.post("/users", {"name": name, "password": PASSWORD}), 201)
    assert created == {
        "name": name,
        "is_admin": False,
        "disabled": False,
        "created_at": created["created_at"],
        "password": None,
    }
    user = Api(admin.base, (name, PASSWORD))
    shown = ok(user.get(f"/users/{name}"))
    assert shown == {k: v for k, v in created.items() if k != "password"}
    for listed in ok(admin.get("/users")):
        assert set(listed) == {"name", "is_admin", "disabled", "created_at"}


def test_a_generated_password_is_shown_once_and_works(api_server: Server, admin: Api) -> None:
    name = unique("user-")
    created = ok(admin.post("/users", {"name": name}), 201)
    password = created["password"]
    assert isinstance(password, str) and len(password) >= 16
    ok(Api(admin.base, (name, password)).get(f"/users/{name}"))
    assert token_for(api_server.url, (name, password))
    assert "password" not in ok(admin.get(f"/users/{name}"))
    assert password not in admin.get("/users").text


def test_user_refusals(admin: Api, make_user: Callable[..., Api]) -> None:
    existing = make_user().auth
    assert existing is not None
    refused(admin.post("/users", {"name": existing[0]}), 409, "already exists")
    refused(admin.post("/users", {"name": "Bad Name"}), 400, "invalid")
    refused(admin.post("/users", {"name": unique("u-"), "password": "short"}), 400, "password")
    refused(admin.post("/users", {"name": unique("u-"), "is_admin": "true"}), 400, "is_admin")
    missing = unique("missing-")
    refused(admin.get(f"/users/{missing}"), 404, "does not exist")
    refused(admin.patch(f"/users/{missing}", {"disabled": True}), 404)
    refused(admin.patch(f"/users/{missing}", {}), 404)
    refused(admin.delete(f"/users/{missing}"), 404)
    refused(admin.patch(f"/users/{existing[0]}", {"password": "short"}), 400, "password")


def test_users_see_and_change_only_their_own_password(
    admin: Api, make_user: Callable[..., Api]
) -> None:
    user, other = make_user(), make_user()
    assert user.auth is not None and other.auth is not None
    name = user.auth[0]
    ok(user.get(f"/users/{name}"))
    refused(user.get(f"/users/{other.auth[0]}"), 403, "other users")
    refused(user.get("/users"), 403, "administrators")
    refused(user.post("/users", {"name": unique("u-")}), 403)
    refused(user.delete(f"/users/{other.auth[0]}"), 403)
    refused(user.patch(f"/users/{other.auth[0]}", {"password": "new-password-1"}), 403)
    refused(user.patch(f"/users/{name}", {"is_admin": True}), 403, "is_admin")
    refused(user.patch(f"/users/{name}", {"disabled": False}), 403)

    changed = ok(user.patch(f"/users/{name}", {"password": "new-password-1"}))
    assert changed["name"] == name and "password" not in changed
    refused(user.get(f"/users/{name}"), 401)
    ok(Api(admin.base, (name, "new-password-1")).get(f"/users/{name}"))


def test_admins_change_and_delete_users(admin: Api, make_user: Callable[..., Api]) -> None:
    user = make_user()
    assert user.auth is not None
    name = user.auth[0]
    assert ok(admin.patch(f"/users/{name}", {"disabled": True}))["disabled"] is True
    refused(user.get(f"/users/{name}"), 401)
    assert ok(admin.patch(f"/users/{name}", {"disabled": False}))["disabled"] is False
    ok(user.get(f"/users/{name}"))
    assert ok(admin.patch(f"/users/{name}", {"is_admin": True}))["is_admin"] is True
    ok(user.get("/users"))
    ok(user.get("/robots"))
    ok(admin.delete(f"/users/{name}"), 204)
    refused(admin.get(f"/users/{name}"), 404)
    refused(user.get("/projects"), 401)


# Robots


def test_robot_lifecycle(admin: Api, project: str) -> None:
    name = unique("bot-")
    body = {
        "name": name,
        "description": "builds things",
        "expires_in_seconds": 3600,
        "grants": [
            {"project": project, "actions": ["pull"]},
            {"project": project, "repository": "apps", "actions": ["pull", "push"]},
        ],
    }
    before = time.time()
    created = ok(admin.post("/robots", body), 201)
    key = created.pop("key")
    assert isinstance(key, str) and len(key) >= 16
    assert created == {
        "name": f"sa${name}",
        "description": "builds things",
        "expires_at": created["expires_at"],
        "disabled": False,
        "created_at": created["created_at"],
        "last_used_at": None,
        "grants": [
            {"project": project, "repository": None, "actions": ["pull"]},
            {"project": project, "repository": "apps", "actions": ["pull", "push"]},
        ],
    }
    assert int(before) + 3600 - 1 <= created["expires_at"] <= time.time() + 3600
    for path in (f"/robots/{name}", f"/robots/sa${name}", f"/robots/sa%24{name}"):
        assert ok(admin.get(path)) == created
    assert created in ok(admin.get("/robots"))
    assert all("key" not in robot for robot in ok(admin.get("/robots")))

    changed = ok(
        admin.patch(
            f"/robots/sa${name}",
            {"description": "", "grants": [{"project": project, "actions": ["delete"]}]},
        )
    )
    assert changed["description"] == ""
    assert changed["grants"] == [{"project": project, "repository": None, "actions": ["delete"]}]
    assert ok(admin.patch(f"/robots/{name}", {"disabled": True}))["disabled"] is True
    assert ok(admin.patch(f"/robots/{name}", {}))["disabled"] is True

    rotated = ok(admin.post(f"/robots/{name}/key"))
    assert rotated["key"] != key and rotated["name"] == f"sa${name}"

    ok(admin.delete(f"/robots/sa${name}"), 204)
    refused(admin.get(f"/robots/{name}"), 404, "does not exist")


def test_a_robot_key_is_shown_once_and_pulls_through_v2(
    api_server: Server, admin: Api, project: str
) -> None:
    image = f"{project}/apps/tool"
    pushed = OciClient(api_server.url, api_server.admin_auth).push_image(image)
    created = ok(
        admin.post(
            "/robots",
            {"name": unique("bot-"), "grants": [{"project": project, "actions": ["pull"]}]},
        ),
        201,
    )
    name, key = created["name"], created["key"]
    assert name.startswith("sa$")
    robot = OciClient(api_server.url, (name, key))
    response = robot.get_manifest(image, "latest")
    assert response.status_code == 200 and response.content == pushed.body
    # Pull only: a push is refused.
    response = robot.request("POST", f"/v2/{image}/blobs/uploads/")
    robot.expect_error(response, 403, "DENIED")
    assert ok(admin.get(f"/robots/{name}"))["last_used_at"] is not None

    rotated = ok(admin.post(f"/robots/{name}/key"))["key"]
    robot.expect_error(robot.get_manifest(image, "latest"), 401, "UNAUTHORIZED")
    fresh = OciClient(api_server.url, (name, rotated))
    assert fresh.get_manifest(image, "latest").status_code == 200
    # A robot's key signs in to the API as well, for reading.
    assert [p["name"] for p in ok(Api(admin.base, (name, rotated)).get("/projects"))] == [project]

    ok(admin.patch(f"/robots/{name}", {"disabled": True}))
    fresh.expect_error(fresh.get_manifest(image, "latest"), 401, "UNAUTHORIZED")
    refused(Api(admin.base, (name, rotated)).get("/projects"), 401)


def test_robot_refusals(admin: Api, project: str) -> None:
    existing = ok(admin.post("/robots", {"name": unique("bot-")}), 201)["name"]
    refused(admin.post("/robots", {"name": existing}), 409, "already exists")
    refused(admin.post("/robots", {"name": existing.removeprefix("sa$")}), 409)
    refused(admin.post("/robots", {"name": "Bad Name"}), 400, "invalid")
    refused(admin.post("/robots", {"name": "x", "expires_in_seconds": 0}), 400, "greater than 0")
    refused(admin.post("/robots", {"name": "x", "description": "d" * 501}), 400, "description")
    grant = {"project": project, "actions": []}
    refused(admin.post("/robots", {"name": "x", "grants": [grant]}), 400, "at least 1")
    grant = {"project": project, "actions": ["pull", "admin"]}
    refused(admin.post("/robots", {"name": "x", "grants": [grant]}), 400, "'pull', 'push'")
    grant = {"project": unique("missing-"), "actions": ["pull"]}
    refused(admin.post("/robots", {"name": "x", "grants": [grant]}), 404, "does not exist")
    grant = {"project": project, "repository": "nope", "actions": ["pull"]}
    refused(admin.post("/robots", {"name": "x", "grants": [grant]}), 404, "does not exist")
    refused(admin.get("/robots/x"), 404)
    missing = unique("missing-")
    refused(admin.get(f"/robots/{missing}"), 404)
    refused(admin.patch(f"/robots/{missing}", {"disabled": True}), 404)
    refused(admin.delete(f"/robots/{missing}"), 404)
    refused(admin.post(f"/robots/{missing}/key"), 404)
    refused(admin.patch(f"/robots/{existing}", {"grants": [grant]}), 404)


def test_only_admins_manage_robots(admin: Api, make_user: Callable[..., Api], project: str) -> None:
    owner = make_user()
    set_role(admin, project, owner, "admin")
    robot = ok(admin.post("/robots", {"name": unique("bot-")}), 201)["name"]
    for response in (
        owner.get("/robots"),
        owner.post("/robots", {"name": unique("bot-")}),
        owner.get(f"/robots/{robot}"),
        owner.patch(f"/robots/{robot}", {"disabled": True}),
        owner.post(f"/robots/{robot}/key"),
        owner.delete(f"/robots/{robot}"),
    ):
        refused(response, 403, "only system administrators")
    assert ok(admin.get(f"/robots/{robot}"))["disabled"] is False


# Members


def test_member_lifecycle(admin: Api, make_user: Callable[..., Api], project: str) -> None:
    user = make_user()
    assert user.auth is not None
    name = user.auth[0]
    assert ok(admin.get(f"/projects/{project}/members")) == []
    member = ok(admin.put(f"/projects/{project}/members/{name}", {"role": "reader"}))
    assert member == {"project": project, "user": name, "role": "reader"}
    assert ok(admin.get(f"/projects/{project}/members")) == [member]
    assert (project, "apps") in {(r["project"], r["name"]) for r in ok(user.get("/repos"))}

    member = ok(admin.put(f"/projects/{project}/members/{name}", {"role": "developer"}))
    assert ok(admin.get(f"/projects/{project}/members")) == [member]

    ok(admin.delete(f"/projects/{project}/members/{name}"), 204)
    assert ok(admin.get(f"/projects/{project}/members")) == []
    assert (project, "apps") not in {(r["project"], r["name"]) for r in ok(user.get("/repos"))}
    refused(admin.delete(f"/projects/{project}/members/{name}"), 404, "not a member")


def test_member_refusals(admin: Api, make_user: Callable[..., Api], project: str) -> None:
    user = make_user()
    assert user.auth is not None
    path = f"/projects/{project}/members/{user.auth[0]}"
    refused(admin.put(path, {"role": "owner"}), 400, "role: Input should be")
    refused(admin.put(path, {}), 400, "role: Field required")
    refused(admin.request("PUT", path), 400, "JSON request body is required")
    missing = unique("missing-")
    refused(admin.put(f"/projects/{project}/members/{missing}", {"role": "reader"}), 404, "user")
    refused(admin.put(f"/projects/{missing}/members/{user.auth[0]}", {"role": "reader"}), 404)
    refused(admin.delete(f"/projects/{missing}/members/{user.auth[0]}"), 404)
    refused(admin.delete(f"/projects/{project}/members/{missing}"), 404)


def test_project_admins_manage_their_members(
    admin: Api, make_user: Callable[..., Api], project: str
) -> None:
    owner, reader, newcomer, outsider = make_user(), make_user(), make_user(), make_user()
    set_role(admin, project, owner, "admin")
    set_role(admin, project, reader, "reader")
    assert newcomer.auth is not None and reader.auth is not None
    members = f"/projects/{project}/members"

    assert len(ok(owner.get(members))) == 2
    ok(owner.put(f"{members}/{newcomer.auth[0]}", {"role": "maintainer"}))
    assert project in [p["name"] for p in ok(newcomer.get("/projects"))]
    ok(owner.put(f"{members}/{reader.auth[0]}", {"role": "admin"}))
    ok(reader.delete(f"{members}/{newcomer.auth[0]}"), 204)

    refused(newcomer.get(members), 404)  # no longer a member: the project is out of sight
    refused(outsider.get(members), 404)
    refused(outsider.put(f"{members}/{newcomer.auth[0]}", {"role": "admin"}), 404)
    set_role(admin, project, outsider, "maintainer")
    refused(outsider.get(members), 403, "administrators")
    refused(outsider.put(f"{members}/{newcomer.auth[0]}", {"role": "reader"}), 403)
    refused(outsider.delete(f"{members}/{reader.auth[0]}"), 403)
