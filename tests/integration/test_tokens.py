"""The token endpoint and the tokens it signs, over the real server: the Docker GET flow and the
OAuth2 POST flow (docker login's refresh token), intersection of asked and permitted access,
refresh tokens bound to their owner, forged and broken tokens refused with the right
challenge, robots disabled, deleted or expired, failed sign-ins throttled, and an upload
finished under an expired token."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from requests.adapters import HTTPAdapter

from tests.integration.auth_support import (
    SERVICE,
    Forger,
    access_of,
    bearer,
    challenge,
    claims_of,
    cli,
    create_robot,
    create_user,
    expect,
    fetch_token,
    poll,
    repository_scope,
    unsigned,
)
from tests.integration.oci_client import OciClient, sha256
from tests.integration.server import Server

PASSWORD = "tokens-password"
REPO = "tok/hosted"
# Robots, users and tokens change within this long on a running server (DESIGN: 5 s).
TAKES_EFFECT_SECONDS = 5.0


@pytest.fixture(scope="module")
def tok(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server of this module's own, with failed sign-ins practically unlimited (the
    throttling tests have their own server), project `tok` and the users alice (developer)
    and bob (reader)."""
    server = Server(tmp_path_factory.mktemp("tokens") / "data")
    server.start(env={"CARGOHOLD_LOGIN_FAILURE_LIMIT": "1000"})
    try:
        cli(server, "project", "create", "tok")
        cli(server, "repo", "create", "tok", "hosted")
        create_user(server, "alice", PASSWORD, {"tok": "developer"})
        create_user(server, "bob", PASSWORD, {"tok": "reader"})
        yield server
    finally:
        server.stop()


@pytest.fixture
def name(tok: Server) -> str:
    return tok.unique_name(REPO)


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _get_token(server: Server, auth: tuple[str, str] | None, **params: Any) -> requests.Response:
    return requests.get(server.url + "/v2/token", params=params, auth=auth, timeout=30)


def _post_token(server: Server, **form: str) -> requests.Response:
    return requests.post(server.url + "/v2/token", data=form, timeout=30)


def _ping(server: Server, headers: dict[str, str]) -> requests.Response:
    return requests.get(server.url + "/v2/", headers=headers, timeout=30)


def _tags(server: Server, name: str, headers: dict[str, str]) -> requests.Response:
    return requests.get(f"{server.url}/v2/{name}/tags/list", headers=headers, timeout=30)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64url_decode(value: str) -> bytes:
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


# The GET flow (Docker token spec)


