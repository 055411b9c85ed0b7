"""Crash safety: a killed server or an abandoned upload never leaves a partial blob visible,
and the same push succeeds afterwards."""

from __future__ import annotations

import base64
import os
import socket
import time
from pathlib import Path

import pytest

from tests.integration.oci_client import OciClient, sha256
from tests.integration.server import Server

BLOB_SIZE = 8 * 1024 * 1024


def _stored_blob_files(data_dir: Path) -> set[str]:
    blobs = data_dir / "storage" / "blobs"
    return {path.name for path in blobs.rglob("*") if path.is_file()}


def _upload_files(data_dir: Path) -> list[Path]:
    return list((data_dir / "storage" / "uploads").iterdir())


def _send_half_then_kill(server: Server, method: str, path: str, body: bytes) -> None:
    """Send the headers and half the body of a request, then SIGKILL the server."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        credentials = base64.b64encode(server.admin_creds.encode()).decode()
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: {server.host}\r\n"
            f"Authorization: Basic {credentials}\r\n"
            f"Content-Type: application/octet-stream\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        sock.sendall(head.encode() + body[: len(body) // 2])
        time.sleep(0.5)  # let the server write what it received
        server.kill()


@pytest.mark.parametrize("how", ["single-post", "put", "patch"])
def test_killed_mid_upload_leaves_nothing_visible_and_push_succeeds_after(
    own_server: Server, how: str
) -> None:
    client = OciClient(own_server.url, own_server.admin_auth)
    name = own_server.unique_name()
    data = os.urandom(BLOB_SIZE)
    digest = sha256(data)
    location = ""
    if how == "single-post":
        _send_half_then_kill(own_server, "POST", f"/v2/{name}/blobs/uploads/?digest={digest}", data)
    else:
        location = client.request("POST", f"/v2/{name}/blobs/uploads/").headers["Location"]
        target = f"{location}?digest={digest}" if how == "put" else location
        _send_half_then_kill(own_server, how.upper(), target, data)

    own_server.start()
    assert digest.split(":")[1] not in _stored_blob_files(own_server.data_dir)
    head = client.request("HEAD", f"/v2/{name}/blobs/{digest}")
    assert head.status_code == 404
    if how == "patch":
        # The bytes that arrived before the crash are kept: the push can resume from them.
        status = client.request("GET", location)
        assert status.status_code == 204
        received = int(status.headers["Range"].split("-")[1]) + 1
        assert 0 < received < len(data)
        resumed = client.request(
            "PUT",
            f"{location}?digest={digest}",
            data=data[received:],
            headers={"Content-Range": f"{received}-{len(data) - 1}"},
        )
        assert resumed.status_code == 201, resumed.text
    else:
        client.push_blob(name, data)
    pulled = client.request("GET", f"/v2/{name}/blobs/{digest}")
    assert pulled.status_code == 200
    assert sha256(pulled.content) == digest


def test_stale_upload_sessions_expire_and_are_removed(tmp_path: Path) -> None:
    server = Server(tmp_path / "data")
    server.create_repository("test", "hosted")
    server.start(
        env={"CARGOHOLD_UPLOAD_TTL_SECONDS": "1", "CARGOHOLD_CLEANUP_INTERVAL_SECONDS": "1"}
    )
    try:
        client = OciClient(server.url, server.admin_auth)
        name = server.unique_name()
        location = client.request("POST", f"/v2/{name}/blobs/uploads/").headers["Location"]
        patched = client.request("PATCH", location, data=b"partial")
        assert patched.status_code == 202
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and client.request("GET", location).status_code == 204:
            time.sleep(0.2)
        gone = client.request("GET", location)
        assert gone.status_code == 404
        assert OciClient.errors(gone) == ["BLOB_UPLOAD_UNKNOWN"]
        assert _upload_files(server.data_dir) == []
    finally:
        server.stop()
