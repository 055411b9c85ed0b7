"""`cargohold serve --workers N`: several processes on one port, sharing everything through
the database and the data folder."""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.integration.clients import oci_image
from tests.integration.oci_client import OciClient
from tests.integration.server import Server
from tests.integration.upstream import ReferenceRegistry

WORKERS = 2
CONCURRENT_PULLS = 20
# The log format names the process: "<date> <time> <pid> INFO aiohttp.access ...".
ACCESS_PID = re.compile(r"^\S+ \S+ (\d+) INFO aiohttp\.access ", re.MULTILINE)


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(child) for child in path.read_text().split()] if path.exists() else []


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


@pytest.fixture
def workers_server(tmp_path: Path) -> Iterator[Server]:
    server = Server(tmp_path / "data")
    server.create_repository("test", "hosted")
    server.start("--workers", str(WORKERS))
    yield server
    server.stop()


def test_every_worker_serves_and_they_share_content(workers_server: Server) -> None:
    assert len(_children(workers_server.pid)) == WORKERS
    name = workers_server.unique_name()
    pushed = OciClient(workers_server.url, workers_server.admin_auth).push_image(name, "v1")
    for _ in range(40):  # a new connection each time: the kernel spreads them
        response = requests.get(
            f"{workers_server.url}/v2/{name}/manifests/v1",
            auth=workers_server.admin_auth,
            headers={"Connection": "close"},
            timeout=10,
        )
        assert response.content == pushed.body
    served_by = set(ACCESS_PID.findall(workers_server.log()))
    assert served_by == {str(child) for child in _children(workers_server.pid)}


def test_workers_end_with_their_parent_even_when_it_is_killed(workers_server: Server) -> None:
    children = _children(workers_server.pid)
    assert len(children) == WORKERS
    os.kill(workers_server.pid, signal.SIGKILL)
    deadline = time.monotonic() + 15
    while any(_alive(child) for child in children) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(child) for child in children)


def test_proxy_fetches_once_across_workers(tmp_path: Path) -> None:
    """Concurrent cold pulls spread over the workers make one upstream request per blob."""
    with ReferenceRegistry(tmp_path / "upstream") as upstream:
        image = oci_image(tmp_path / "layout", "v1", layers=3, layer_size=256 * 1024)
        upstream.seed(image, "team/app", "v1")
        server = Server(tmp_path / "data")
        server.create_repository("test", "hosted")
        server.cli("repo", "create", "test", "hub", "--type", "proxy", "--remote-url", upstream.url)
        server.start("--workers", str(WORKERS))
        try:
            digests = sorted(blob.digest for blob in image.blobs)
            barrier = threading.Barrier(CONCURRENT_PULLS)
            failures: list[str] = []

            def pull(digest: str) -> None:
                barrier.wait(timeout=30)
                response = requests.get(
                    f"{server.url}/v2/test/hub/team/app/blobs/{digest}",
                    auth=server.admin_auth,
                    headers={"Connection": "close"},
                    timeout=60,
                )
                if response.status_code != 200:
                    failures.append(f"{digest}: {response.status_code}")

            for digest in digests:
                threads = [
                    threading.Thread(target=pull, args=(digest,)) for _ in range(CONCURRENT_PULLS)
                ]
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join(timeout=120)
            assert failures == []
            assert len(set(ACCESS_PID.findall(server.log()))) == WORKERS
            upstream.wait_for_log(lambda _: sum(upstream.blob_requests().values()) >= len(digests))
            assert upstream.blob_requests() == {digest: 1 for digest in digests}
        finally:
            server.stop()
