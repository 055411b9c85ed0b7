from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.s3server import S3Server


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """One S3-compatible server for the session; each user takes a bucket of its own."""
    instance = S3Server(tmp_path_factory.mktemp("s3") / "s3-server.log")
    instance.start()
    yield instance
    instance.stop()