def test_get_token_answer_and_claims(tok: Server, name: str) -> None:
    before = time.time()
    response = _get_token(
        tok, ("alice", PASSWORD), service=SERVICE, scope=repository_scope(name, "pull,push")
    )
    expect(response, 200)
    assert response.headers["Cache-Control"] == "no-store"
    body = response.json()
    assert set(body) == {"token", "access_token", "expires_in", "issued_at"}
    assert body["token"] == body["access_token"]
    assert body["expires_in"] == 300  # the default lifetime, at least the spec's 60 s
    issued_at = datetime.strptime(body["issued_at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert before - 2 <= issued_at.timestamp() <= time.time() + 1

    header = jwt.get_unverified_header(body["token"])
    assert header["alg"] == "RS256"
    assert header["typ"] == "JWT"
    claims = claims_of(body["token"])
    assert set(claims) == {"iss", "sub", "aud", "exp", "nbf", "iat", "jti", "access"}
    assert claims["iss"] == "cargohold"
    assert claims["sub"] == "alice"
    assert claims["aud"] == SERVICE
    assert claims["exp"] - claims["iat"] == 300
    assert claims["nbf"] <= claims["iat"] <= time.time() + 1
    assert claims["access"] == [{"type": "repository", "name": name, "actions": ["pull", "push"]}]
    assert claims["jti"] != claims_of(fetch_token(tok, ("alice", PASSWORD)))["jti"]


def test_kid_is_the_rfc7638_thumbprint_of_the_jwks_key(tok: Server) -> None:
    jwks = requests.get(tok.url + "/.well-known/jwks.json", timeout=30).json()
    (key,) = jwks["keys"]
    assert key["kty"] == "RSA"
    assert "d" not in key
    canonical = json.dumps({"e": key["e"], "kty": "RSA", "n": key["n"]}, separators=(",", ":"))
    thumbprint = _b64url(hashlib.sha256(canonical.encode()).digest())
    assert key["kid"] == thumbprint
    token = fetch_token(tok, ("alice", PASSWORD))
    assert jwt.get_unverified_header(token)["kid"] == thumbprint
    # Any verifier holding the JWKS can check the signature.
    verified = jwt.decode(
        token, jwt.PyJWK(key).key, algorithms=["RS256"], audience=SERVICE, issuer="cargohold"
    )
    assert verified["sub"] == "alice"


def test_anonymous_token(tok: Server, name: str) -> None:
    response = _get_token(
        tok, None, service=SERVICE, scope=repository_scope(name), offline_token="true"
    )
    expect(response, 200)
    body = response.json()
    assert "refresh_token" not in body  # nobody to refresh for
    assert claims_of(body["token"])["sub"] == ""
    assert access_of(body["token"]) == {}


def test_intersection_of_asked_and_permitted(tok: Server, name: str) -> None:
    other = tok.unique_name(REPO)
    token = fetch_token(
        tok,
        ("bob", PASSWORD),
        [
            repository_scope(name),  # bob reads tok: pull only
            repository_scope(other, "push"),  # push only: nothing
            repository_scope("nope/none/img"),  # no such repository: nothing
            "repository:tok/hosted/x:pull,frobnicate",  # unknown actions are not granted
            "registry:catalog:*",
            "nonsense",
        ],
    )
    assert access_of(token) == {
        ("repository", name): ["pull"],
        ("repository", "tok/hosted/x"): ["pull"],
        ("registry", "catalog"): ["*"],
    }
    token = fetch_token(tok, ("alice", PASSWORD), [f"repository:{name}:*"])
    assert access_of(token) == {("repository", name): ["pull", "push"]}


def test_host_and_port_in_the_scope_name_grant_nothing_usable(tok: Server, name: str) -> None:
    """`repository:localhost:5000/foo:pull` names `localhost:5000/foo`, not `foo`."""
    for host in ("localhost:5000", tok.host):
        scoped = f"{host}/{name}"
        token = fetch_token(tok, ("alice", PASSWORD), [repository_scope(scoped, "pull,push")])
        assert ("repository", name) not in access_of(token)
        assert access_of(token) == {}
        expect(
            _tags(tok, name, bearer(token)),
            401,
            "UNAUTHORIZED",
            challenge(tok, name, "pull,push", "insufficient_scope"),
        )


def test_wrong_service_is_400(tok: Server) -> None:
    expect(_get_token(tok, ("alice", PASSWORD), service="another-registry"), 400, "UNSUPPORTED")
    expect(
        _post_token(
            tok,
            grant_type="password",
            username="alice",
            password=PASSWORD,
            service="another-registry",
            client_id="test",
        ),
        400,
        "UNSUPPORTED",
    )


def test_bad_credentials_at_the_token_endpoint_are_401(tok: Server) -> None:
    expect(_get_token(tok, ("alice", "wrong-password"), service=SERVICE), 401, "UNAUTHORIZED")
    expect(_get_token(tok, ("nobody-here", "wrong-password"), service=SERVICE), 401)
    expect(
        requests.get(
            tok.url + "/v2/token",
            params={"service": SERVICE},
            headers={"Authorization": "Basic !!!"},
            timeout=30,
        ),
        401,
        "UNAUTHORIZED",
    )
    # The token endpoint takes Basic credentials, not a token.
    token = fetch_token(tok, ("alice", PASSWORD))
    expect(
        requests.get(
            tok.url + "/v2/token", params={"service": SERVICE}, headers=bearer(token), timeout=30
        ),
        401,
        "UNAUTHORIZED",
    )
    expect(
        _post_token(
            tok,
            grant_type="password",
            username="alice",
            password="wrong-password",
            service=SERVICE,
            client_id="test",
        ),
        401,
        "UNAUTHORIZED",
    )


def test_account_must_match_the_credentials(tok: Server) -> None:
    expect(_get_token(tok, ("alice", PASSWORD), service=SERVICE, account="bob"), 400)
    expect(_get_token(tok, ("alice", PASSWORD), service=SERVICE, account="alice"), 200)


# docker login: GET with offline_token, then the OAuth2 POST with the refresh token


def _docker_login(server: Server, user: str, password: str) -> str:
    response = _get_token(
        server,
        (user, password),
        account=user,
        client_id="docker",
        offline_token="true",
        service=SERVICE,
    )
    expect(response, 200)
    body = response.json()
    assert access_of(body["token"]) == {}
    refresh: str = body["refresh_token"]
    assert len(refresh) >= 32
    return refresh


def _refresh(
    server: Server, refresh_token: str, scope: str = "", service: str = SERVICE
) -> requests.Response:
    return _post_token(
        server,
        grant_type="refresh_token",
        refresh_token=refresh_token,
        service=service,
        client_id="docker",
        scope=scope,
    )


def test_docker_login_then_refresh_token_grant(tok: Server, name: str) -> None:
    refresh = _docker_login(tok, "alice", PASSWORD)
    response = _refresh(tok, refresh, f"{repository_scope(name, 'pull,push')} registry:catalog:*")
    expect(response, 200)
    body = response.json()
    assert body["refresh_token"] == refresh  # the same one, not a new one
    assert body["token"] == body["access_token"]
    assert claims_of(body["access_token"])["sub"] == "alice"
    assert access_of(body["access_token"]) == {
        ("repository", name): ["pull", "push"],
        ("registry", "catalog"): ["*"],
    }
    # The token works: a push goes through.
    upload = requests.post(
        f"{tok.url}/v2/{name}/blobs/uploads/",
        headers=bearer(body["access_token"]),
        timeout=30,
    )
    expect(upload, 202)
    # The refresh token is reusable, and stays alice's whatever else the form says.
    again = _post_token(
        tok,
        grant_type="refresh_token",
        refresh_token=refresh,
        service=SERVICE,
        client_id="docker",
        username="bob",
        scope=repository_scope(name),
    )
    expect(again, 200)
    assert claims_of(again.json()["access_token"])["sub"] == "alice"
    assert access_of(again.json()["access_token"]) == {("repository", name): ["pull", "push"]}


def test_refresh_token_only_when_asked_for_offline(tok: Server) -> None:
    online = _get_token(tok, ("alice", PASSWORD), service=SERVICE, client_id="docker")
    assert "refresh_token" not in online.json()
    form = {
        "grant_type": "password",
        "username": "alice",
        "password": PASSWORD,
        "service": SERVICE,
        "client_id": "test",
    }
    assert "refresh_token" not in _post_token(tok, **form).json()
    offline = _post_token(tok, **form, access_type="offline")
    expect(offline, 200)
    refresh = offline.json()["refresh_token"]
    expect(_refresh(tok, refresh), 200)


def test_post_password_grant_with_scopes(tok: Server, name: str) -> None:
    response = _post_token(
        tok,
        grant_type="password",
        username="bob",
        password=PASSWORD,
        service=SERVICE,
        client_id="test",
        scope=f"{repository_scope(name)} {repository_scope('nope/none/x')}",
    )
    expect(response, 200)
    assert access_of(response.json()["access_token"]) == {("repository", name): ["pull"]}


@pytest.mark.parametrize(
    "form",
    [
        {"grant_type": "password", "password": PASSWORD},
        {"grant_type": "password", "username": "alice"},
        {"grant_type": "refresh_token"},
        {"grant_type": "authorization_code", "code": "x"},
        {},
    ],
)
def test_post_bad_requests_are_400(tok: Server, form: dict[str, str]) -> None:
    expect(_post_token(tok, service=SERVICE, client_id="test", **form), 400, "UNSUPPORTED")


def test_unknown_refresh_token_is_401(tok: Server) -> None:
    expect(_refresh(tok, "not-a-refresh-token-" + uuid.uuid4().hex), 401, "UNAUTHORIZED")


def test_refresh_token_is_bound_to_its_service(tok: Server) -> None:
    refresh = _docker_login(tok, "alice", PASSWORD)
    expect(_refresh(tok, refresh, service="another-registry"), 400)
    expect(_refresh(tok, refresh), 200)


@pytest.mark.parametrize("change", ["password", "disabled", "deleted"])
def test_refresh_token_dies_with_its_owner(tok: Server, change: str) -> None:
    user = _unique("owner")
    create_user(tok, user, PASSWORD, {"tok": "reader"})
    refresh = _docker_login(tok, user, PASSWORD)
    expect(_refresh(tok, refresh), 200)
    if change == "password":
        cli(tok, "user", "update", user, "--password-stdin", stdin="a-new-password\n")
    elif change == "disabled":
        cli(tok, "user", "update", user, "--disabled")
    else:
        cli(tok, "user", "delete", user)
    expect(_refresh(tok, refresh), 401, "UNAUTHORIZED")
    if change == "disabled":
        # Re-enabled, the account needs a new sign-in: the old refresh token is gone.
        cli(tok, "user", "update", user, "--no-disabled")
        expect(_refresh(tok, refresh), 401, "UNAUTHORIZED")
        expect(_get_token(tok, (user, PASSWORD), service=SERVICE), 200)
    if change == "deleted":
        # Someone new with the same name does not inherit it.
        create_user(tok, user, PASSWORD, {"tok": "admin"})
        expect(_refresh(tok, refresh), 401, "UNAUTHORIZED")


def test_robot_refresh_token_dies_when_its_key_is_rotated(tok: Server) -> None:
    robot = _unique("rot")
    key = create_robot(tok, robot, "tok=pull")
    refresh = _docker_login(tok, f"sa${robot}", key)
    response = _refresh(tok, refresh, repository_scope(f"{REPO}/x"))
    expect(response, 200)
    assert claims_of(response.json()["access_token"])["sub"] == f"sa${robot}"
    new_key = cli(tok, "robot", "rotate", robot).strip()
    assert new_key and new_key != key
    expect(_refresh(tok, refresh), 401, "UNAUTHORIZED")
    # The old key stops working within seconds; the new one works.
    poll(
        lambda: _get_token(tok, (f"sa${robot}", key), service=SERVICE).status_code == 401,
        TAKES_EFFECT_SECONDS + 1,
    )
    expect(_get_token(tok, (f"sa${robot}", new_key), service=SERVICE), 200)


# Broken and forged tokens are refused with error="invalid_token"


def _forged_cases(tok: Server) -> dict[str, str]:
    forger = Forger(tok)
    now = int(time.time())
    access = {f"{REPO}/x": ["pull"]}
    good = forger.token("alice", access)
    header, payload, signature = good.split(".")
    claims = json.loads(_b64url_decode(payload))
    tampered_claims = {**claims, "sub": "admin", "access": [{**claims["access"][0]}]}
    tampered = f"{header}.{_b64url(json.dumps(tampered_claims).encode())}.{signature}"
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = forger.key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    hs_header = _b64url(json.dumps({"alg": "HS256", "typ": "JWT", "kid": forger.kid}).encode())
    signing_input = f"{hs_header}.{payload}"
    hs256 = (
        signing_input
        + "."
        + _b64url(hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest())
    )
    return {
        "expired": forger.token("alice", access, iat=now - 400, nbf=now - 400, exp=now - 60),
        "not-yet-valid": forger.token("alice", access, nbf=now + 120, iat=now + 120),
        "wrong-audience": forger.token("alice", access, aud="another-registry"),
        "wrong-issuer": forger.token("alice", access, iss="someone-else"),
        "wrong-kid": forger.token("alice", access, headers={"kid": "not-our-key"}),
        "wrong-signature": forger.token("alice", access, key=other_key),
        "alg-none": unsigned(claims, {"alg": "none", "typ": "JWT", "kid": forger.kid}),
        "hs256-with-public-key": hs256,
        "tampered-payload": tampered,
        "missing-claims": forger.token("alice", access, jti=None, nbf=None),
        "unknown-subject": forger.token("ghost-" + uuid.uuid4().hex[:6], access),
        "garbage": "abc.def.ghi",
    }


FORGED = [
    "expired",
    "not-yet-valid",
    "wrong-audience",
    "wrong-issuer",
    "wrong-kid",
    "wrong-signature",
    "alg-none",
    "hs256-with-public-key",
    "tampered-payload",
    "missing-claims",
    "unknown-subject",
    "garbage",
]


@pytest.fixture(scope="module")
def forged(tok: Server) -> dict[str, str]:
    cases = _forged_cases(tok)
    assert set(cases) == set(FORGED)
    return cases


def test_a_forged_token_is_accepted_when_nothing_is_wrong(tok: Server) -> None:
    """The control for the cases below: the forger's tokens are good tokens."""
    token = Forger(tok).token("alice", {f"{REPO}/x": ["pull"]})
    expect(_ping(tok, bearer(token)), 200)
    expect(_tags(tok, f"{REPO}/x", bearer(token)), 404, "NAME_UNKNOWN")


@pytest.mark.parametrize("case", FORGED)
def test_bad_tokens_are_refused_on_ping(tok: Server, forged: dict[str, str], case: str) -> None:
    expect(
        _ping(tok, bearer(forged[case])),
        401,
        "UNAUTHORIZED",
        challenge(tok, error="invalid_token"),
    )


@pytest.mark.parametrize("case", FORGED)
def test_bad_tokens_are_refused_on_a_resource(
    tok: Server, forged: dict[str, str], case: str
) -> None:
    name = f"{REPO}/x"
    expect(
        _tags(tok, name, bearer(forged[case])),
        401,
        "UNAUTHORIZED",
        challenge(tok, name, "pull,push", "invalid_token"),
    )


def test_a_token_for_another_repository(tok: Server, name: str) -> None:
    other = tok.unique_name(REPO)
    token = fetch_token(tok, ("alice", PASSWORD), [repository_scope(other)])
    expect(
        _tags(tok, name, bearer(token)),
        401,
        "UNAUTHORIZED",
        challenge(tok, name, "pull,push", "insufficient_scope"),
    )


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer",
        "Bearer ",
        "Bearer two words",
        "Bearer tökén",
        "Basic !!!",
        "Basic " + base64.b64encode(b"no-colon").decode(),
        "Digest username=alice",
        "eyJhbGciOiJSUzI1NiJ9.e30.sig",
    ],
)
def test_malformed_authorization_headers(tok: Server, authorization: str) -> None:
    headers = {"Authorization": authorization}
    expect(_ping(tok, headers), 401, "UNAUTHORIZED", challenge(tok, error="invalid_token"))
    name = f"{REPO}/x"
    expect(
        _tags(tok, name, headers),
        401,
        "UNAUTHORIZED",
        challenge(tok, name, "pull,push", "invalid_token"),
    )


