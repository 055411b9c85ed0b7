"""A minimal OCI client over `requests` for the protocol tests: one place that knows the
request shapes, so each test reads as the spec's steps."""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import requests

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
EMPTY_JSON = b"{}"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def sha512(data: bytes) -> str:
    return "sha512:" + hashlib.sha512(data).hexdigest()


def descriptor(media_type: str, data: bytes, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": sha256(data), "size": len(data), **extra}


@dataclass
class Pushed:
    digest: str
    body: bytes


class OciClient:
    def __init__(self, base_url: str, auth: tuple[str, str] | None = None) -> None:
        """A client that sends `auth` as Basic credentials, or nothing when None."""
        self.base = base_url
        self.http = requests.Session()
        self.http.auth = auth

    def url(self, path: str) -> str:
        return path if path.startswith("http") else self.base + path

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", 60)
        return self.http.request(method, self.url(path), **kwargs)

    def push_blob(self, name: str, data: bytes) -> str:
        digest = sha256(data)
        response = self.request(
            "POST", f"/v2/{name}/blobs/uploads/", params={"digest": digest}, data=data
        )
        assert response.status_code == 201, response.text
        return digest

    def push_manifest(
        self,
        name: str,
        reference: str,
        manifest: dict[str, Any] | bytes,
        media_type: str | None = OCI_MANIFEST,
    ) -> Pushed:
        body = manifest if isinstance(manifest, bytes) else json.dumps(manifest).encode()
        headers = {"Content-Type": media_type} if media_type else {}
        response = self.request(
            "PUT", f"/v2/{name}/manifests/{reference}", data=body, headers=headers
        )
        assert response.status_code == 201, response.text
        return Pushed(response.headers["Docker-Content-Digest"], body)

    def push_image(
        self, name: str, tag: str | None = "latest", layers: int = 1, **extra: Any
    ) -> Pushed:
        """An OCI image with random layers and an empty config; returns the manifest."""
        config = self.push_blob(name, EMPTY_JSON)
        layer_descriptors = []
        for _ in range(layers):
            data = os.urandom(1024)
            self.push_blob(name, data)
            layer_descriptors.append(descriptor("application/vnd.oci.image.layer.v1.tar", data))
        manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_EMPTY, "digest": config, "size": 2},
            "layers": layer_descriptors,
            **extra,
        }
        body = json.dumps(manifest).encode()
        return self.push_manifest(name, tag or sha256(body), body)

    def start_upload(self, name: str, params: Mapping[str, str] | None = None) -> str:
        """Open an upload session (`POST .../blobs/uploads/`); return its Location."""
        response = self.request("POST", f"/v2/{name}/blobs/uploads/", params=params)
        assert response.status_code == 202, response.text
        location: str = response.headers["Location"]
        return location

    def patch_chunk(
        self, location: str, data: bytes | Iterable[bytes], start: int | None = None
    ) -> requests.Response:
        """PATCH a chunk; with `start`, a `Content-Range` for `data` (which must be bytes)."""
        headers = {"Content-Type": "application/octet-stream"}
        if start is not None:
            assert isinstance(data, bytes) and data, "a Content-Range needs a non-empty chunk"
            headers["Content-Range"] = f"{start}-{start + len(data) - 1}"
        return self.request("PATCH", location, data=data, headers=headers)

    def close_upload(
        self, location: str, digest: str | None, data: bytes = b"", start: int | None = None
    ) -> requests.Response:
        """The closing PUT, with an optional final chunk (and its `Content-Range` at `start`)."""
        headers = {"Content-Type": "application/octet-stream"} if data else {}
        if start is not None and data:
            headers["Content-Range"] = f"{start}-{start + len(data) - 1}"
        params = {"digest": digest} if digest is not None else None
        return self.request("PUT", location, params=params, data=data, headers=headers)

    @staticmethod
    def errors(response: requests.Response) -> list[str]:
        return [error["code"] for error in response.json()["errors"]]

    @classmethod
    def expect_error(cls, response: requests.Response, status: int, code: str) -> None:
        """The response is the OCI error `code` with `status` (HEAD answers carry no body)."""
        assert response.status_code == status, (response.status_code, response.text)
        if response.request.method != "HEAD":
            assert code in cls.errors(response), response.text

    @classmethod
    def error_entry(cls, response: requests.Response, status: int, code: str) -> dict[str, Any]:
        """Like `expect_error`; returns that error's entry, for its message and detail."""
        cls.expect_error(response, status, code)
        entry: dict[str, Any] = next(e for e in response.json()["errors"] if e["code"] == code)
        return entry

    def put_manifest(
        self,
        name: str,
        reference: str,
        body: bytes | Iterable[bytes],
        media_type: str | None = OCI_MANIFEST,
        params: Mapping[str, str | list[str]] | None = None,
    ) -> requests.Response:
        """A manifest PUT whose answer the test inspects (headers, refusals)."""
        headers = {"Content-Type": media_type} if media_type else {}
        return self.request(
            "PUT", f"/v2/{name}/manifests/{reference}", data=body, headers=headers, params=params
        )

    def get_manifest(self, name: str, reference: str) -> requests.Response:
        return self.request("GET", f"/v2/{name}/manifests/{reference}")

    def push_index(
        self, name: str, manifests: Iterable[Pushed], tag: str | None = None, **extra: Any
    ) -> Pushed:
        """An OCI index of image manifests already pushed to `name`; by digest unless tagged."""
        index = {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [descriptor(OCI_MANIFEST, child.body) for child in manifests],
            **extra,
        }
        body = json.dumps(index).encode()
        return self.push_manifest(name, tag or sha256(body), body, OCI_INDEX)

    def tags(self, name: str) -> list[str]:
        response = self.request("GET", f"/v2/{name}/tags/list")
        assert response.status_code == 200, response.text
        tag_names: list[str] = response.json()["tags"]
        return tag_names

    def pages(self, path: str, key: str, n: int) -> list[list[str]]:
        """The items of `key` on each page of a listing, from `path?n=` on, following each
        `Link: <path?n=..&last=..>; rel="next"` until an answer has none."""
        pages: list[list[str]] = []
        url: str | None = f"{path}?n={n}"
        while url is not None:
            response = self.request("GET", url)
            assert response.status_code == 200, response.text
            pages.append(response.json()[key])
            url = next_link(response)
            assert url is None or url.startswith(f"{path}?"), url
        return pages


def next_link(response: requests.Response) -> str | None:
    """The target of the answer's `Link: <...>; rel="next"` header, if it has one."""
    link = response.headers.get("Link")
    if link is None:
        return None
    match = re.fullmatch(r'<([^>]+)>;\s*rel="next"', link)
    assert match is not None, f"malformed Link header: {link!r}"
    return match.group(1)
