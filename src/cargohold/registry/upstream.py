"""A proxy repository's upstream registry: its names, its authentication, its answers.

Upstream tokens are cached per scope until they expire. Every failure to get a useful
answer (refused connection, timeout, 5xx, 429, refused credentials) is an UpstreamError,
which the proxy turns into serving what it cached, or into an error naming the problem.
"""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from cargohold.db.metadata import RepositoryRecord
from cargohold.oci.auth import parse_challenge
from cargohold.oci.mediatypes import (
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    OCI_INDEX,
    OCI_MANIFEST,
    base_type,
)

log = logging.getLogger(__name__)

MANIFEST_ACCEPT = ", ".join((OCI_INDEX, OCI_MANIFEST, DOCKER_MANIFEST_LIST, DOCKER_MANIFEST))
TOKEN_MARGIN_SECONDS = 10.0
DEFAULT_TOKEN_SECONDS = 60.0


class UpstreamError(Exception):
    """The upstream gave no useful answer; `status` is its HTTP status when it answered."""

    def __init__(
        self, message: str, *, status: int | None = None, retry_after: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class UpstreamManifest:
    digest: str | None
    media_type: str | None
    body: bytes | None  # None for a HEAD


def is_docker_hub(remote_url: str, hub_hosts: Collection[str]) -> bool:
    url = urlsplit(remote_url)
    return url.netloc in hub_hosts or (url.hostname or "") in hub_hosts


def upstream_host(remote_url: str, hub_hosts: Collection[str]) -> str:
    """The host clients name for this upstream (`docker.io` for Docker Hub)."""
    return "docker.io" if is_docker_hub(remote_url, hub_hosts) else urlsplit(remote_url).netloc


class UpstreamClient:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        repository: RepositoryRecord,
        *,
        timeout: float,
        docker_hub: bool,
    ) -> None:
        assert repository.remote_url is not None
        self._session = session
        self.remote_url = repository.remote_url
        self._docker_hub = docker_hub
        self._credentials = (
            (repository.upstream_username, repository.upstream_password or "")
            if repository.upstream_username is not None
            else None
        )
        self._timeout = aiohttp.ClientTimeout(total=None, connect=timeout, sock_read=timeout)
        self._tokens: dict[str, tuple[str, float]] = {}

    def name(self, image: str) -> str:
        """The upstream name of an image: Docker Hub keeps one-segment names in `library/`."""
        if self._docker_hub and "/" not in image:
            return f"library/{image}"
        return image

    def _basic(self) -> str | None:
        if self._credentials is None:
            return None
        user, password = self._credentials
        return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()

    async def _token(self, params: Mapping[str, str], scope: str) -> tuple[str, float]:
        """An Authorization value for the scope, and until when it may be used."""
        realm = params.get("realm")
        if not realm:
            raise UpstreamError(f"{self.remote_url} asked for a token without naming a realm")
        query = {"scope": scope, **({"service": params["service"]} if "service" in params else {})}
        headers = {"Authorization": basic} if (basic := self._basic()) else {}
        try:
            async with self._session.get(
                realm, params=query, headers=headers, timeout=self._timeout
            ) as response:
                if response.status in (401, 403):
                    raise UpstreamError(
                        f"the token service of {self.remote_url} refused the proxy's"
                        f" credentials ({response.status})",
                        status=response.status,
                    )
                if response.status != 200:
                    raise UpstreamError(
                        f"the token service of {self.remote_url} answered {response.status}",
                        status=response.status,
                    )
                answer: dict[str, Any] = json.loads(await response.read())
        except (aiohttp.ClientError, TimeoutError, ValueError) as error:
            raise UpstreamError(f"the token service of {self.remote_url} failed: {error}") from None
        token = answer.get("token") or answer.get("access_token")
        if not isinstance(token, str):
            raise UpstreamError(f"the token service of {self.remote_url} sent no token")
        lifetime = float(answer.get("expires_in") or DEFAULT_TOKEN_SECONDS)
        return f"Bearer {token}", time.monotonic() + lifetime - TOKEN_MARGIN_SECONDS

    async def request(
        self, method: str, image: str, path: str, *, headers: Mapping[str, str] | None = None
    ) -> aiohttp.ClientResponse:
        """A response of the upstream for `/v2/<upstream name>/<path>`, authenticating as its
        challenge asks; the caller releases it. 401, 403, 429 and 5xx raise UpstreamError."""
        scope = f"repository:{self.name(image)}:pull"
        url = f"{self.remote_url}/v2/{self.name(image)}/{path}"
        for attempt in range(2):
            sent = dict(headers or {})
            cached = self._tokens.get(scope)
            if cached is not None and cached[1] > time.monotonic():
                sent["Authorization"] = cached[0]
            try:
                response = await self._session.request(
                    method, url, headers=sent, timeout=self._timeout
                )
            except (aiohttp.ClientError, TimeoutError) as error:
                raise UpstreamError(
                    f"{self.remote_url} did not answer: {error or type(error).__name__}"
                ) from None
            if response.status == 401 and attempt == 0:
                challenge = parse_challenge(response.headers.get("WWW-Authenticate", ""))
                response.release()
                if challenge is not None and challenge.scheme == "bearer":
                    self._tokens[scope] = await self._token(challenge.params, scope)
                    continue
                if challenge is not None and challenge.scheme == "basic" and self._basic():
                    self._tokens[scope] = (self._basic() or "", float("inf"))
                    continue
                raise UpstreamError(f"{self.remote_url} requires credentials", status=401)
            if response.status in (401, 403):
                response.release()
                self._tokens.pop(scope, None)
                raise UpstreamError(
                    f"{self.remote_url} refused the proxy's credentials ({response.status})",
                    status=response.status,
                )
            if response.status == 429 or response.status >= 500:
                response.release()
                raise UpstreamError(
                    f"{self.remote_url} answered {response.status}",
                    status=response.status,
                    retry_after=response.headers.get("Retry-After"),
                )
            return response
        raise AssertionError("unreachable")

    async def manifest(
        self, image: str, reference: str, *, head: bool, max_bytes: int
    ) -> UpstreamManifest | None:
        """The upstream's manifest (or only its digest and type, for a HEAD); None on 404."""
        response = await self.request(
            "HEAD" if head else "GET",
            image,
            f"manifests/{reference}",
            headers={"Accept": MANIFEST_ACCEPT},
        )
        async with response:
            if response.status == 404:
                return None
            if response.status != 200:
                raise UpstreamError(
                    f"{self.remote_url} answered {response.status} for manifest {reference}",
                    status=response.status,
                )
            body = None
            if not head:
                body = await response.content.read(max_bytes + 1)
                if len(body) > max_bytes:
                    raise UpstreamError(f"the upstream manifest {reference} is too large")
            return UpstreamManifest(
                response.headers.get("Docker-Content-Digest"),
                base_type(response.headers.get("Content-Type")),
                body,
            )

    async def json(self, image: str, path: str) -> tuple[Any, Mapping[str, str]] | None:
        """A JSON answer (tags, referrers) and its headers; None when the upstream has none."""
        response = await self.request("GET", image, path)
        async with response:
            if response.status == 404:
                return None
            if response.status != 200:
                raise UpstreamError(
                    f"{self.remote_url} answered {response.status} for {path}",
                    status=response.status,
                )
            try:
                return json.loads(await response.read()), response.headers
            except ValueError:
                raise UpstreamError(f"{self.remote_url} sent invalid JSON for {path}") from None
