from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration import postgres
from tests.integration.oci_client import OciClient
from tests.integration.server import Server, use_object_store


@pytest.fixture(scope="session", autouse=True)
def blob_store(request: pytest.FixtureRequest) -> Iterator[None]:
    """With CARGOHOLD_TEST_BLOB_STORE=s3, every server keeps its blobs in a bucket of its
    own on a local S3 server; else in its data folder."""
    kind = os.environ.get("CARGOHOLD_TEST_BLOB_STORE", "filesystem")
    if kind not in ("filesystem", "s3"):
        raise pytest.UsageError(f"CARGOHOLD_TEST_BLOB_STORE={kind!r}: filesystem or s3")
    use_object_store(request.getfixturevalue("s3_server") if kind == "s3" else None)
    yield
    use_object_store(None)


@pytest.fixture(scope="session", autouse=True)
def _postgres_stops_at_the_end() -> Iterator[None]:
    """The session's PostgreSQL server, when a test started it, ends with the session."""
    yield
    postgres.stop_shared()


@pytest.fixture(scope="session")
def database() -> postgres.Postgres:
    """The session's PostgreSQL server, for tests that need PostgreSQL whatever the mode."""
    return postgres.shared()


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server for the session, with the hosted repository `test/hosted`.

    Tests share it, each under its own image name (`server.unique_name()`).
    """
    instance = Server(tmp_path_factory.mktemp("cargohold") / "data")
    instance.create_repository("test", "hosted")
    instance.start()
    yield instance
    instance.stop()


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[Server]:
    """A server of the test's own, for tests that stop, kill or reconfigure it."""
    instance = Server(tmp_path / "data")
    instance.create_repository("test", "hosted")
    instance.start()
    yield instance
    instance.stop()


@pytest.fixture
def name(server: Server) -> str:
    """A fresh image name in `test/hosted`."""
    return server.unique_name()


@pytest.fixture(scope="session")
def other_repository(server: Server) -> str:
    """A second hosted repository, `test2/other`, in the session's server (idempotent)."""
    prefix = "test2/other"
    server.cli("project", "create", "test2", check=False)
    server.cli("repo", "create", "test2", "other", "--type", "hosted", check=False)
    assert f"{prefix}\t" in server.cli("repo", "list").stdout
    return prefix


@pytest.fixture
def oci(server: Server) -> OciClient:
    """A protocol client of the session's server."""
    return OciClient(server.url, server.admin_auth)
