"""A real PostgreSQL server for the tests, from the Debian packages, stopped by pid.

`initdb` into a temporary folder, `pg_ctl start` on a free port of 127.0.0.1 with its socket
in that folder, trust authentication. PostgreSQL refuses to run as root, so as root the
server runs as the `postgres` system user, which owns the folder. Each test, server or node
gets a database of its own, copied from a migrated template (much faster than migrating).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from cargohold.db.engine import migrate
from tests.integration.clients import free_port

SYSTEM_USER = "postgres"
START_SECONDS = 60.0
STOP_SECONDS = 30.0
TEMPLATE = "cargohold_template"
# `postgres` runs every server the tests start on a fresh PostgreSQL database.
TEST_DATABASE_ENV = "CARGOHOLD_TEST_DATABASE"
MISSING = "PostgreSQL is not installed here (apt-get install postgresql; CI installs it)"
# Tests need no durability across a power cut: skip the flushes.
SERVER_OPTIONS = (
    "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300"
)


def binaries() -> Path | None:
    """The newest installed PostgreSQL's bin folder, None when none is installed."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parts[-3]))
    return found[-1].parent if found else None


class Postgres:
    def __init__(self, bin_dir: Path, *, options: str = SERVER_OPTIONS) -> None:
        """`options`: the server's settings (`-c name=value ...`)."""
        self._bin = bin_dir
        self._options = options
        self.root = Path(tempfile.mkdtemp(prefix="cargohold-postgres-"))
        self.data = self.root / "data"
        self.port = free_port()
        self.log_path = self.root / "server.log"
        self.pid: int | None = None
        # As root, everything runs as the postgres user, which must own (and reach) the folder.
        self._as_user: list[str] = []
        if os.geteuid() == 0:
            self._as_user = ["runuser", "-u", SYSTEM_USER, "--"]
            self.root.chmod(0o755)
            shutil.chown(self.root, SYSTEM_USER, SYSTEM_USER)

    def _run(self, *command: str) -> None:
        subprocess.run(
            [*self._as_user, *command],
            check=True,
            capture_output=True,
            text=True,
            timeout=START_SECONDS,
            cwd=self.root,
        )

    def init(self) -> None:
        self._run(
            str(self._bin / "initdb"),
            "--pgdata",
            str(self.data),
            "--username",
            SYSTEM_USER,
            "--auth",
            "trust",
            "--no-sync",
            "--encoding",
            "UTF8",
            "--locale",
            "C",
        )

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 {self._options}"
        self._run(
            str(self._bin / "pg_ctl"),
            "start",
            "--pgdata",
            str(self.data),
            "--log",
            str(self.log_path),
            "--options",
            options,
            "--wait",
            "--timeout",
            str(int(START_SECONDS)),
        )
        self.pid = int((self.data / "postmaster.pid").read_text().split()[0])

    def stop(self) -> None:
        """A fast shutdown (SIGINT to the postmaster): sessions are cut, nothing is lost."""
        if self.pid is None:
            return
        pid, self.pid = self.pid, None
        try:
            os.kill(pid, signal.SIGINT)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + STOP_SECONDS
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)
        os.kill(pid, signal.SIGKILL)

    def url(self, database: str) -> str:
        return f"postgresql://{SYSTEM_USER}@127.0.0.1:{self.port}/{database}"

    def sql(self, statement: str, database: str = "postgres") -> str:
        done = subprocess.run(
            [
                str(self._bin / "psql"),
                "--no-psqlrc",
                "--quiet",
                "--tuples-only",
                "--no-align",
                "--set",
                "ON_ERROR_STOP=1",
                "--command",
                statement,
                self.url(database),
            ],
            check=True,
            capture_output=True,
            text=True,
            timeout=STOP_SECONDS,
        )
        return done.stdout.strip()

    def create_database(self, *, migrated: bool = True) -> str:
        """A new database's URL: at the schema's head (copied from the template), or empty."""
        name = f"cargohold_{uuid.uuid4().hex[:12]}"
        template = TEMPLATE if migrated else "template0"
        self.sql(f"CREATE DATABASE {name} TEMPLATE {template}")
        return self.url(name)

    def _create_template(self) -> None:
        self.sql(f"CREATE DATABASE {TEMPLATE}")
        migrate(self.url(TEMPLATE))

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    @classmethod
    def launch(cls, bin_dir: Path, *, options: str = SERVER_OPTIONS) -> Postgres:
        instance = cls(bin_dir, options=options)
        try:
            instance.init()
            instance.start()
            instance._create_template()
        except BaseException:
            instance.remove()
            raise
        return instance


_shared: Postgres | None = None


def shared() -> Postgres:
    """The session's PostgreSQL server, started on first use; skips when none is installed."""
    global _shared
    if _shared is None:
        bin_dir = binaries()
        if bin_dir is None:
            pytest.skip(MISSING)
        _shared = Postgres.launch(bin_dir)
    return _shared


def stop_shared() -> None:
    global _shared
    if _shared is not None:
        _shared.remove()
        _shared = None


def test_database_url() -> str | None:
    """The database for a server under test: a fresh PostgreSQL one when the tests run on
    PostgreSQL, None (SQLite in its data folder) otherwise."""
    if os.environ.get(TEST_DATABASE_ENV, "sqlite") != "postgres":
        return None
    if binaries() is None:
        pytest.fail(f"{TEST_DATABASE_ENV}=postgres: {MISSING}")
    return shared().create_database()
