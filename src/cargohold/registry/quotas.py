"""Project quotas: the bytes a project's hosted repositories may hold.

Usage is the size of the distinct blobs and manifests that the project's hosted images hold,
each counted once per project however many images hold it; what a proxy caches is bounded by
the proxy's own limits instead. A push is refused with DENIED as early as its size is known:
when an upload declares its length (before a byte is stored), when its digest is known (a
blob the project holds already costs nothing), and when the blob or manifest is linked to the
image, in the same transaction as the link, so that concurrent pushes never take a project
past its quota.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

from cargohold.db.metadata import MetadataStore, QuotaExceeded
from cargohold.oci.errors import ErrorCode, RegistryError
from cargohold.registry.errors import InvalidInput
from cargohold.registry.integrity import human_size
from cargohold.registry.router import Target

_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*(?:([kmgtp])(i)?)?b?", re.IGNORECASE)
_PREFIXES = "kmgtp"


def parse_size(text: str) -> int:
    """Bytes from `1048576`, `500MB` (powers of 1000) or `10GiB` (powers of 1024)."""
    matched = _SIZE.fullmatch(text.strip())
    if matched is None:
        raise InvalidInput(f"{text!r} is not a size: write bytes, or e.g. 500MB or 10GiB")
    number, prefix, binary = matched.groups()
    power = _PREFIXES.index(prefix.lower()) + 1 if prefix else 0
    return int(float(number) * (1024 if binary else 1000) ** power)


def quota_denied(error: QuotaExceeded, what: str) -> RegistryError:
    return RegistryError(
        ErrorCode.DENIED,
        f"project {error.project} quota exceeded: {human_size(error.used)} used of"
        f" {human_size(error.quota)}, this {what} needs {human_size(error.needed)}",
        detail={"used": error.used, "quota": error.quota, "needed": error.needed},
    )


@contextmanager
def quota_denials(what: str) -> Iterator[None]:
    """QuotaExceeded raised inside, answered as DENIED."""
    try:
        yield
    except QuotaExceeded as error:
        raise quota_denied(error, what) from None


async def check_room(
    metadata: MetadataStore, target: Target, digest: str | None, size: int, what: str = "blob"
) -> None:
    """Refuse (DENIED) `size` more bytes of `digest` (None: not known yet) in the target's
    project when they do not fit its quota."""
    with quota_denials(what):
        await metadata.check_quota(target.repository.project_id, digest, size)
