"""The real Cargohold server in a child process, on a real socket, stopped by pid."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from sqlalchemy import text

from cargohold.cli import main
from cargohold.db.engine import open_database, sqlite_url
from tests.integration import postgres
from tests.integration.clients import free_port
from tests.s3server import BucketBlobs, S3Server

ADMIN_USER = "admin"
ADMIN_PASSWORD = "admin-password-for-tests"
STARTUP_SECONDS = 30.0
STOP_SECONDS = 15.0


# The S3 server blobs go to when this run tests object storage (CARGOHOLD_TEST_BLOB_STORE=s3).
_object_store: S3Server | None = None


def use_object_store(s3: S3Server | None) -> None:
    global _object_store
    _object_store = s3


def blob_store_settings() -> dict[str, str]:
    """The CARGOHOLD_* settings of a fresh bucket when this run tests object storage."""
    return {} if _object_store is None else _object_store.settings(_object_store.create_bucket())


def cargohold(
    *args: str, data_dir: Path, check: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the command line against a data folder, as an operator would."""
    return subprocess.run(
        [sys.executable, "-m", "cargohold", *args, "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        check=check,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


@dataclass(frozen=True, slots=True)
class SqlResult:
    rows: list[tuple[Any, ...]]
    changed: int


class FolderBlobs:
    """The blobs of a server in its data folder, for tests that alter or inspect them."""

    def __init__(self, root: Path) -> None:
        self._root = root

    def _path(self, digest: str) -> Path:
        algorithm, encoded = digest.split(":")
        return self._root / "blobs" / algorithm / encoded[:2] / encoded

    def read(self, digest: str) -> bytes | None:
        path = self._path(digest)
        return path.read_bytes() if path.exists() else None

    def write(self, digest: str, data: bytes) -> None:
        self._path(digest).parent.mkdir(parents=True, exist_ok=True)
        self._path(digest).write_bytes(data)

    def delete(self, digest: str) -> None:
        self._path(digest).unlink()

    def under(self, folder: str) -> dict[str, bytes]:
        """Every file under `blobs/`, `uploads/` or `quarantine/`, by path."""
        return {
            str(path): path.read_bytes()
            for path in (self._root / folder).rglob("*")
            if path.is_file()
        }


class Server:
    def __init__(
        self,
        data_dir: Path,
        *,
        port: int | None = None,
        database_url: str | None = None,
        storage_dir: Path | None = None,
        blob_store: dict[str, str] | None = None,
    ) -> None:
        """`database_url`: the metadata database (default: SQLite in `data_dir`, or a fresh
        PostgreSQL database when the tests run on PostgreSQL); `storage_dir`: the blob folder
        (default: in `data_dir`), shared by nodes over one database; `blob_store`: the
        CARGOHOLD_* settings of the blob store (default: a bucket of its own when the tests
        run on object storage, else the folder; `{}`: the folder whatever the run)."""
        self.data_dir = data_dir
        self.database_url = database_url or postgres.test_database_url()
        # The settings every command and the server of this data folder run with.
        self.env: dict[str, str] = {}
        if self.database_url is not None:
            self.env["CARGOHOLD_DATABASE_URL"] = self.database_url
        if storage_dir is not None:
            self.env["CARGOHOLD_STORAGE_DIR"] = str(storage_dir)
        self.storage_dir = storage_dir or data_dir / "storage"
        self.port = port or free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.url = f"http://{self.host}"
        self.log_path = data_dir.parent / f"{data_dir.name}-server.log"
        self.process: subprocess.Popen[bytes] | None = None
        # The server and its command line share the blob store's settings.
        self.env.update(blob_store_settings() if blob_store is None else blob_store)

    @property
    def on_object_storage(self) -> bool:
        return self.env.get("CARGOHOLD_BLOB_STORE") == "s3"

    @property
    def blobs(self) -> FolderBlobs | BucketBlobs:
        """What the server stored, in its data folder or its bucket."""
        if self.on_object_storage:
            return BucketBlobs.of(self.env)
        return FolderBlobs(self.storage_dir)

    @property
    def metadata_url(self) -> str:
        return self.database_url or sqlite_url(self.data_dir / "cargohold.db")

    def sql(self, statement: str, **parameters: Any) -> SqlResult:
        """Run one SQL statement (`:name` parameters) on the server's metadata database,
        SQLite or PostgreSQL, in a transaction of its own: its rows and how many it changed."""

        async def run() -> SqlResult:
            database = open_database(self.metadata_url)
            try:
                async with database.write() as conn:
                    result = await conn.execute(text(statement), parameters)
                    rows = [tuple(row) for row in result] if result.returns_rows else []
                    return SqlResult(rows, result.rowcount)
            finally:
                await database.dispose()

        return asyncio.run(run())

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return cargohold(*args, data_dir=self.data_dir, check=check, env=self.env)

    def cli_in_this_process(self, *args: str, stdin: str = "") -> tuple[int, str, str]:
        """The command line against this server's data, run in this process: the same code
        as `cargohold ...` without a second of interpreter start. Its status, stdout, stderr."""
        out, err = io.StringIO(), io.StringIO()
        saved_stdin, saved_environ = sys.stdin, dict(os.environ)
        sys.stdin = io.StringIO(stdin)
        os.environ.update(self.env)
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                code = main([*args, "--data-dir", str(self.data_dir)])
        finally:
            sys.stdin = saved_stdin
            os.environ.clear()
            os.environ.update(saved_environ)
        return code, out.getvalue(), err.getvalue()

    def create_repository(self, project: str, repository: str) -> str:
        """Create the project (when new) and a hosted repository; return its prefix."""
        self.cli("project", "create", project, check=False)
        self.cli("repo", "create", project, repository, "--type", "hosted")
        return f"{project}/{repository}"

    @property
    def admin_auth(self) -> tuple[str, str]:
        return (ADMIN_USER, ADMIN_PASSWORD)

    @property
    def admin_creds(self) -> str:
        """The administrator's credentials as clients take them: `user:password`."""
        return f"{ADMIN_USER}:{ADMIN_PASSWORD}"

    def create_user(
        self, name: str, password: str, *, role_in: dict[str, str] | None = None
    ) -> None:
        """A user with a known password, and its role in each project of `role_in`."""
        subprocess.run(
            [*self._command("user", "create", name, "--password-stdin")],
            input=password + "\n",
            env={**os.environ, **self.env},
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        for project, role in (role_in or {}).items():
            self.cli("project", "member-set", project, name, role)

    def create_robot(self, name: str, *grants: str, expires_in_days: float | None = None) -> str:
        """A robot `sa$<name>` with grants (`project[/repository]=actions`); returns its key."""
        args = ["robot", "create", name, *(f"--grant={grant}" for grant in grants)]
        if expires_in_days is not None:
            args.append(f"--expires-in-days={expires_in_days}")
        return self.cli(*args).stdout.strip()

    def unique_name(self, prefix: str = "test/hosted") -> str:
        return f"{prefix}/img-{uuid.uuid4().hex[:10]}"

    def _command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "cargohold", *args, "--data-dir", str(self.data_dir)]

    def start(self, *extra: str, env: dict[str, str] | None = None) -> None:
        """Start serving; `env` adds CARGOHOLD_* settings for this run."""
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [*self._command("serve"), "--port", str(self.port), *extra],
            env={
                **os.environ,
                "CARGOHOLD_ADMIN_PASSWORD": ADMIN_PASSWORD,
                **self.env,
                **(env or {}),
            },
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited at start:\n{self.log()}")
            try:
                requests.get(self.url + "/healthz", timeout=1).raise_for_status()
                return
            except requests.ConnectionError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"server did not start in {STARTUP_SECONDS}s:\n{self.log()}")

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def kill(self) -> None:
        """SIGKILL: the crash a power cut or the OOM killer would cause."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(STOP_SECONDS)
        self.process = None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(STOP_SECONDS)
            except subprocess.TimeoutExpired:
                self.kill()
        self.process = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