# Accounts that change under a token issued before


def _refused_within(check: Any) -> float:
    elapsed = poll(check, timeout=2 * TAKES_EFFECT_SECONDS)
    assert elapsed <= TAKES_EFFECT_SECONDS, f"took {elapsed:.1f} s"
    return elapsed


def _invalid_token(server: Server, name: str, token: str) -> bool:
    response = _tags(server, name, bearer(token))
    if response.status_code == 200:
        return False
    expect(response, 401, "UNAUTHORIZED", challenge(server, name, "pull,push", "invalid_token"))
    return True


@pytest.mark.parametrize("change", ["disabled", "deleted"])
def test_robot_disabled_or_deleted_loses_access_within_seconds(
    tok: Server, name: str, change: str
) -> None:
    OciClient(tok.url, tok.admin_auth).push_image(name)
    robot = _unique("bot")
    key = create_robot(tok, robot, "tok=pull")
    token = fetch_token(tok, (f"sa${robot}", key), [repository_scope(name)])
    assert access_of(token) == {("repository", name): ["pull"]}
    expect(_tags(tok, name, bearer(token)), 200)
    expect(_tags(tok, name, {}), 401)  # (the control: the repository is not public)
    robot_basic = requests.Session()
    robot_basic.auth = (f"sa${robot}", key)
    expect(robot_basic.get(f"{tok.url}/v2/{name}/tags/list", timeout=30), 200)
    if change == "disabled":
        cli(tok, "robot", "update", robot, "--disabled")
    else:
        cli(tok, "robot", "delete", robot)
    _refused_within(lambda: _invalid_token(tok, name, token))
    expect(robot_basic.get(f"{tok.url}/v2/{name}/tags/list", timeout=30), 401, "UNAUTHORIZED")
    expect(_get_token(tok, (f"sa${robot}", key), service=SERVICE), 401)


