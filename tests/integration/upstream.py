"""Upstream registries for proxy-repository tests: the reference registry, a token server
and a relay that injects faults.

- ``ReferenceRegistry``: CNCF distribution 2.8 (``docker-registry``) on 127.0.0.1, open, behind
  htpasswd Basic auth, or behind a ``TokenServer`` (Bearer tokens, like Docker Hub). It is
  seeded with skopeo from the OCI layouts of ``clients.oci_image``/``oci_index``, can be
  stopped and started again on the same port and storage, and counts the requests it served
  from its access log.
- ``TokenServer``: a Docker token server (``GET``/``POST /token``) in a background thread,
  signing RS256 JWTs with its own key; the certificate distribution trusts is in
  ``rootcertbundle``.
- ``FaultRelay``: an HTTP relay in a background thread, forwarding to a target URL; it counts
  requests per (method, path) and, on command, answers an error status, delays, cuts a body
  short, corrupts a body, or refuses connections (``stop()``).

Typical use::

    with ReferenceRegistry(tmp_path / "hub", mode="token") as hub:
        hub.seed(oci_index(tmp_path / "layout", "3.19"), "library/alpine")
        with FaultRelay(hub.url) as relay:
            relay.fail(503, BLOB_PATH, times=1)
            ...  # a proxy repository with remote_url = relay.url
            assert hub.blob_requests()[digest] == 1

Everything listens on 127.0.0.1 only; the registry process is stopped by pid; the threads are
daemons that stop with ``stop()``/``close()`` or the context manager.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import hashlib
import http.server
import json
import re
import threading
import time
import urllib.parse
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import aiohttp
import jwt
import requests
import yarl
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from multidict import CIMultiDict

from tests.integration.clients import (
    Background,
    Daemon,
    OciImage,
    Skopeo,
    find_binary,
    free_port,
    run,
    wait_until,
)

Mode = Literal["open", "htpasswd", "token"]

STARTUP_SECONDS = 30.0
HTTP_TIMEOUT = 30.0

BLOB_PATH = r"/v2/.+/blobs/sha256:[0-9a-f]{64}"
"""A regular expression (``re.fullmatch`` on the path) for every blob URL."""
MANIFEST_PATH = r"/v2/.+/manifests/[^/]+"
"""A regular expression for every manifest URL (by tag or digest)."""

_BLOB_URI = re.compile(r"/v2/(?P<name>.+)/blobs/(?P<digest>sha256:[0-9a-f]{64})")
_MANIFEST_URI = re.compile(r"/v2/(?P<name>.+)/manifests/(?P<reference>[^/]+)")

# gorilla/handlers' combined log format, which distribution writes to stdout for every request
# (``log.accesslog``): HOST - USER [TIME] "METHOD URI PROTO" STATUS SIZE "REFERER" "AGENT".
_ACCESS_LINE = re.compile(
    r"^(?P<remote>\S+) \S+ (?P<user>\S+) \[(?P<time>[^\]]+)\] "
    r'"(?P<method>\S+) (?P<uri>\S+) (?P<proto>[^"]+)" (?P<status>\d{3}) (?P<size>\d+|-) '
    r'"(?P<referer>[^"]*)" "(?P<agent>[^"]*)"$'
)


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """``WWW-Authenticate: Bearer realm="...",service="..."`` as ("bearer", {params})."""
    scheme, _, rest = header.strip().partition(" ")
    params = {m[1].lower(): m[2] for m in re.finditer(r'(\w+)="([^"]*)"', rest)}
    return scheme.lower(), params


# --- the reference registry -------------------------------------------------------------------


@dataclass(frozen=True)
class AccessEntry:
    """One request as distribution's access log records it."""

    method: str
    uri: str
    """The request URI: path and query."""
    status: int
    size: int
    """Response body bytes the registry wrote (fewer than the blob if the client went away)."""
    user_agent: str

    @property
    def path(self) -> str:
        return self.uri.partition("?")[0]


