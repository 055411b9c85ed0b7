"""What the real clients asked of the server, read back from its aiohttp access log, and the
manifest digest the server serves: for tests that check a client's requests, not only its
outcome."""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import requests

from tests.integration.server import Server

MANIFEST_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
ACCEPT_MANIFESTS = {"Accept": ", ".join(MANIFEST_TYPES)}

_REQUEST = re.compile(
    r'aiohttp\.access .*?"([A-Z]+) (\S+) HTTP/\d\.\d" (\d{3}) \S+ "[^"]*" "([^"]*)"'
)
"""aiohttp's default access line: ``%a %t "%r" %s %b "%{Referer}i" "%{User-Agent}i"``."""


@dataclass(frozen=True)
class Access:
    """One request the server answered, from its access log line."""

    line: int
    """Position in the log, so that a test can look only at what came after a mark."""
    method: str
    path: str
    query: dict[str, str]
    """Each query parameter's last value."""
    status: int
    agent: str
    """The User-Agent header, ``-`` when the client sent none."""

    def in_image(self, name: str, endpoint: str) -> bool:
        """Whether this request went to ``/v2/NAME/ENDPOINT/...`` (e.g. ``blobs/uploads``)."""
        return self.path.startswith(f"/v2/{name}/{endpoint}/")

    @property
    def last_segment(self) -> str:
        return self.path.rstrip("/").rsplit("/", 1)[-1]


def accesses(server: Server, *, after: int = 0) -> list[Access]:
    """Every request the server logged, from line ``after`` of its log on."""
    found = []
    for number, line in enumerate(server.log().splitlines()):
        if number < after:
            continue
        match = _REQUEST.search(line)
        if match is None:
            continue
        method, target, status, agent = match.groups()
        parts = urlsplit(target)
        query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
        found.append(Access(number, method, parts.path, query, int(status), agent))
    return found


def log_mark(server: Server) -> int:
    """The current end of the server's log, for ``accesses(after=...)``."""
    return len(server.log().splitlines())


def wait_for_access(
    server: Server,
    done: Callable[[list[Access]], bool],
    *,
    after: int = 0,
    timeout: float = 30.0,
) -> list[Access]:
    """``accesses`` once they are ``done``: aiohttp writes an access line only after the answer
    went out, so a client may have finished before its last lines are in the log."""
    deadline = time.monotonic() + timeout
    while True:
        found = accesses(server, after=after)
        if done(found):
            return found
        if time.monotonic() >= deadline:
            raise AssertionError(
                "the expected requests never appeared in the server log; saw:\n"
                + "\n".join(f"{a.method} {a.path} {a.query} {a.status}" for a in found)
            )
        time.sleep(0.05)


def any_access(matches: Callable[[Access], bool]) -> Callable[[list[Access]], bool]:
    """For ``wait_for_access``: done once one request ``matches``."""
    return lambda found: any(matches(access) for access in found)


def fetched_blobs(found: list[Access], name: str) -> set[str]:
    """Digests of the blobs downloaded (GET, 200) from ``name``."""
    return {
        a.last_segment
        for a in found
        if a.method == "GET" and a.status == 200 and a.in_image(name, "blobs")
    }


@dataclass(frozen=True)
class Served:
    """A manifest as the server serves it."""

    digest: str
    """Docker-Content-Digest of GET, equal to HEAD's and to the SHA-256 of the body."""
    media_type: str
    body: bytes


def served_manifest(server: Server, name: str, reference: str) -> Served:
    """HEAD and GET ``/v2/NAME/manifests/REFERENCE``; checks that both name the same digest and
    that the body hashes to it."""
    url = f"{server.url}/v2/{name}/manifests/{reference}"
    head = requests.head(url, headers=ACCEPT_MANIFESTS, auth=server.admin_auth, timeout=30)
    assert head.status_code == 200, (head.status_code, head.headers)
    get = requests.get(url, headers=ACCEPT_MANIFESTS, auth=server.admin_auth, timeout=30)
    assert get.status_code == 200, get.text
    digest = get.headers["Docker-Content-Digest"]
    assert head.headers["Docker-Content-Digest"] == digest
    assert "sha256:" + hashlib.sha256(get.content).hexdigest() == digest
    media_type = get.headers["Content-Type"].split(";")[0].strip()
    assert head.headers["Content-Type"].split(";")[0].strip() == media_type
    return Served(digest, media_type, get.content)