def test_robot_expiry_is_honoured(tok: Server, name: str) -> None:
    OciClient(tok.url, tok.admin_auth).push_image(name)
    robot = _unique("brief")
    lifetime = 3.0
    key = create_robot(tok, robot, "tok=pull", expires_in_days=lifetime / 86400)
    created = time.monotonic()
    token = fetch_token(tok, (f"sa${robot}", key), [repository_scope(name)])
    assert access_of(token) == {("repository", name): ["pull"]}
    response = _tags(tok, name, bearer(token))
    if time.monotonic() - created < lifetime:
        expect(response, 200)
    assert claims_of(token)["exp"] > time.time() + 60  # the token itself would outlive it
    poll(lambda: _invalid_token(tok, name, token), timeout=lifetime + 2 * TAKES_EFFECT_SECONDS)
    expect(_get_token(tok, (f"sa${robot}", key), service=SERVICE), 401)
    listed = next(
        line for line in cli(tok, "robot", "list").splitlines() if line.startswith(f"sa${robot}\t")
    )
    assert "\texpires=-\t" not in listed


def _robot_line(server: Server, robot: str) -> str:
    for line in cli(server, "robot", "list").splitlines():
        if line.startswith(f"sa${robot}\t"):
            return line
    raise AssertionError(f"sa${robot} is not listed")


