"""Blob storage: one interface, chosen by configuration."""

from cargohold.storage.base import (
    BlobStore,
    Delivery,
    LocalFile,
    Redirect,
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
    "StoreUnavailable",
    "Streamed",
    "UploadWriter",
]
