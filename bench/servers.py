"""The servers under test, behind one interface.

- ``Reference``: distribution 2.8 (``docker-registry``) twice, over one storage folder: one
  instance in token mode (bearer tokens from a ``TokenServer``, as Docker Hub does it) for
  every authenticated workload, and one open instance for the anonymous workloads and as the
  upstream of Cargohold's proxy repository. Both come from ``tests/integration/upstream.py``.
- ``Cargohold``, once per configuration (``Configuration``: SQLite or PostgreSQL, a folder
  or S3): ``cargohold serve`` (``--workers N`` when the command has it) through
  ``tests/integration/server.py``, with the project ``bench`` (anonymous read), the hosted
  repository ``bench/hosted`` and the proxy repository ``bench/hub`` of the open reference.
- ``Backing``: what the configurations run on, started only when one needs it: a PostgreSQL
  cluster (``tests/integration/postgres.py``; a database per configuration) and a local S3
  server (moto, ``tests/s3server.py``; a bucket per configuration). Their CPU is measured
  apart from Cargohold's (``Side.services``).

Every process is started here and stopped here, by pid.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import importlib.util
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import requests
from tests.integration.clients import run
from tests.integration.postgres import MISSING, Postgres, binaries
from tests.integration.server import Server
from tests.integration.upstream import ReferenceRegistry, TokenServer, fetch_token
from tests.s3server import S3Server

from bench.procstat import tree

HOSTED = "bench/hosted"
"""Image names in both servers start with this (a Cargohold hosted repository)."""
PROXY = "bench/hub"
"""Cargohold's proxy repository of the open reference instance."""
TOKEN_SECONDS = 3600
# PostgreSQL as a deployment runs it (fsync, synchronous commits and full-page writes on:
# its defaults), unlike the tests' throwaway settings; room for every worker's pool.
POSTGRES_SETTINGS = ("max_connections=300",)


@dataclass(frozen=True)
class Configuration:
    """Where one Cargohold side keeps its metadata and its blobs."""

    name: str
    postgres: bool
    """Metadata in PostgreSQL (else SQLite in the data folder)."""
    s3: bool
    """Blobs in an S3 bucket (else a folder)."""

    @property
    def description(self) -> str:
        database = "PostgreSQL" if self.postgres else "SQLite"
        return f"{database} + {'S3 (moto)' if self.s3 else 'folder'}"


CONFIGURATIONS = {
    c.name: c
    for c in (
        Configuration("sqlite", postgres=False, s3=False),
        Configuration("postgres", postgres=True, s3=False),
        Configuration("sqlite-s3", postgres=False, s3=True),
        Configuration("postgres-s3", postgres=True, s3=True),
    )
}
EMBEDDED = CONFIGURATIONS["sqlite"]
"""The default: one machine, SQLite and a folder. Other configurations are compared to it."""


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

    def services(self) -> dict[str, list[int]]:
        """The servers this one runs on (PostgreSQL, moto), by name: their CPU is measured
        apart."""
        return {}

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


@functools.cache
def supports_workers() -> bool:
    done = subprocess.run(
        [sys.executable, "-m", "cargohold", "serve", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return "--workers" in done.stdout


class Backing:
    """The PostgreSQL cluster and the S3 server the configurations need, each started once
    (a database and a bucket per configuration)."""

    def __init__(self, workdir: Path, postgres_settings: Sequence[str] = ()) -> None:
        """``postgres_settings``: ``NAME=VALUE`` settings of the PostgreSQL server, after
        ``POSTGRES_SETTINGS``."""
        self.workdir = workdir
        self.postgres_options = " ".join(
            f"-c {setting}" for setting in (*POSTGRES_SETTINGS, *postgres_settings)
        )
        self.postgres: Postgres | None = None
        self.s3: S3Server | None = None

    def start(self, configurations: Sequence[Configuration]) -> None:
        if any(c.postgres for c in configurations):
            bin_dir = binaries()
            if bin_dir is None:
                raise RuntimeError(MISSING)
            self.postgres = Postgres.launch(bin_dir, options=self.postgres_options)
        if any(c.s3 for c in configurations):
            if importlib.util.find_spec("moto") is None:
                raise RuntimeError("moto[server] is not installed: run scripts/venv")
            self.s3 = S3Server(self.workdir / "s3" / "s3-server.log")
            self.s3.start()

    def stop(self) -> None:
        if self.s3 is not None:
            self.s3.stop()
        if self.postgres is not None:
            self.postgres.remove()

    def versions(self) -> dict[str, str]:
        found = {}
        if self.postgres is not None:
            found["postgresql"] = self.postgres.sql("SHOW server_version")
        if self.s3 is not None:
            found["moto"] = importlib.metadata.version("moto")
        return found


class Cargohold(Side):
    def __init__(
        self,
        workdir: Path,
        *,
        configuration: Configuration,
        backing: Backing,
        workers: int,
        proxy_of: str,
    ) -> None:
        self.configuration = configuration
        # The embedded default keeps the label of the runs before configurations existed.
        self.label = "cargohold" if configuration == EMBEDDED else f"cargohold-{configuration.name}"
        self.backing = backing
        database_url = None
        if configuration.postgres:
            assert backing.postgres is not None
            database_url = backing.postgres.create_database()
        self.server = Server(workdir / f"{self.label}-data", database_url=database_url)
        if configuration.s3:
            assert backing.s3 is not None
            self.server.env.update(backing.s3.settings(backing.s3.create_bucket()))
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

    def services(self) -> dict[str, list[int]]:
        found = {}
        postgres, s3 = self.backing.postgres, self.backing.s3
        if self.configuration.postgres and postgres is not None and postgres.pid is not None:
            found["PostgreSQL"] = [postgres.pid]
        if self.configuration.s3 and s3 is not None and s3.pid is not None:
            found["moto"] = [s3.pid]
        return found

    def version(self) -> str:
        root = Path(__file__).resolve().parents[1]
        commit = run(["git", "-C", root, "rev-parse", "--short", "HEAD"]).stdout.strip()
        dirty = run(["git", "-C", root, "status", "--porcelain", "--", "src"]).stdout.strip()
        workers = "1 process" if self.workers is None else f"--workers {self.workers}"
        return f"cargohold {commit}{' + uncommitted changes' if dirty else ''} ({workers})"