def test_robot_last_used_is_recorded(tok: Server) -> None:
    robot = _unique("used")
    key = create_robot(tok, robot, "tok=pull")
    assert "\tlast_used=-\t" in _robot_line(tok, robot)
    before = datetime.now(UTC).replace(microsecond=0)
    fetch_token(tok, (f"sa${robot}", key))
    line = _robot_line(tok, robot)
    stamp = line.split("\tlast_used=")[1].split("\t")[0]
    used = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert before.timestamp() - 1 <= used.timestamp() <= time.time() + 1


def test_user_disabled_loses_access_within_seconds(tok: Server, name: str) -> None:
    OciClient(tok.url, tok.admin_auth).push_image(name)
    user = _unique("carol")
    create_user(tok, user, PASSWORD, {"tok": "reader"})
    token = fetch_token(tok, (user, PASSWORD), [repository_scope(name)])
    expect(_tags(tok, name, bearer(token)), 200)
    cli(tok, "user", "update", user, "--disabled")
    _refused_within(lambda: _invalid_token(tok, name, token))
    expect(requests.get(tok.url + "/v2/", auth=(user, PASSWORD), timeout=30), 401)


def test_role_removed_takes_effect_on_tokens_issued_before(tok: Server, name: str) -> None:
    OciClient(tok.url, tok.admin_auth).push_image(name)
    user = _unique("dave")
    create_user(tok, user, PASSWORD, {"tok": "developer"})
    token = fetch_token(tok, (user, PASSWORD), [repository_scope(name)])
    assert access_of(token) == {("repository", name): ["pull", "push"]}
    expect(_tags(tok, name, bearer(token)), 200)
    cli(tok, "project", "member-remove", "tok", user)

    def refused() -> bool:
        response = _tags(tok, name, bearer(token))
        if response.status_code == 200:
            return False
        expect(
            response,
            401,
            "UNAUTHORIZED",
            challenge(tok, name, "pull,push", "insufficient_scope"),
        )
        return True

    _refused_within(refused)


