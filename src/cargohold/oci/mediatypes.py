"""Manifest and blob media types, and Accept header handling for manifest GETs."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Final

OCI_MANIFEST: Final = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX: Final = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST: Final = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST: Final = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_SCHEMA1: Final = "application/vnd.docker.distribution.manifest.v1+json"
DOCKER_SCHEMA1_SIGNED: Final = "application/vnd.docker.distribution.manifest.v1+prettyjws"
OCI_EMPTY: Final = "application/vnd.oci.empty.v1+json"
OCI_CONFIG: Final = "application/vnd.oci.image.config.v1+json"
DOCKER_CONFIG: Final = "application/vnd.docker.container.image.v1+json"
HELM_CONFIG: Final = "application/vnd.cncf.helm.config.v1+json"
DOCKER_FOREIGN_LAYER: Final = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
OCTET_STREAM: Final = "application/octet-stream"

IMAGE_MANIFEST_TYPES: Final = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
INDEX_TYPES: Final = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})
MANIFEST_TYPES: Final = IMAGE_MANIFEST_TYPES | INDEX_TYPES
SCHEMA1_TYPES: Final = frozenset({DOCKER_SCHEMA1, DOCKER_SCHEMA1_SIGNED})

_ALL_MANIFEST_TYPES: Final = MANIFEST_TYPES | SCHEMA1_TYPES


def base_type(content_type: str | None) -> str | None:
    """The media type without parameters, lowercased; ``None`` for a missing or empty value."""
    if content_type is None:
        return None
    media_type = content_type.split(";", 1)[0].strip().lower()
    return media_type or None


def _is_refused(params: Iterable[str]) -> bool:
    for param in params:
        key, sep, value = param.partition("=")
        if sep and key.strip().lower() == "q":
            try:
                return float(value.strip().strip('"')) == 0.0
            except ValueError:
                return False
    return False


def parse_accept(values: Iterable[str]) -> list[str]:
    """The media ranges of one or more Accept header values, in order and without duplicates.

    Parameters (including ``q``) are dropped; ranges with ``q=0`` are refusals and are left out.
    """
    ranges: list[str] = []
    for value in values:
        for item in value.split(","):
            media_range, *params = item.split(";")
            media_range = media_range.strip().lower()
            if not media_range or _is_refused(params):
                continue
            if media_range not in ranges:
                ranges.append(media_range)
    return ranges


def is_acceptable(media_type: str, accepted: Sequence[str]) -> bool:
    """Whether a stored manifest of ``media_type`` may be served to a client accepting ``accepted``.

    ``accepted`` is the output of :func:`parse_accept`. The manifest is acceptable when:

    * the client sent no Accept ranges at all;
    * it accepts ``*/*``, ``<type>/*`` (e.g. ``application/*``) or ``media_type`` itself; or
    * it names no manifest media type at all (schema 2, OCI or schema 1). Such clients, e.g.
      ones sending only ``application/json``, are not negotiating manifest formats, so they
      get whatever is stored.

    Otherwise the client listed manifest formats and this one is not among them.
    """
    if not accepted:
        return True
    media_type = media_type.strip().lower()
    major = media_type.split("/", 1)[0]
    if "*/*" in accepted or f"{major}/*" in accepted or media_type in accepted:
        return True
    return not any(item in _ALL_MANIFEST_TYPES for item in accepted)
