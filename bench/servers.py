"""The two servers under test, behind one interface.

- ``Reference``: distribution 2.8 (``docker-registry``) twice, over one storage folder: one
  instance in token mode (bearer tokens from a ``TokenServer``, as Docker Hub does it) for
  every authenticated workload, and one open instance for the anonymous workloads and as the
  upstream of Cargohold's proxy repository. Both come from ``tests/integration/upstream.py``.
- ``Cargohold``: ``cargohold serve`` (``--workers N`` when the command has it) through
  ``tests/integration/server.py``, with the project ``bench`` (anonymous read), the hosted
  repository ``bench/hosted`` and the proxy repository ``bench/hub`` of the open reference.

Every process is started here and stopped here, by pid.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import requests
from tests.integration.clients import run
from tests.integration.server import Server
from tests.integration.upstream import ReferenceRegistry, TokenServer, fetch_token

from bench.procstat import tree

HOSTED = "bench/hosted"
"""Image names in both servers start with this (a Cargohold hosted repository)."""
PROXY = "bench/hub"
"""Cargohold's proxy repository of the open reference instance."""
TOKEN_SECONDS = 3600


class Side:
    """What a workload needs of a server."""

    label: str
    url: str
    """The endpoint for authenticated workloads."""
    anonymous_url: str
    """The endpoint for anonymous workloads."""
    skopeo_creds: str

    def token(self, *scopes: str) -> str:
        raise NotImplementedError

    def bearer(self, name: str, actions: str = "pull,push") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(f'repository:{name}:{actions}')}"}

    def roots(self, anonymous: bool) -> list[int]:
        """The processes whose CPU and memory a workload is charged with."""
        raise NotImplementedError

    def version(self) -> str:
        raise NotImplementedError

    def host(self, url: str) -> str:
        return url.removeprefix("http://")


class Reference(Side):
    label = "reference"

    def __init__(self, workdir: Path) -> None:
        self.token_server = TokenServer(
            workdir / "token-server",
            expires_in=TOKEN_SECONDS,
            default_service="reference-registry",
        )
        self.secured = ReferenceRegistry(
            workdir / "reference-token", mode="token", token_server=self.token_server
        )
        self.open = ReferenceRegistry(workdir / "reference-open", mode="open")
        # One data folder for both instances (distribution supports several over one storage).
        storage = workdir / "reference-data"
        self.secured.storage = storage
        self.open.storage = storage
        self.url = self.secured.url
        self.anonymous_url = self.open.url
        self.skopeo_creds = f"{self.secured.user}:{self.secured.password}"

    def start(self) -> None:
        self.token_server.start()
        self.secured.start()
        self.open.start()

    def stop(self) -> None:
        self.open.close()
        self.secured.close()
        self.token_server.stop()

    def token(self, *scopes: str) -> str:
        return fetch_token(
            self.token_server.realm,
            self.secured.service,
            scopes,
            (self.secured.user, self.secured.password),
        )

    def roots(self, anonymous: bool) -> list[int]:
        pid = (self.open if anonymous else self.secured).daemon.pid
        return [] if pid is None else [pid]

    def version(self) -> str:
        return run(["docker-registry", "--version"]).stdout.strip()


def supports_workers() -> bool:
    done = subprocess.run(
        [sys.executable, "-m", "cargohold", "serve", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return "--workers" in done.stdout


class Cargohold(Side):
    label = "cargohold"

    def __init__(self, workdir: Path, *, workers: int, proxy_of: str) -> None:
        self.server = Server(workdir / "cargohold-data")
        self.workers = workers if supports_workers() else None
        self.url = self.anonymous_url = self.server.url
        self.skopeo_creds = self.server.admin_creds
        self.proxy_of = proxy_of
        self.extra_env: dict[str, str] = {}

    def configure(self) -> None:
        self.server.cli("project", "create", "bench", "--anonymous-read")
        self.server.cli("repo", "create", "bench", "hosted", "--type", "hosted")
        self.server.cli(
            "repo", "create", "bench", "hub", "--type", "proxy", "--remote-url", self.proxy_of
        )

    def start(self) -> None:
        extra: Sequence[str] = () if self.workers is None else ("--workers", str(self.workers))
        self.server.start(*extra, env=self.extra_env)

    def stop(self) -> None:
        process = self.server.process
        family = tree([process.pid]) if process is not None else []
        self.server.stop()
        # Workers end with their parent; any that lingers is stopped by its pid.
        for sig in (signal.SIGTERM, signal.SIGKILL):
            left = tree(family)
            if not left:
                return
            for pid in left:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            for _ in range(100):
                if not tree(family):
                    return
                time.sleep(0.1)

    def token(self, *scopes: str) -> str:
        response = requests.get(
            self.url + "/v2/token",
            params=[("service", "cargohold"), *(("scope", s) for s in scopes)],
            auth=self.server.admin_auth,
            timeout=60,
        )
        response.raise_for_status()
        token: str = response.json()["token"]
        return token

    def roots(self, anonymous: bool) -> list[int]:
        process = self.server.process
        return [] if process is None else [process.pid]

    def version(self) -> str:
        root = Path(__file__).resolve().parents[1]
        commit = run(["git", "-C", root, "rev-parse", "--short", "HEAD"]).stdout.strip()
        dirty = run(["git", "-C", root, "status", "--porcelain", "--", "src"]).stdout.strip()
        workers = "1 process" if self.workers is None else f"--workers {self.workers}"
        return f"cargohold {commit}{' + uncommitted changes' if dirty else ''} ({workers})"