def test_password_change_ends_basic_sign_in(tok: Server) -> None:
    user = _unique("erin")
    create_user(tok, user, PASSWORD)
    expect(requests.get(tok.url + "/v2/", auth=(user, PASSWORD), timeout=30), 200)
    cli(tok, "user", "update", user, "--password-stdin", stdin="another-password\n")
    _refused_within(
        lambda: requests.get(tok.url + "/v2/", auth=(user, PASSWORD), timeout=30).status_code == 401
    )
    expect(requests.get(tok.url + "/v2/", auth=(user, "another-password"), timeout=30), 200)


# An upload opened under a valid token may finish under it once expired, by its subject only


def test_upload_finishes_with_an_expired_token_of_the_same_subject(tok: Server) -> None:
    create_user(tok, "up-owner", PASSWORD, {"tok": "developer"})
    create_user(tok, "up-other", PASSWORD, {"tok": "developer"})
    name = tok.unique_name(REPO)
    forger = Forger(tok)
    access = {name: ["pull", "push"]}
    now = int(time.time())

    def expired(subject: str, **overrides: Any) -> dict[str, str]:
        token = forger.token(
            subject, access, iat=now - 600, nbf=now - 600, exp=now - 60, **overrides
        )
        return bearer(token)

    opened = requests.post(
        f"{tok.url}/v2/{name}/blobs/uploads/",
        headers=bearer(forger.token("up-owner", access)),
        timeout=30,
    )
    expect(opened, 202)
    location = tok.url + opened.headers["Location"]
    data = os.urandom(2048)
    digest = sha256(data)
    refused = challenge(tok, name, "pull,push", "invalid_token")

    # Someone else's expired token, or the owner's for another audience: refused.
    for headers in (expired("up-other"), expired("up-owner", aud="another-registry")):
        expect(
            requests.patch(location, data=data[:1024], headers=headers, timeout=30),
            401,
            "UNAUTHORIZED",
            refused,
        )
        expect(
            requests.put(location, params={"digest": digest}, headers=headers, timeout=30),
            401,
            "UNAUTHORIZED",
            refused,
        )

    owner = expired("up-owner")
    patched = requests.patch(
        location,
        data=data[:1024],
        headers={**owner, "Content-Type": "application/octet-stream"},
        timeout=30,
    )
    expect(patched, 202)
    assert patched.headers["Range"] == "0-1023"
    finished = requests.put(
        location,
        params={"digest": digest},
        data=data[1024:],
        headers={**owner, "Content-Type": "application/octet-stream"},
        timeout=30,
    )
    expect(finished, 201)
    assert finished.headers["Docker-Content-Digest"] == digest
    stored = OciClient(tok.url, tok.admin_auth).request("GET", f"/v2/{name}/blobs/{digest}")
    assert stored.content == data

    # Anything but finishing that session: the expired token is just expired.
    for method, path in (
        ("POST", f"/v2/{name}/blobs/uploads/"),
        ("HEAD", f"/v2/{name}/blobs/{digest}"),
        ("GET", f"/v2/{name}/tags/list"),
        ("PUT", f"/v2/{name}/manifests/latest"),
    ):
        expect(
            requests.request(method, tok.url + path, headers=owner, timeout=30),
            401,
            "UNAUTHORIZED",
            refused,
        )
    expect(_ping(tok, owner), 401, "UNAUTHORIZED", challenge(tok, error="invalid_token"))


