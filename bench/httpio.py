"""Blob transfers over one plain HTTP/1.1 connection, with as little client work as possible.

Bodies go out with ``socket.sendfile`` (zero copy) from a file on disk, answers are read
with ``readinto`` into one reused buffer and thrown away, so that the client costs the same,
and little, against either server. A blob is a file of random bytes whose first bytes may be
replaced by a ``prefix``: one file on disk gives as many distinct blobs (and digests) as
there are prefixes.
"""

from __future__ import annotations

import hashlib
import http.client
import random
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

TIMEOUT = 600.0
"""Seconds one socket operation may block: every transfer ends, or fails, within bounds."""
READ_BUFFER = 4 << 20
WRITE_PIECE = 64 << 20


class TransferError(RuntimeError):
    pass


def write_random_file(path: Path, size: int, seed: int) -> None:
    rng = random.Random(seed)
    with path.open("wb") as file:
        left = size
        while left > 0:
            piece = min(left, WRITE_PIECE)
            file.write(rng.randbytes(piece))
            left -= piece


@dataclass(frozen=True)
class Blob:
    """``prefix`` + the bytes of ``path`` after ``len(prefix)``: ``size`` bytes in all."""

    path: Path
    size: int
    prefix: bytes
    digest: str

    @classmethod
    def of(cls, path: Path, prefix: bytes) -> Blob:
        size = path.stat().st_size
        if len(prefix) > size:
            raise ValueError("prefix longer than the file")
        hasher = hashlib.sha256(prefix)
        with path.open("rb") as file:
            file.seek(len(prefix))
            for _ in range(size // READ_BUFFER + 2):  # bounded read loop
                data = file.read(READ_BUFFER)
                if not data:
                    break
                hasher.update(data)
        return cls(path, size, prefix, "sha256:" + hasher.hexdigest())

    def send(self, conn: http.client.HTTPConnection, start: int, length: int) -> None:
        """Write bytes ``start`` .. ``start + length`` of the blob to the connection."""
        sock = conn.sock
        if sock is None:
            raise TransferError("not connected")
        end = start + length
        if start < len(self.prefix):
            sock.sendall(self.prefix[start : min(end, len(self.prefix))])
            start = min(end, len(self.prefix))
        if start < end:
            with self.path.open("rb") as file:
                sent = sock.sendfile(file, start, end - start)
            if sent != end - start:
                raise TransferError(f"sent {sent} of {end - start} bytes")


class Connection:
    """One keep-alive connection to ``base_url`` (``http://127.0.0.1:PORT``)."""

    def __init__(self, base_url: str, headers: Mapping[str, str] | None = None) -> None:
        url = urllib.parse.urlsplit(base_url)
        self.base_url = base_url
        self.headers = dict(headers or {})
        self.conn = http.client.HTTPConnection(
            url.hostname or "127.0.0.1", url.port, timeout=TIMEOUT
        )
        self._buffer = bytearray(READ_BUFFER)

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _path(self, location: str) -> str:
        """Path and query of a Location (absolute or relative), for this connection."""
        url = urllib.parse.urlsplit(urllib.parse.urljoin(self.base_url + "/", location))
        return url.path + (f"?{url.query}" if url.query else "")

    def request(
        self,
        method: str,
        path: str,
        *,
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
        blob: tuple[Blob, int, int] | None = None,
        expect: tuple[int, ...] = (200,),
        discard: bool = False,
        hasher: hashlib._Hash | None = None,
    ) -> tuple[http.client.HTTPResponse, bytes, int]:
        """One request; returns the answer, its body (empty when ``discard``) and the number
        of body bytes read. ``blob`` = (blob, start, length) streams that part as the body."""
        conn = self.conn
        conn.putrequest(method, self._path(path), skip_accept_encoding=True)
        length = len(body) if body is not None else (blob[2] if blob is not None else 0)
        all_headers = {**self.headers, **(headers or {})}
        if method in ("POST", "PUT", "PATCH") or length:
            all_headers.setdefault("Content-Length", str(length))
        for key, value in all_headers.items():
            conn.putheader(key, value)
        conn.endheaders()
        if body:
            conn.send(body)
        elif blob is not None:
            blob[0].send(conn, blob[1], blob[2])
        response = conn.getresponse()
        received = 0
        data = b""
        if discard and response.status in expect:
            view = memoryview(self._buffer)
            for _ in range(1 << 40):  # bounded: ends at the announced length or EOF
                n = response.readinto(view)
                if not n:
                    break
                if hasher is not None:
                    hasher.update(view[:n])
                received += n
        else:
            data = response.read()
            received = len(data)
        if response.status not in expect:
            raise TransferError(
                f"{method} {path}: {response.status} {data[:500].decode(errors='replace')}"
            )
        return response, data, received

    def start_upload(self, name: str) -> str:
        response, _, _ = self.request("POST", f"/v2/{name}/blobs/uploads/", expect=(202,))
        location = response.getheader("Location")
        if not location:
            raise TransferError("POST uploads/: no Location")
        return location

    @staticmethod
    def _with_digest(location: str, digest: str) -> str:
        sep = "&" if "?" in location else "?"
        return f"{location}{sep}digest={urllib.parse.quote(digest)}"

    def push_monolithic(self, name: str, blob: Blob) -> None:
        """POST, then one PUT with the whole blob."""
        location = self.start_upload(name)
        self.request(
            "PUT",
            self._with_digest(location, blob.digest),
            headers={"Content-Type": "application/octet-stream"},
            blob=(blob, 0, blob.size),
            expect=(201,),
        )

    def push_chunked(self, name: str, blob: Blob, chunk: int) -> int:
        """POST, a PATCH per ``chunk`` bytes (with Content-Range), then a PUT without a body;
        returns the number of PATCHes."""
        location = self.start_upload(name)
        patches = 0
        for start in range(0, blob.size, chunk):
            length = min(chunk, blob.size - start)
            response, _, _ = self.request(
                "PATCH",
                location,
                headers={
                    "Content-Type": "application/octet-stream",
                    "Content-Range": f"{start}-{start + length - 1}",
                },
                blob=(blob, start, length),
                expect=(202,),
            )
            location = response.getheader("Location") or location
            patches += 1
        self.request("PUT", self._with_digest(location, blob.digest), expect=(201,))
        return patches

    def pull(self, name: str, digest: str) -> int:
        _, _, received = self.request("GET", f"/v2/{name}/blobs/{digest}", discard=True)
        return received

    def pull_ranges(self, name: str, digest: str, size: int, piece: int) -> int:
        received = 0
        for start in range(0, size, piece):
            end = min(size, start + piece) - 1
            _, _, n = self.request(
                "GET",
                f"/v2/{name}/blobs/{digest}",
                headers={"Range": f"bytes={start}-{end}"},
                expect=(206,),
                discard=True,
            )
            if n != end - start + 1:
                raise TransferError(f"range {start}-{end}: got {n} bytes")
            received += n
        return received

    def verify(self, name: str, blob: Blob) -> None:
        """Pull the blob and check its digest (once, outside the timed runs)."""
        hasher = hashlib.sha256()
        _, _, received = self.request(
            "GET", f"/v2/{name}/blobs/{blob.digest}", discard=True, hasher=hasher
        )
        actual = "sha256:" + hasher.hexdigest()
        if received != blob.size or actual != blob.digest:
            raise TransferError(f"pulled {received} bytes with digest {actual}, not {blob.digest}")
