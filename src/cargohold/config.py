"""Settings: defaults, then a TOML file, then CARGOHOLD_* environment variables, then flags.

Every setting is a field of `Settings`; its environment variable is its name in capitals
after `CARGOHOLD_` (`CARGOHOLD_DATA_DIR`, `CARGOHOLD_UPLOAD_TTL_SECONDS`).
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, IPvAnyNetwork, field_validator, model_validator

from cargohold.db.engine import PoolLimits, sqlite_url

ENV_PREFIX = "CARGOHOLD_"


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(default=5000, ge=0, le=65535)
    workers: int = Field(default=1, ge=1, le=64, description="server processes on one port")
    data_dir: Path = Path("data")
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; SQLite under data_dir when unset"
    )
    database_pool_size: int = Field(
        default=5, ge=1, description="PostgreSQL connections each server process keeps open"
    )
    database_max_overflow: int = Field(
        default=10,
        ge=0,
        description="more connections a process opens while all are busy (closed after use)",
    )
    database_pool_timeout_seconds: float = Field(
        default=30.0, gt=0, description="how long a request waits for a free connection"
    )
    database_lock_pool_size: int = Field(
        default=4,
        ge=1,
        description="connections each process keeps open for advisory locks (one per lock held)",
    )
    storage_dir: Path | None = Field(
        default=None,
        description="the blob folder; data_dir/storage when unset (shared storage for nodes)",
    )
    migrate_at_start: bool = Field(
        default=True,
        description="serve and every command migrate the schema first; else `cargohold migrate`",
    )
    max_manifest_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    upload_ttl_seconds: int = Field(default=24 * 3600, ge=1)
    cleanup_interval_seconds: int = Field(default=600, ge=1)
    fsync: bool = True
    blob_store: Literal["filesystem", "s3"] = Field(
        default="filesystem", description="where blobs live: data_dir/storage, or an S3 bucket"
    )
    s3_endpoint_url: str | None = Field(
        default=None, description="the object store's URL; AWS S3 of s3_region when unset"
    )
    s3_bucket: str | None = None
    s3_region: str = "us-east-1"
    s3_access_key_id: str | None = None
    s3_secret_access_key: str | None = None
    s3_prefix: str = Field(default="", description="prepended to every key, e.g. `cargohold/`")
    s3_presigned_redirects: bool = Field(
        default=False, description="blob downloads are redirected to presigned URLs"
    )
    s3_part_size: int = Field(
        default=8 * 1024 * 1024,
        ge=5 * 1024 * 1024,
        description="bytes per part of a multipart upload (S3 takes no smaller part but the last)",
    )
    log_level: str = "INFO"
    public_url: str | None = Field(
        default=None, description="the base URL clients use; else taken from each request"
    )
    token_service: str = "cargohold"
    token_issuer: str = "cargohold"
    token_ttl_seconds: int = Field(default=300, ge=60)
    admin_password: str | None = None
    login_failure_limit: int = Field(default=10, ge=1)
    login_failure_window_seconds: int = Field(default=300, ge=1)
    docker_hub_hosts: tuple[str, ...] = Field(
        default=("registry-1.docker.io", "docker.io", "index.docker.io", "registry.hub.docker.com"),
        description="upstream hosts treated as Docker Hub (one-segment names get library/)",
    )
    trusted_proxies: tuple[IPvAnyNetwork, ...] = Field(
        default=(),
        description="load balancers (addresses or networks) whose X-Forwarded-For names the client",
    )
    proxy_timeout_seconds: float = Field(default=20.0, gt=0)
    proxy_not_found_seconds: float = Field(default=30.0, ge=0)
    gc_grace_seconds: float = Field(
        default=3600.0,
        ge=0,
        description="garbage collection leaves content uploaded this recently alone",
    )
    gc_interval_seconds: int = Field(
        default=0, ge=0, description="seconds between scheduled garbage collections; 0: never"
    )
    cleanup_policy_interval_seconds: int = Field(
        default=3600,
        ge=0,
        description="how often cleanup policies and proxy cache limits are applied; 0: never",
    )
    pull_stats_flush_seconds: float = Field(
        default=5.0, gt=0, description="how often counted pulls are written to the database"
    )
    pull_stats_max_pending: int = Field(
        default=10_000, ge=1, description="distinct tags and manifests counted between writes"
    )

    @field_validator(
        "database_url",
        "public_url",
        "admin_password",
        "s3_endpoint_url",
        "s3_bucket",
        "s3_access_key_id",
        "s3_secret_access_key",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("docker_hub_hosts", "trusted_proxies", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        return (
            tuple(h.strip() for h in value.split(",") if h.strip())
            if isinstance(value, str)
            else value
        )

    @model_validator(mode="after")
    def _s3_needs_a_bucket(self) -> Settings:
        if self.blob_store == "s3" and self.s3_bucket is None:
            raise ValueError("blob_store = s3 needs s3_bucket")
        return self

    @property
    def metadata_url(self) -> str:
        return self.database_url or sqlite_url(self.data_dir / "cargohold.db")

    @property
    def database_pool(self) -> PoolLimits:
        return PoolLimits(
            self.database_pool_size,
            self.database_max_overflow,
            self.database_pool_timeout_seconds,
        )

    @property
    def blob_dir(self) -> Path:
        return self.storage_dir or self.data_dir / "storage"

    @property
    def lock_dir(self) -> Path:
        """Lock files shared by the processes of one data folder."""
        return self.data_dir / "locks"


def load_settings(
    config_file: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    values: dict[str, Any] = {}
    if config_file is not None:
        with config_file.open("rb") as file:
            values.update(tomllib.load(file))
    environ = os.environ if environ is None else environ
    for name in Settings.model_fields:
        if (ENV_PREFIX + name.upper()) in environ:
            values[name] = environ[ENV_PREFIX + name.upper()]
    values.update({key: value for key, value in (overrides or {}).items() if value is not None})
    return Settings.model_validate(values)
