"""Content digests as defined by the OCI image spec (descriptor.md, "Digests")."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, TypeAlias

from cargohold.oci.errors import ErrorCode, RegistryError

Hasher: TypeAlias = "hashlib._Hash"

SUPPORTED_ALGORITHMS: Final[Mapping[str, int]] = MappingProxyType({"sha256": 64, "sha512": 128})
"""Algorithms this registry can compute, with the length of their hex encoding."""

DEFAULT_ALGORITHM: Final = "sha256"

_DIGEST_RE: Final = re.compile(r"([a-z0-9]+(?:[.+_-][a-z0-9]+)*):([a-zA-Z0-9=_-]+)")
_LOWER_HEX_RE: Final = re.compile(r"[a-f0-9]+")


@dataclass(frozen=True, slots=True)
class Digest:
    """A digest ``algorithm:encoded``.

    The constructor does not validate; use :meth:`parse` for untrusted input.
    """

    algorithm: str
    encoded: str

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.encoded}"

    @classmethod
    def parse(cls, value: str) -> Digest:
        """Parse and validate a digest string.

        Raises ``DIGEST_INVALID`` for malformed values (including a bad encoding
        for a supported algorithm) and ``UNSUPPORTED`` (status 400) for
        well-formed digests of algorithms this registry does not implement.
        """
        match = _DIGEST_RE.fullmatch(value)
        if match is None:
            raise RegistryError(
                ErrorCode.DIGEST_INVALID,
                f"invalid digest {value!r}: expected <algorithm>:<encoded>",
            )
        algorithm, encoded = match.group(1), match.group(2)
        length = SUPPORTED_ALGORITHMS.get(algorithm)
        if length is None:
            raise RegistryError(
                ErrorCode.UNSUPPORTED,
                f"unsupported digest algorithm {algorithm!r} in {value!r}; "
                f"supported: {', '.join(SUPPORTED_ALGORITHMS)}",
                status=400,
            )
        if len(encoded) != length or _LOWER_HEX_RE.fullmatch(encoded) is None:
            raise RegistryError(
                ErrorCode.DIGEST_INVALID,
                f"invalid digest {value!r}: {algorithm} requires {length} lowercase hex characters",
            )
        return cls(algorithm, encoded)


def new_hasher(algorithm: str) -> Hasher:
    """A fresh hash object for a supported algorithm."""
    if algorithm == "sha256":
        return hashlib.sha256()
    if algorithm == "sha512":
        return hashlib.sha512()
    raise RegistryError(
        ErrorCode.UNSUPPORTED, f"unsupported digest algorithm {algorithm!r}", status=400
    )


def digest_of(data: bytes, algorithm: str = DEFAULT_ALGORITHM) -> Digest:
    """The digest of ``data``."""
    hasher = new_hasher(algorithm)
    hasher.update(data)
    return Digest(algorithm, hasher.hexdigest())


def digest_algorithm_param(value: str | None) -> str:
    """Validate the ``digest-algorithm`` query parameter of an upload (absent means sha256)."""
    if value is None:
        return DEFAULT_ALGORITHM
    if value not in SUPPORTED_ALGORITHMS:
        raise RegistryError(
            ErrorCode.UNSUPPORTED,
            f"unsupported digest-algorithm {value!r}; supported: {', '.join(SUPPORTED_ALGORITHMS)}",
            status=400,
        )
    return value