def test_upload_opened_with_basic_credentials_finishes_with_the_owners_expired_token(
    tok: Server,
) -> None:
    name = tok.unique_name(REPO)
    location = OciClient(tok.url, ("alice", PASSWORD)).start_upload(name)
    now = int(time.time())
    token = Forger(tok).token(
        "alice", {name: ["pull", "push"]}, iat=now - 600, nbf=now - 600, exp=now - 60
    )
    data = os.urandom(100)
    finished = requests.put(
        tok.url + location,
        params={"digest": sha256(data)},
        data=data,
        headers={**bearer(token), "Content-Type": "application/octet-stream"},
        timeout=30,
    )
    expect(finished, 201)


# Failed sign-ins are throttled, per account and per client address


class SourceAddress(HTTPAdapter):
    """Connections from another loopback address (127.0.0.0/8 is all this machine), so that
    tests can be clients at different addresses."""

    def __init__(self, address: str) -> None:
        self.address = address
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["source_address"] = (self.address, 0)
        super().init_poolmanager(*args, **kwargs)


def _from(address: str) -> requests.Session:
    session = requests.Session()
    session.mount("http://", SourceAddress(address))
    return session


LIMIT = 3
WINDOW = 300


def _throttling_server(
    folder: Path, users: int, extra_env: dict[str, str] | None = None
) -> Iterator[Server]:
    """A server that throttles after 3 failed sign-ins, with users u1 to u<users>."""
    server = Server(folder / "data")
    server.start(
        env={
            "CARGOHOLD_LOGIN_FAILURE_LIMIT": str(LIMIT),
            "CARGOHOLD_LOGIN_FAILURE_WINDOW_SECONDS": str(WINDOW),
            **(extra_env or {}),
        }
    )
    try:
        for index in range(1, users + 1):
            create_user(server, f"u{index}", PASSWORD)
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from _throttling_server(tmp_path_factory.mktemp("throttled"), users=9)


def _ping_as(
    server: Server, session: requests.Session, user: str, password: str
) -> requests.Response:
    return session.get(server.url + "/v2/", auth=(user, password), timeout=30)


def _expect_throttled(response: requests.Response) -> None:
    expect(response, 429, "TOOMANYREQUESTS")
    retry_after = int(response.headers["Retry-After"])
    assert 1 <= retry_after <= WINDOW + 1


def test_throttled_per_account(strict: Server) -> None:
    attacker, victim_client, bystander = _from("127.0.0.2"), _from("127.0.0.3"), _from("127.0.0.4")
    for _ in range(LIMIT):
        expect(_ping_as(strict, attacker, "u1", "wrong-password"), 401, "UNAUTHORIZED")
    # The account is throttled wherever the next attempt comes from, right password or not.
    _expect_throttled(_ping_as(strict, attacker, "u1", "wrong-password"))
    _expect_throttled(_ping_as(strict, victim_client, "u1", PASSWORD))
    _expect_throttled(
        victim_client.get(
            strict.url + "/v2/token", params={"service": SERVICE}, auth=("u1", PASSWORD), timeout=30
        )
    )
    _expect_throttled(
        victim_client.post(
            strict.url + "/v2/token",
            data={
                "grant_type": "password",
                "username": "u1",
                "password": PASSWORD,
                "service": SERVICE,
                "client_id": "test",
            },
            timeout=30,
        )
    )
    # Another account from an address with no failures is not.
    expect(_ping_as(strict, bystander, "u2", PASSWORD), 200)


def test_throttled_per_address(strict: Server) -> None:
    """Failures spread over many account names from one address throttle that address, for
    every account not already signed in from it; other addresses are not affected."""
    spraying, elsewhere = _from("127.0.0.5"), _from("127.0.0.6")
    expect(_ping_as(strict, spraying, "u3", PASSWORD), 200)  # signed in before the attack
    for index in range(LIMIT):
        expect(_ping_as(strict, spraying, f"nobody{index}", "guess"), 401, "UNAUTHORIZED")
    _expect_throttled(_ping_as(strict, spraying, "u4", PASSWORD))
    _expect_throttled(
        spraying.get(
            strict.url + "/v2/token", params={"service": SERVICE}, auth=("u4", PASSWORD), timeout=30
        )
    )
    expect(_ping_as(strict, elsewhere, "u4", PASSWORD), 200)
    # Signed in before or not, every sign-in from that address waits (else a right guess
    # would stand out from the wrong ones).
    _expect_throttled(_ping_as(strict, spraying, "u3", PASSWORD))
    expect(_ping_as(strict, elsewhere, "u3", PASSWORD), 200)


BALANCER = "127.0.0.20"