class ReferenceRegistry(Background):
    """``docker-registry serve config.yml`` (distribution 2.8) on 127.0.0.1:<free port>.

    ``mode``: "open" (no auth), "htpasswd" (Basic auth for ``user``/``password``) or "token"
    (Bearer tokens from ``token_server``; without one the registry starts and stops a
    ``TokenServer`` of its own). A given token server learns ``user``/``password``.

    Storage, config, htpasswd file and log live in ``workdir`` and survive ``stop()``:
    ``start()`` serves the same content on the same port again.
    """

    def __init__(
        self,
        workdir: Path,
        mode: Mode = "open",
        token_server: TokenServer | None = None,
        *,
        user: str = "upstream-user",
        password: str = "upstream-password",
        service: str = "reference-registry",
        port: int | None = None,
    ) -> None:
        if mode not in ("open", "htpasswd", "token"):
            raise ValueError(f"unknown mode {mode!r}")
        if token_server is not None and mode != "token":
            raise ValueError("a token server only goes with mode='token'")
        self.workdir = workdir
        self.mode: Mode = mode
        self.user = user
        self.password = password
        self.service = service
        self.port = port or free_port()
        self.storage = workdir / "storage"
        self.config_path = workdir / "config.yml"
        self.htpasswd_path = workdir / "htpasswd"
        self._own_token_server = mode == "token" and token_server is None
        self.token_server: TokenServer | None = (
            TokenServer(workdir / "token-server") if self._own_token_server else token_server
        )
        if self.token_server is not None:
            self.token_server.add_user(user, password)
        self.daemon = Daemon("docker-registry", workdir)
        self.skopeo = Skopeo(workdir / "skopeo")
        self._log_offset = 0

    # addresses and credentials

    @property
    def host(self) -> str:
        """``127.0.0.1:PORT``, as image references and clients take it."""
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    @property
    def log(self) -> Path:
        """The registry's stdout and stderr: JSON application log lines and access log lines."""
        return self.daemon.log

    @property
    def credentials(self) -> str | None:
        """``user:password`` as skopeo takes it; None in open mode."""
        return None if self.mode == "open" else f"{self.user}:{self.password}"

    @property
    def auth(self) -> tuple[str, str] | None:
        """(user, password) as requests takes it; None in open mode."""
        return None if self.mode == "open" else (self.user, self.password)

    def ref(self, name: str, reference: str) -> str:
        """``docker://127.0.0.1:PORT/name:tag`` (or ``@sha256:...`` for a digest)."""
        sep = "@" if reference.startswith("sha256:") else ":"
        return f"docker://{self.host}/{name}{sep}{reference}"

    # life cycle

    def _write_config(self) -> None:
        self.storage.mkdir(parents=True, exist_ok=True)
        config: dict[str, Any] = {
            "version": 0.1,
            "log": {"level": "info", "formatter": "json", "accesslog": {"disabled": False}},
            "storage": {
                "filesystem": {"rootdirectory": str(self.storage)},
                "delete": {"enabled": True},
                "maintenance": {"uploadpurging": {"enabled": False}},
            },
            "http": {
                "addr": self.host,
                "secret": "reference-registry-secret-for-tests",
                "headers": {"X-Content-Type-Options": ["nosniff"]},
            },
        }
        if self.mode == "htpasswd":
            line = run([find_binary("htpasswd"), "-Bbn", self.user, self.password]).stdout
            self.htpasswd_path.write_text(line.strip() + "\n")
            config["auth"] = {
                "htpasswd": {"realm": "reference-registry", "path": str(self.htpasswd_path)}
            }
        elif self.mode == "token":
            assert self.token_server is not None
            config["auth"] = {
                "token": {
                    "realm": self.token_server.realm,
                    "service": self.service,
                    "issuer": self.token_server.issuer,
                    "rootcertbundle": str(self.token_server.rootcertbundle),
                }
            }
        # JSON is YAML: no YAML writer needed, and no quoting surprises.
        self.config_path.write_text(json.dumps(config, indent=2) + "\n")

    def _answers(self) -> bool:
        try:
            response = requests.get(self.url + "/v2/", timeout=2)
        except requests.RequestException:
            return False
        return response.status_code in (200, 401)

    @property
    def running(self) -> bool:
        process = self.daemon.process
        return process is not None and process.poll() is None

    def start(self) -> None:
        """Start serving (again): same port, same storage. Waits until ``/v2/`` answers."""
        if self.running:
            return
        binary = find_binary("docker-registry")
        if self.token_server is not None and not self.token_server.running:
            self.token_server.start()
        self._write_config()
        try:
            self.daemon.start([binary, "serve", self.config_path])
            self.daemon.wait_ready(self._answers, timeout=STARTUP_SECONDS)
        except BaseException:
            self.daemon.stop()
            raise

    def stop(self) -> None:
        """Stop the registry by pid (the upstream is down: connections are refused). Its own
        token server keeps running; ``close()`` stops that too."""
        self.daemon.stop()

    def close(self) -> None:
        self.stop()
        if self._own_token_server and self.token_server is not None:
            self.token_server.stop()

    # content

    def seed(self, image: OciImage, name: str, tag: str | None = None) -> str:
        """Push an OCI layout image or index (all platforms) as ``name:tag`` (default: the
        layout's tag) with skopeo; returns the top-level digest, unchanged by the copy."""
        self.skopeo.copy(
            image.ref,
            self.ref(name, tag or image.tag),
            all_images=True,
            dest_creds=self.credentials,
        )
        return image.digest

    def request(
        self,
        method: str,
        path: str,
        *,
        authenticate: bool = True,
        scope_actions: str = "pull",
        headers: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> requests.Response:
        """One HTTP request to the registry (``path`` from ``/v2/...``), as a client would do
        it: unauthenticated first, then, on a 401 and with ``authenticate``, with Basic
        credentials or a Bearer token fetched from the challenge's realm (for the
        challenge's scope, or ``repository:NAME:scope_actions`` taken from the path)."""
        headers = dict(headers or {})
        kwargs.setdefault("timeout", HTTP_TIMEOUT)
        response = requests.request(method, self.url + path, headers=headers, **kwargs)
        if response.status_code != 401 or not authenticate or self.mode == "open":
            return response
        scheme, params = parse_challenge(response.headers.get("WWW-Authenticate", ""))
        if scheme == "basic":
            headers["Authorization"] = _basic(self.user, self.password)
        else:
            scope = params.get("scope")
            match = re.fullmatch(r"/v2/(.+)/(?:blobs|manifests|tags)/.*", path.partition("?")[0])
            if scope is None and match is not None:
                scope = f"repository:{match[1]}:{scope_actions}"
            token = fetch_token(
                params["realm"],
                params.get("service", self.service),
                [scope] if scope else [],
                (self.user, self.password),
            )
            headers["Authorization"] = f"Bearer {token}"
        return requests.request(method, self.url + path, headers=headers, **kwargs)

    def delete_manifest(self, name: str, digest: str) -> None:
        """``DELETE /v2/NAME/manifests/DIGEST`` (the upstream drops an image)."""
        response = self.request("DELETE", f"/v2/{name}/manifests/{digest}", scope_actions="*")
        if response.status_code != 202:
            raise AssertionError(f"delete {name}@{digest}: {response.status_code} {response.text}")

    # what the registry served

    def access_log(self) -> list[AccessEntry]:
        """Every request since the start, or since ``reset_counts()``, in order."""
        try:
            with self.log.open("rb") as log:
                log.seek(self._log_offset)
                text = log.read().decode(errors="replace")
        except FileNotFoundError:
            return []
        entries = []
        for line in text.splitlines():
            match = _ACCESS_LINE.match(line)
            if match is not None:
                size = match["size"]
                entries.append(
                    AccessEntry(
                        match["method"],
                        match["uri"],
                        int(match["status"]),
                        0 if size == "-" else int(size),
                        match["agent"],
                    )
                )
        return entries

    def reset_counts(self) -> None:
        """Forget the requests so far: the counts start again from zero."""
        self._log_offset = self.log.stat().st_size if self.log.exists() else 0

    def wait_for_log(
        self, predicate: Callable[[list[AccessEntry]], bool], *, timeout: float = 5.0
    ) -> list[AccessEntry]:
        """Poll ``access_log()`` until ``predicate`` holds for it (at most ``timeout``
        seconds); returns it. distribution writes a request's line when its handler
        returns, which can be a moment after the client has read the last byte of a large
        body: a test that counts right after its own ``requests`` call should wait.
        (A finished client process, such as skopeo, leaves no such gap in practice.)"""
        found: list[list[AccessEntry]] = []

        def check() -> bool:
            found[:] = [self.access_log()]
            return predicate(found[0])

        wait_until(check, timeout=timeout, what="reference registry access log", interval=0.05)
        return found[0]

    def blob_requests(
        self, method: str = "GET", *, name: str | None = None, status: int | None = None
    ) -> Counter[str]:
        """{digest: number of ``method`` requests} for blob URLs (of repository ``name``
        only, if given; of answers with ``status`` only, if given)."""
        counts: Counter[str] = Counter()
        for entry in self.access_log():
            match = _BLOB_URI.fullmatch(entry.path)
            if (
                match is not None
                and entry.method == method
                and (name is None or match["name"] == name)
                and (status is None or entry.status == status)
            ):
                counts[match["digest"]] += 1
        return counts

    def manifest_requests(
        self, method: str = "GET", *, name: str | None = None, status: int | None = None
    ) -> Counter[str]:
        """{"NAME:REFERENCE" or "NAME@DIGEST": number of ``method`` requests}."""
        counts: Counter[str] = Counter()
        for entry in self.access_log():
            match = _MANIFEST_URI.fullmatch(entry.path)
            if (
                match is not None
                and entry.method == method
                and (name is None or match["name"] == name)
                and (status is None or entry.status == status)
            ):
                reference = match["reference"]
                sep = "@" if reference.startswith("sha256:") else ":"
                counts[f"{match['name']}{sep}{reference}"] += 1
        return counts


# --- the token server -------------------------------------------------------------------------


def libtrust_key_id(public_key: rsa.RSAPublicKey) -> str:
    """The key ID distribution 2.8 (docker/libtrust) gives a key of its ``rootcertbundle``:
    SHA-256 of the DER public key, truncated to 240 bits, base32 in 12 groups of 4 joined by
    ':'. A token whose header ``kid`` equals it is verified with that key."""
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    encoded = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode().rstrip("=")
    return ":".join(encoded[i : i + 4] for i in range(0, len(encoded), 4))


def fetch_token(
    realm: str,
    service: str,
    scopes: Sequence[str],
    auth: tuple[str, str] | None,
) -> str:
    """A token from a token server: ``GET realm?service=S&scope=...`` with Basic ``auth``."""
    response = requests.get(
        realm,
        params=[("service", service), *(("scope", s) for s in scopes)],
        auth=auth,
        timeout=HTTP_TIMEOUT,
    )
    response.raise_for_status()
    token: str = response.json()["token"]
    return token


@dataclass(frozen=True)
class Scope:
    type: str
    name: str
    actions: tuple[str, ...]

    @classmethod
    def parse(cls, text: str) -> Scope | None:
        """``repository:team/app:pull,push``; the name may hold ':' (a port), never the
        type or actions. None when malformed."""
        kind, sep, rest = text.partition(":")
        name, sep2, actions = rest.rpartition(":")
        if not (sep and sep2 and kind and name):
            return None
        return cls(kind, name, tuple(a for a in actions.split(",") if a))

    def __str__(self) -> str:
        return f"{self.type}:{self.name}:{','.join(self.actions)}"


@dataclass(frozen=True)
class TokenRequest:
    """One request the token server answered."""

    method: str
    account: str | None
    """The authenticated user, None for an anonymous request."""
    service: str | None
    scopes: tuple[Scope, ...]
    """As requested."""
    status: int
    granted: tuple[Scope, ...] = ()


class _TokenHTTPServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    owner: TokenServer


class _TokenHandler(http.server.BaseHTTPRequestHandler):
    server: _TokenHTTPServer
    # HTTP/1.0: one request per connection, so that no kept-alive connection outlives stop().
    protocol_version = "HTTP/1.0"

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: ``TokenServer.token_requests`` is the record."""

    def _reply(
        self, status: int, body: Mapping[str, Any], headers: Mapping[str, str] | None = None
    ) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        if url.path != "/token":
            self._reply(404, {"errors": [{"code": "NOT_FOUND", "message": url.path}]})
            return
        query = urllib.parse.parse_qs(url.query)
        credentials = None
        header = self.headers.get("Authorization", "")
        if header.lower().startswith("basic "):
            try:
                user, _, password = base64.b64decode(header[6:]).decode().partition(":")
            except ValueError:
                user, password = "", ""
            credentials = (user, password)
        self._answer(
            "GET",
            credentials,
            query.get("service", [None])[0],
            [s for value in query.get("scope", []) for s in value.split()],
        )

    def do_POST(self) -> None:
        """The OAuth2 password grant (containerd tries it first); no refresh tokens."""
        if urllib.parse.urlsplit(self.path).path != "/token":
            self._reply(404, {"errors": [{"code": "NOT_FOUND"}]})
            return
        length = int(self.headers.get("Content-Length") or 0)
        form = urllib.parse.parse_qs(self.rfile.read(length).decode())
        if form.get("grant_type", [""])[0] != "password":
            self._reply(400, {"error": "unsupported_grant_type"})
            return
        self._answer(
            "POST",
            (form.get("username", [""])[0], form.get("password", [""])[0]),
            form.get("service", [None])[0],
            [s for value in form.get("scope", []) for s in value.split()],
        )

    def _answer(
        self,
        method: str,
        credentials: tuple[str, str] | None,
        service: str | None,
        scope_texts: list[str],
    ) -> None:
        owner = self.server.owner
        scopes = tuple(s for s in map(Scope.parse, scope_texts) if s is not None)
        account = None if credentials is None else credentials[0]
        if credentials is not None and not owner.check(*credentials):
            owner._record(TokenRequest(method, account, service, scopes, 401))
            self._reply(
                401,
                {"errors": [{"code": "UNAUTHORIZED", "message": "incorrect credentials"}]},
                {"WWW-Authenticate": 'Basic realm="token-server"'},
            )
            return
        granted = tuple(owner.grant(account, scope) for scope in scopes)
        token = owner.issue(account or "", service or owner.default_service, granted)
        owner._record(TokenRequest(method, account, service, scopes, 200, granted))
        issued = datetime.datetime.now(datetime.UTC).isoformat().replace("+00:00", "Z")
        body = {"token": token, "expires_in": owner.expires_in, "issued_at": issued}
        if method == "POST":
            body = {"access_token": token, "expires_in": owner.expires_in, "issued_at": issued}
        else:
            body["access_token"] = token
        self._reply(200, body)


class TokenServer(Background):
    """A Docker token server (``/token``, GET with Basic auth, or the OAuth2 POST password
    grant) on 127.0.0.1:<free port>, in a background thread.

    Known users get every action they ask for; anonymous requests get a token too (as
    Docker Hub gives them), carrying only ``pull`` when ``anonymous_pull`` is set, nothing
    otherwise; wrong credentials get a 401. Tokens are RS256 JWTs with the header ``kid``
    distribution 2.8 looks up among the keys of ``rootcertbundle`` (see ``libtrust_key_id``),
    valid ``expires_in`` seconds, with ``aud`` the requested ``service``.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        users: Mapping[str, str] | None = None,
        anonymous_pull: bool = False,
        issuer: str = "harness-token-issuer",
        default_service: str = "reference-registry",
        expires_in: int = 300,
        port: int | None = None,
    ) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        self.users = dict(users or {})
        self.anonymous_pull = anonymous_pull
        self.issuer = issuer
        self.default_service = default_service
        self.expires_in = expires_in
        self.port = port or free_port()
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.key_id = libtrust_key_id(self.key.public_key())
        self.rootcertbundle = workdir / "token-signer.crt"
        self.rootcertbundle.write_bytes(
            _self_signed(self.key).public_bytes(serialization.Encoding.PEM)
        )
        self._lock = threading.Lock()
        self._requests: list[TokenRequest] = []
        self._server: _TokenHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def realm(self) -> str:
        """The ``auth.token.realm`` of a registry that trusts this server."""
        return self.url + "/token"

    @property
    def running(self) -> bool:
        return self._server is not None

    def add_user(self, user: str, password: str) -> None:
        with self._lock:
            self.users[user] = password

    def check(self, user: str, password: str) -> bool:
        with self._lock:
            return self.users.get(user) == password

    def grant(self, account: str | None, scope: Scope) -> Scope:
        """The part of ``scope`` that ``account`` (None: anonymous) gets."""
        if account is not None:
            return scope
        allowed = {"pull"} if self.anonymous_pull and scope.type == "repository" else set()
        return Scope(scope.type, scope.name, tuple(a for a in scope.actions if a in allowed))

    def issue(
        self,
        subject: str,
        service: str,
        access: Iterable[Scope],
        *,
        key: rsa.RSAPrivateKey | None = None,
        expires_in: int | None = None,
    ) -> str:
        """A signed token, as ``/token`` gives it; ``key`` signs with another key (the kid
        stays this server's), for tokens the registry must refuse."""
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "sub": subject,
            "aud": service,  # distribution 2.8 wants a string here, not a list
            "exp": now + (self.expires_in if expires_in is None else expires_in),
            "nbf": now - 1,
            "iat": now,
            "jti": uuid.uuid4().hex,
            "access": [
                {"type": s.type, "name": s.name, "actions": list(s.actions)} for s in access
            ],
        }
        return jwt.encode(claims, key or self.key, algorithm="RS256", headers={"kid": self.key_id})

    def _record(self, request: TokenRequest) -> None:
        with self._lock:
            self._requests.append(request)

    @property
    def token_requests(self) -> list[TokenRequest]:
        """Every request answered so far (since ``reset_counts()``), in order."""
        with self._lock:
            return list(self._requests)

    @property
    def count(self) -> int:
        """How many token requests were answered (any status)."""
        with self._lock:
            return len(self._requests)

    def reset_counts(self) -> None:
        with self._lock:
            self._requests.clear()

    def start(self) -> None:
        if self._server is not None:
            return
        server = _TokenHTTPServer(("127.0.0.1", self.port), _TokenHandler)
        server.owner = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=10)

    def close(self) -> None:
        self.stop()


