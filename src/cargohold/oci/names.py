"""Repository names, tags and manifest references (distribution spec, "Pulling manifests")."""

from __future__ import annotations

import re
from typing import Final

from cargohold.oci.digest import Digest
from cargohold.oci.errors import ErrorCode, RegistryError

_COMPONENT: Final = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"

NAME_PATTERN: Final = rf"{_COMPONENT}(?:/{_COMPONENT})*"
"""The spec's ``<name>`` expression, unanchored (for embedding in larger patterns)."""

TAG_PATTERN: Final = r"[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}"
"""The spec's tag expression, unanchored."""

# Anchored with \A and \Z so that match(), search() and fullmatch() all test the whole string.
NAME_RE: Final = re.compile(rf"\A{NAME_PATTERN}\Z")
TAG_RE: Final = re.compile(rf"\A{TAG_PATTERN}\Z")

MAX_NAME_LENGTH: Final = 255


def validate_name(name: str) -> str:
    """Return ``name`` if it is a valid repository name, else raise ``NAME_INVALID``."""
    if len(name) > MAX_NAME_LENGTH:
        raise RegistryError(
            ErrorCode.NAME_INVALID,
            f"invalid repository name {name[:64] + '...'!r}: "
            f"{len(name)} characters, the maximum is {MAX_NAME_LENGTH}",
        )
    if NAME_RE.fullmatch(name) is None:
        raise RegistryError(
            ErrorCode.NAME_INVALID,
            f"invalid repository name {name!r}: must be lowercase alphanumeric path components "
            "separated by '/', with '.', '_', '__' or '-' only between alphanumerics",
        )
    return name


def validate_tag(tag: str) -> str:
    """Return ``tag`` if it is a valid tag, else raise ``TAG_INVALID`` (status 400)."""
    if TAG_RE.fullmatch(tag) is None:
        raise RegistryError(
            ErrorCode.TAG_INVALID,
            f"invalid tag {tag[:160]!r}: must match {TAG_PATTERN}",
        )
    return tag


def parse_reference(reference: str) -> Digest | str:
    """A manifest reference: a :class:`Digest` if it contains ``:``, else a validated tag."""
    if ":" in reference:
        return Digest.parse(reference)
    return validate_tag(reference)


def split_name(name: str) -> list[str]:
    """The path components of a repository name."""
    return name.split("/")