@pytest.fixture(scope="module")
def balanced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A throttling server behind a load balancer at 127.0.0.20, with user u1."""
    yield from _throttling_server(
        tmp_path_factory.mktemp("balanced"),
        users=1,
        extra_env={"CARGOHOLD_TRUSTED_PROXIES": BALANCER},
    )


def _spray(server: Server, session: requests.Session, forwarded_for: str | None) -> None:
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    for index in range(LIMIT):
        response = session.get(
            server.url + "/v2/", auth=(f"nobody{index}", "guess"), headers=headers, timeout=30
        )
        expect(response, 401, "UNAUTHORIZED")


def test_behind_a_trusted_balancer_each_forwarded_client_is_throttled_alone(
    balanced: Server,
) -> None:
    balancer = _from(BALANCER)

    def sign_in(forwarded_for: str) -> requests.Response:
        return balancer.get(
            balanced.url + "/v2/",
            auth=("u1", PASSWORD),
            headers={"X-Forwarded-For": forwarded_for},
            timeout=30,
        )

    _spray(balanced, balancer, "198.51.100.7")
    _expect_throttled(sign_in("198.51.100.7"))
    # What the client wrote left of the balancer's entry does not get it out.
    _expect_throttled(sign_in("203.0.113.1, 198.51.100.7"))
    # Another client behind the same balancer is not throttled with it.
    expect(sign_in("198.51.100.8"), 200)


def test_from_an_untrusted_peer_x_forwarded_for_is_ignored(balanced: Server) -> None:
    """A client that is not the balancer cannot pick the address it is throttled under."""
    direct = _from("127.0.0.21")
    _spray(balanced, direct, "198.51.100.9")
    response = direct.get(
        balanced.url + "/v2/",
        auth=("u1", PASSWORD),
        headers={"X-Forwarded-For": "198.51.100.10"},
        timeout=30,
    )
    _expect_throttled(response)
    # The address it named was never throttled: through the balancer it signs in.
    forwarded = {"X-Forwarded-For": "198.51.100.9"}
    expect(
        _from(BALANCER).get(
            balanced.url + "/v2/", auth=("u1", PASSWORD), headers=forwarded, timeout=30
        ),
        200,
    )


def test_a_right_guess_looks_like_a_wrong_one_once_throttled(strict: Server) -> None:
    """The account's owner signed in a moment ago (the server remembers that sign-in); the
    attacker's right guess after the limit must get the same 429 as the wrong ones."""
    owner, attacker = _from("127.0.0.13"), _from("127.0.0.14")
    expect(_ping_as(strict, owner, "u7", PASSWORD), 200)
    token = fetch_token(strict, ("u7", PASSWORD))
    for _ in range(LIMIT):
        expect(_ping_as(strict, attacker, "u7", "wrong-password"), 401)
    _expect_throttled(_ping_as(strict, attacker, "u7", "another-wrong-password"))
    _expect_throttled(_ping_as(strict, attacker, "u7", PASSWORD))
    _expect_throttled(
        attacker.get(
            strict.url + "/v2/token", params={"service": SERVICE}, auth=("u7", PASSWORD), timeout=30
        )
    )
    # Throttling is per account, so the owner waits too (a lockout, for the window at most).
    _expect_throttled(_ping_as(strict, owner, "u7", PASSWORD))
    # A token obtained before is not a sign-in, and keeps working.
    expect(owner.get(strict.url + "/v2/", headers=bearer(token), timeout=30), 200)


def test_successful_sign_ins_are_not_throttled(strict: Server) -> None:
    client = _from("127.0.0.7")
    for _ in range(4 * LIMIT):
        expect(_ping_as(strict, client, "u5", PASSWORD), 200)
        expect(
            client.get(
                strict.url + "/v2/token",
                params={"service": SERVICE},
                auth=("u5", PASSWORD),
                timeout=30,
            ),
            200,
        )


def test_a_successful_sign_in_clears_the_accounts_failures(strict: Server) -> None:
    first, second, third = _from("127.0.0.8"), _from("127.0.0.9"), _from("127.0.0.10")
    for _ in range(LIMIT - 1):
        expect(_ping_as(strict, first, "u6", "wrong-password"), 401)
    expect(_ping_as(strict, second, "u6", PASSWORD), 200)
    # Counted from zero again: LIMIT - 1 more failures do not throttle it.
    for _ in range(LIMIT - 1):
        expect(_ping_as(strict, third, "u6", "wrong-password"), 401)
    expect(_ping_as(strict, _from("127.0.0.11"), "u6", "not-" + PASSWORD), 401)
    _expect_throttled(_ping_as(strict, _from("127.0.0.12"), "u6", "not-" + PASSWORD))