def _self_signed(key: rsa.RSAPrivateKey) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cargohold test token signer")])
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )


# --- the fault relay --------------------------------------------------------------------------

FaultKind = Literal["status", "delay", "cut", "corrupt"]

_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)
_STATUS_CODES = {429: "TOOMANYREQUESTS", 503: "UNAVAILABLE"}


@dataclass
class Fault:
    """One rule of a ``FaultRelay``: applies to the requests whose method is ``method`` (any
    if None) and whose path ``re.fullmatch``-es ``path``, ``times`` times (always if None).
    ``hits`` counts the requests it was applied to."""

    kind: FaultKind
    path: re.Pattern[str]
    method: str | None
    times: int | None
    status: int = 0
    headers: Mapping[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    after: int = 0
    at: int = 0
    hits: int = 0

    def matches(self, method: str, path: str) -> bool:
        return (
            (self.times is None or self.hits < self.times)
            and (self.method is None or self.method == method)
            and self.path.fullmatch(path) is not None
        )


@dataclass
class RelayedRequest:
    """One request the relay received; logged on arrival, ``status`` set once answered."""

    method: str
    path: str
    query: str
    faults: tuple[FaultKind, ...]
    """The faults applied to it."""
    status: int = 0
    """What the relay answered: the target's status (also for a cut or corrupted body), an
    injected one, or 502 if the target was unreachable; 0 while in flight."""


class FaultRelay(Background):
    """An HTTP relay on 127.0.0.1:<free port> to ``target`` (``http://HOST:PORT``), in a
    background thread with its own event loop.

    Requests and responses stream through unchanged but for the ``Host`` header (the
    target's), hop-by-hop headers, and a ``Location`` that points at the target (made to
    point at the relay, so that uploads stay on it). ``WWW-Authenticate`` passes as is: a
    Bearer realm still names the token server itself. Bodies are not decompressed.

    Faults, set from any thread, apply to matching requests (method, ``re.fullmatch`` of the
    path) in this order: ``delay``, then ``fail`` (answered by the relay, not forwarded),
    else the request is forwarded and ``corrupt``/``cut`` alter the body. ``stop()`` closes
    the port (connections refused, in-flight ones cut); ``start()`` opens the same port again.
    """

    def __init__(self, target: str, *, port: int | None = None) -> None:
        self.target = yarl.URL(target.rstrip("/"))
        if self.target.host is None:
            raise ValueError(f"no host in {target!r}")
        self.port = port or free_port()
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._log: list[RelayedRequest] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._session: aiohttp.ClientSession | None = None
        self._runner: web.AppRunner | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    # control

    def _add(self, fault: Fault) -> Fault:
        with self._lock:
            self._faults.append(fault)
        return fault

    def fail(
        self,
        status: int,
        path: str = ".*",
        *,
        method: str | None = None,
        times: int | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Fault:
        """Answer ``status`` (e.g. 503, or 429 with ``headers={"Retry-After": "1"}``) with an
        OCI error body instead of forwarding."""
        return self._add(
            Fault("status", re.compile(path), method, times, status=status, headers=headers or {})
        )

    def delay(
        self,
        seconds: float,
        path: str = ".*",
        *,
        method: str | None = None,
        times: int | None = None,
    ) -> Fault:
        """Wait ``seconds`` before forwarding (the whole response comes that much later)."""
        return self._add(Fault("delay", re.compile(path), method, times, seconds=seconds))

    def cut(
        self,
        after: int,
        path: str = BLOB_PATH,
        *,
        method: str | None = "GET",
        times: int | None = None,
    ) -> Fault:
        """Close the connection after ``after`` bytes of the response body (fewer, if the
        body is not longer than that: it always ends short). Headers, Content-Length
        included, are the target's."""
        return self._add(Fault("cut", re.compile(path), method, times, after=after))

    def corrupt(
        self,
        path: str = BLOB_PATH,
        *,
        method: str | None = "GET",
        times: int | None = None,
        at: int = 0,
    ) -> Fault:
        """Flip the bits of the body byte at offset ``at`` (negative: from the end, needs a
        Content-Length): same length, same headers, wrong digest."""
        return self._add(Fault("corrupt", re.compile(path), method, times, at=at))

    def remove(self, fault: Fault) -> None:
        with self._lock:
            self._faults = [f for f in self._faults if f is not fault]

    def clear(self) -> None:
        """Remove every fault: relay faithfully again."""
        with self._lock:
            self._faults.clear()

    def _take(self, method: str, path: str) -> list[Fault]:
        with self._lock:
            taken = [f for f in self._faults if f.matches(method, path)]
            for fault in taken:
                fault.hits += 1
            return taken

    # what went through

    def requests(self) -> list[RelayedRequest]:
        """Every request received (since ``reset_counts()``), in order of arrival."""
        with self._lock:
            return list(self._log)

    def counts(self) -> Counter[tuple[str, str]]:
        """{(method, path): number of requests}."""
        return Counter((r.method, r.path) for r in self.requests())

    def count(self, method: str | None = None, path: str = ".*") -> int:
        """Requests with ``method`` (any if None) whose path ``re.fullmatch``-es ``path``."""
        pattern = re.compile(path)
        return sum(
            1
            for r in self.requests()
            if (method is None or r.method == method) and pattern.fullmatch(r.path)
        )

    def reset_counts(self) -> None:
        with self._lock:
            self._log.clear()

    def _record(self, entry: RelayedRequest) -> None:
        with self._lock:
            self._log.append(entry)

    # life cycle

    def _call(self, coro: Any, timeout: float = 30.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    async def _start(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(force_close=True),
                auto_decompress=False,
                timeout=aiohttp.ClientTimeout(total=None, connect=10, sock_read=120),
            )
        app = web.Application(client_max_size=1024**4)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0, handle_signals=False)
        await runner.setup()
        try:
            await web.TCPSite(runner, "127.0.0.1", self.port, reuse_address=True).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner

    async def _stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    @property
    def running(self) -> bool:
        return self._runner is not None

    def start(self) -> None:
        """Listen (again) on the same port."""
        if self._runner is None:
            self._call(self._start())

    def stop(self) -> None:
        """Stop listening: connections are refused until ``start()``."""
        if self._loop.is_running():
            self._call(self._stop())

    def close(self) -> None:
        """Stop for good, and end the thread."""
        if not self._loop.is_running():
            return
        self._call(self._stop())

        async def close_session() -> None:
            if self._session is not None:
                await self._session.close()
                self._session = None

        self._call(close_session())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        if not self._thread.is_alive():
            self._loop.close()

    # relaying

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        faults = self._take(request.method, request.path)
        entry = RelayedRequest(
            request.method, request.path, request.query_string, tuple(f.kind for f in faults)
        )
        self._record(entry)  # on arrival: a client that got any answer finds it counted
        for fault in faults:
            if fault.kind == "delay":
                await asyncio.sleep(fault.seconds)
        failure = next((f for f in faults if f.kind == "status"), None)
        response = self._error(failure) if failure else await self._forward(request, faults)
        entry.status = response.status
        return response

    @staticmethod
    def _error(fault: Fault) -> web.Response:
        code = _STATUS_CODES.get(fault.status, "UNKNOWN")
        body = {"errors": [{"code": code, "message": f"injected by FaultRelay: {fault.status}"}]}
        return web.json_response(body, status=fault.status, headers=dict(fault.headers))

    async def _forward(self, request: web.Request, faults: list[Fault]) -> web.StreamResponse:
        assert self._session is not None
        # A multidict: clients repeat headers (skopeo sends one Accept per media type).
        headers = CIMultiDict(
            (k, v) for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP
        )
        headers["Host"] = f"{self.target.host}:{self.target.port}"
        skip = {"User-Agent", "Accept-Encoding", "Accept"} - set(request.headers)
        url = self.target.join(yarl.URL(request.raw_path, encoded=True))
        try:
            upstream = await self._session.request(
                request.method,
                url,
                headers=headers,
                data=request.content if request.body_exists else None,
                allow_redirects=False,
                skip_auto_headers=skip,
            )
        except (aiohttp.ClientError, OSError) as exc:
            return web.json_response(
                {"errors": [{"code": "UNAVAILABLE", "message": f"relay: {exc!r}"}]}, status=502
            )
        async with upstream:
            response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
            for key, value in upstream.headers.items():
                if key.lower() not in _HOP_BY_HOP:
                    response.headers.add(key, self._relocate(value) if key == "Location" else value)
            await response.prepare(request)
            if request.method == "HEAD":
                return response
            try:
                await self._relay_body(request, response, upstream, faults)
            except (TimeoutError, ConnectionError, aiohttp.ClientError):
                # The client went away, or the target broke off: end the answer short too.
                self._hang_up(request)
            return response

    async def _relay_body(
        self,
        request: web.Request,
        response: web.StreamResponse,
        upstream: aiohttp.ClientResponse,
        faults: list[Fault],
    ) -> None:
        length = upstream.content_length
        cut = next((f.after for f in faults if f.kind == "cut"), None)
        if cut is not None and length is not None:
            cut = min(cut, max(length - 1, 0))
        flip = next((f.at for f in faults if f.kind == "corrupt"), None)
        if flip is not None and flip < 0:
            flip = None if length is None else length + flip
        sent = 0
        async for data in upstream.content.iter_any():
            chunk = data
            if flip is not None and sent <= flip < sent + len(chunk):
                i = flip - sent
                chunk = chunk[:i] + bytes([chunk[i] ^ 0xFF]) + chunk[i + 1 :]
            if cut is not None and sent + len(chunk) >= cut:
                await response.write(chunk[: cut - sent])
                self._hang_up(request)
                return
            await response.write(chunk)
            sent += len(chunk)
        if cut is not None:  # a chunked body no longer than ``after``: still end it short
            self._hang_up(request)
            return
        await response.write_eof()

    @staticmethod
    def _hang_up(request: web.Request) -> None:
        """Close the client connection: what was written is flushed, then EOF, before the
        announced length (or the final chunk). aiohttp then fails to finish the response,
        which it takes as the client having gone away."""
        transport = request.transport
        if transport is not None:
            transport.close()

    def _relocate(self, location: str) -> str:
        url = yarl.URL(location)
        if url.is_absolute() and (url.host, url.port) == (self.target.host, self.target.port):
            return str(url.with_host("127.0.0.1").with_port(self.port))
        return location


def sha256_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


__all__ = [
    "BLOB_PATH",
    "MANIFEST_PATH",
    "AccessEntry",
    "Fault",
    "FaultRelay",
    "Mode",
    "ReferenceRegistry",
    "RelayedRequest",
    "Scope",
    "TokenRequest",
    "TokenServer",
    "fetch_token",
    "libtrust_key_id",
    "parse_challenge",
    "sha256_of",
]
