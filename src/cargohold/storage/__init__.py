"""Blob storage: one interface, chosen by configuration."""

from cargohold.storage.base import (
    BlobStore,
    Delivery,
    LocalFile,
    Redirect,
    StoreRefused,
    StoreUnavailable,
    Streamed,
    UploadWriter,
)
from cargohold.storage.filesystem import FilesystemBlobStore

__all__ = [
    "BlobStore",
    "Delivery",
    "FilesystemBlobStore",
    "LocalFile",
    "Redirect",
    "StoreRefused",
    "StoreUnavailable",
    "Streamed",
    "UploadWriter",
]
