"""Blob storage: one interface, chosen by configuration."""

from cargohold.storage.base import BlobStore, UploadWriter
from cargohold.storage.filesystem import FilesystemBlobStore

__all__ = ["BlobStore", "FilesystemBlobStore", "UploadWriter"]
