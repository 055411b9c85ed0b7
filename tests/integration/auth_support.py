"""What the authentication tests share: tokens from the token endpoint, tokens forged with
the server's own signing key (read from its database), challenges, and quick set-up."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import jwt
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.integration.server import Server

SERVICE = "cargohold"
ISSUER = "cargohold"
ALL = "pull,push,delete"


def repository_scope(name: str, actions: str = ALL) -> str:
    return f"repository:{name}:{actions}"


def fetch_token(
    server: Server,
    auth: tuple[str, str] | None,
    scopes: Iterable[str] = (),
    **params: str,
) -> str:
    """A token from `GET /v2/token` (Basic `auth`, or anonymous)."""
    response = requests.get(
        server.url + "/v2/token",
        params=[("service", SERVICE), *(("scope", s) for s in scopes), *params.items()],
        auth=auth,
        timeout=30,
    )
    assert response.status_code == 200, response.text
    token: str = response.json()["token"]
    return token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def claims_of(token: str) -> dict[str, Any]:
    """A token's claims, read without checking it (what the test inspects)."""
    payload: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return payload


def access_of(token: str) -> dict[tuple[str, str], list[str]]:
    """The token's access claim as {(type, name): actions}."""
    return {
        (entry["type"], entry["name"]): entry["actions"] for entry in claims_of(token)["access"]
    }


def challenge(
    server: Server, name: str | None = None, actions: str = "", error: str | None = None
) -> str:
    """The exact `WWW-Authenticate` the registry must send."""
    value = f'Bearer realm="{server.url}/v2/token",service="{SERVICE}"'
    if name is not None:
        value += f',scope="repository:{name}:{actions}"'
    if error is not None:
        value += f',error="{error}"'
    return value


def error_codes(response: requests.Response) -> list[str]:
    return [error["code"] for error in response.json()["errors"]]


def expect(
    response: requests.Response,
    status: int,
    code: str | None = None,
    www_authenticate: str | None = None,
) -> None:
    """The answer has `status`, the OCI error `code` (not checked on HEAD, which has no body)
    and, when given, exactly this challenge."""
    context = (response.request.method, response.url, response.status_code, response.text)
    assert response.status_code == status, context
    if code is not None and response.request.method != "HEAD":
        assert code in error_codes(response), context
    if www_authenticate is not None:
        assert response.headers.get("WWW-Authenticate") == www_authenticate, (
            response.headers.get("WWW-Authenticate"),
            context,
        )


def basic_header(user: str, password: str) -> dict[str, str]:
    raw = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


class Forger:
    """Signs tokens with the server's own key, to make the ones the token endpoint never
    would: expired, not yet valid, for another audience, with another kid."""

    def __init__(self, server: Server) -> None:
        rows = server.sql("SELECT private_key_pem FROM signing_keys ORDER BY created_at, kid").rows
        assert rows, "the server has no signing key yet"
        key = serialization.load_pem_private_key(rows[0][0].encode(), password=None)
        assert isinstance(key, rsa.RSAPrivateKey)
        self.key = key
        jwks = requests.get(server.url + "/.well-known/jwks.json", timeout=30).json()
        self.kid: str = jwks["keys"][0]["kid"]

    def token(
        self,
        subject: str,
        access: Mapping[str, Sequence[str]] = {},
        *,
        key: rsa.RSAPrivateKey | None = None,
        headers: Mapping[str, Any] | None = None,
        **overrides: Any,
    ) -> str:
        """A token for `subject` with `access` ({repository name: actions}); `overrides`
        replace claims (None drops one)."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": ISSUER,
            "sub": subject,
            "aud": SERVICE,
            "exp": now + 300,
            "nbf": now,
            "iat": now,
            "jti": uuid.uuid4().hex,
            "access": [
                {"type": "repository", "name": name, "actions": list(actions)}
                for name, actions in access.items()
            ],
        }
        claims.update(overrides)
        claims = {k: v for k, v in claims.items() if v is not None}
        return jwt.encode(
            claims,
            key or self.key,
            algorithm="RS256",
            headers={"kid": self.kid, **(headers or {})},
        )


def unsigned(payload: Mapping[str, Any], header: Mapping[str, Any]) -> str:
    """A JWT with `header` and `payload` and an empty signature (for alg=none)."""

    def part(value: Mapping[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{part(header)}.{part(payload)}."


def cli(server: Server, *args: str, stdin: str = "") -> str:
    """The command line against the server's data folder, run in this process (the same
    code as `cargohold ...`, without a second of interpreter start per command); its stdout."""
    code, out, err = server.cli_in_this_process(*args, stdin=stdin)
    assert code == 0, f"cargohold {' '.join(args)}: {err}"
    return out


def create_user(
    server: Server, name: str, password: str, role_in: Mapping[str, str] | None = None
) -> None:
    cli(server, "user", "create", name, "--password-stdin", stdin=password + "\n")
    for project, role in (role_in or {}).items():
        cli(server, "project", "member-set", project, name, role)


def create_robot(
    server: Server, name: str, *grants: str, expires_in_days: float | None = None
) -> str:
    """A robot `sa$<name>`; its API key."""
    extra = [] if expires_in_days is None else [f"--expires-in-days={expires_in_days}"]
    return cli(
        server, "robot", "create", name, *(f"--grant={grant}" for grant in grants), *extra
    ).strip()


def poll(check: Callable[[], bool], timeout: float, interval: float = 0.1) -> float:
    """Seconds until `check()` held; fails after `timeout`."""
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"still not so after {timeout} s")
        time.sleep(interval)
    return time.monotonic() - start
