"""A real S3-compatible server (moto's standalone server) in a child process, stopped by pid.

moto is installed with the test tools (pyproject's test extra). Without it, every test that
needs object storage skips, saying so.
"""

from __future__ import annotations

import contextlib
import importlib.util
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.integration.clients import Daemon, free_port

STARTUP_SECONDS = 30.0
STOP_SECONDS = 15.0
ACCESS_KEY_ID = "cargohold-tests"
SECRET_ACCESS_KEY = "cargohold-tests-secret"
REGION = "us-east-1"


class S3Server:
    def __init__(self, log_path: Path, *, port: int | None = None) -> None:
        """`log_path`: the server's log file (its folder holds the daemon's files)."""
        self.port = port or free_port()
        self.endpoint_url = f"http://127.0.0.1:{self.port}"
        self._daemon = Daemon(log_path.stem, log_path.parent)

    def start(self) -> None:
        if importlib.util.find_spec("moto") is None:
            pytest.skip("moto[server] is not installed: run scripts/venv for the S3 tests")
        argv = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)]
        self._daemon.start(argv, env={"PYTHONUNBUFFERED": "1"})
        try:
            self._daemon.wait_ready(self._answers, timeout=STARTUP_SECONDS)
        except BaseException:
            self.stop()
            raise

    @property
    def pid(self) -> int | None:
        return self._daemon.pid

    def _answers(self) -> bool:
        try:
            requests.get(self.endpoint_url + "/moto-api/", timeout=1)
        except requests.ConnectionError:
            return False
        return True

    def stop(self) -> None:
        self._daemon.stop(STOP_SECONDS)

    @contextlib.contextmanager
    def refusing_every_credential(self) -> Iterator[None]:
        """For the duration, the server checks the credentials of each request, and knows
        none: every request is refused (403 InvalidAccessKeyId), as AWS refuses a key that
        does not exist. moto checks no credentials otherwise."""
        self._authenticate_after("0")
        try:
            yield
        finally:
            self._authenticate_after("inf")

    def _authenticate_after(self, requests_count: str) -> None:
        requests.post(
            f"{self.endpoint_url}/moto-api/reset-auth", data=requests_count, timeout=10
        ).raise_for_status()

    def create_bucket(self, bucket: str | None = None) -> str:
        """A bucket, by default a fresh one."""
        bucket = bucket or f"cargohold-{uuid.uuid4().hex[:16]}"
        self._client().create_bucket(Bucket=bucket)
        return bucket

    def _client(self) -> Any:
        import boto3  # moto brings it

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY_ID,
            aws_secret_access_key=SECRET_ACCESS_KEY,
        )

    def settings(self, bucket: str) -> dict[str, str]:
        """The CARGOHOLD_* settings of a server keeping its blobs in `bucket`."""
        return {
            "CARGOHOLD_BLOB_STORE": "s3",
            "CARGOHOLD_S3_ENDPOINT_URL": self.endpoint_url,
            "CARGOHOLD_S3_BUCKET": bucket,
            "CARGOHOLD_S3_REGION": REGION,
            "CARGOHOLD_S3_ACCESS_KEY_ID": ACCESS_KEY_ID,
            "CARGOHOLD_S3_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
            "CARGOHOLD_S3_PREFIX": "registry/",
        }

    def delete_bucket(self, bucket: str) -> None:
        """Empty a bucket and delete it."""
        client = self._client()
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for entry in page.get("Contents", []):
                client.delete_object(Bucket=bucket, Key=entry["Key"])
        client.delete_bucket(Bucket=bucket)


class BucketBlobs:
    """The blobs of a server on S3 as stored objects, for tests that alter or inspect them."""

    def __init__(self, endpoint_url: str, bucket: str, prefix: str) -> None:
        import boto3  # moto brings it

        self._client = boto3.client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY_ID,
            aws_secret_access_key=SECRET_ACCESS_KEY,
        )
        self._bucket = bucket
        self._prefix = prefix

    @classmethod
    def of(cls, settings: dict[str, str]) -> BucketBlobs:
        """The stored blobs of a server with these CARGOHOLD_* settings."""
        return cls(
            settings["CARGOHOLD_S3_ENDPOINT_URL"],
            settings["CARGOHOLD_S3_BUCKET"],
            settings["CARGOHOLD_S3_PREFIX"],
        )

    def _key(self, digest: str) -> str:
        algorithm, encoded = digest.split(":")
        return f"{self._prefix}blobs/{algorithm}/{encoded[:2]}/{encoded}"

    def read(self, digest: str) -> bytes | None:
        try:
            body: bytes = self._client.get_object(Bucket=self._bucket, Key=self._key(digest))[
                "Body"
            ].read()
        except self._client.exceptions.NoSuchKey:
            return None
        return body

    def write(self, digest: str, data: bytes) -> None:
        self._client.put_object(Bucket=self._bucket, Key=self._key(digest), Body=data)

    def delete(self, digest: str) -> None:
        self._client.delete_object(Bucket=self._bucket, Key=self._key(digest))

    def under(self, folder: str) -> dict[str, bytes]:
        """Every object under `blobs/`, `uploads/` or `quarantine/`, by key."""
        found: dict[str, bytes] = {}
        paginator = self._client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self._bucket, Prefix=f"{self._prefix}{folder}/"):
            for entry in page.get("Contents", []):
                key = entry["Key"]
                found[key] = self._client.get_object(Bucket=self._bucket, Key=key)["Body"].read()
        return found
