"""From the name a client typed to a repository and an image name in it.

Every repository contributes its canonical prefix `<project>/<repository>/` to one table;
a name resolves to the longest prefix it starts with, and what follows is the image name.
The table is kept in memory and reloaded when it may be stale: after a few seconds, after a
change made through this process, and when a name finds no prefix, so a repository created
by another process is found at once (misses that arrive together share one reload).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from cargohold.db.metadata import MetadataStore, RepositoryRecord
from cargohold.oci.errors import ErrorCode, RegistryError
from cargohold.oci.names import validate_name

TABLE_MAX_AGE_SECONDS = 5.0
IMAGE_ID_CACHE_SIZE = 100_000


@dataclass(frozen=True, slots=True)
class Target:
    """What a request's name designates."""

    name: str
    repository: RepositoryRecord
    image: str


def require_hosted(target: Target) -> None:
    """Refuse changes to a proxy repository: its content comes from its upstream."""
    repository = target.repository
    if repository.is_proxy:
        raise RegistryError(
            ErrorCode.UNSUPPORTED,
            f"{repository.project}/{repository.name} is a proxy of {repository.remote_url}:"
            " it takes no pushes or deletes; push to a hosted repository or to the upstream",
            status=405,
        )


class NameRouter:
    def __init__(self, metadata: MetadataStore) -> None:
        self._metadata = metadata
        self._prefixes: dict[str, RepositoryRecord] = {}
        self._loaded_at = float("-inf")
        self._lock = asyncio.Lock()
        # Image ids never change while their repository exists.
        self._image_ids: dict[tuple[int, str], int] = {}

    def invalidate(self) -> None:
        self._loaded_at = float("-inf")

    async def _reload(self, if_loaded_before: float) -> None:
        async with self._lock:
            if self._loaded_at >= if_loaded_before:
                return
            repositories = await self._metadata.list_repositories()
            self._prefixes = {repository.prefix: repository for repository in repositories}
            known = {repository.id for repository in repositories}
            self._image_ids = {k: v for k, v in self._image_ids.items() if k[0] in known}
            self._loaded_at = time.monotonic()

    def _match(self, name: str) -> Target | None:
        parts = name.split("/")
        for depth in range(len(parts) - 1, 0, -1):
            prefix = "/".join(parts[:depth]) + "/"
            repository = self._prefixes.get(prefix)
            if repository is not None:
                return Target(name, repository, name[len(prefix) :])
        return None

    async def repositories(self) -> list[RepositoryRecord]:
        """Every repository, as of a few seconds ago at most."""
        asked_at = time.monotonic()
        if asked_at - self._loaded_at > TABLE_MAX_AGE_SECONDS:
            await self._reload(asked_at - TABLE_MAX_AGE_SECONDS)
        return list(self._prefixes.values())

    async def resolve(self, name: str) -> Target:
        validate_name(name)
        asked_at = time.monotonic()
        if asked_at - self._loaded_at > TABLE_MAX_AGE_SECONDS:
            await self._reload(asked_at - TABLE_MAX_AGE_SECONDS)
        target = self._match(name)
        if target is None:
            await self._reload(asked_at)
            target = self._match(name)
        if target is None:
            raise RegistryError(
                ErrorCode.NAME_UNKNOWN,
                f"no repository serves {name!r}: names are <project>/<repository>/<image>",
                detail={"name": name},
            )
        return target

    async def find(self, name: str) -> Target | None:
        """Like `resolve`, but None for a name that is invalid or has no repository."""
        try:
            return await self.resolve(name)
        except RegistryError:
            return None

    async def image_id(self, target: Target, *, create: bool = False) -> int | None:
        key = (target.repository.id, target.image)
        found = self._image_ids.get(key)
        if found is not None:
            return found
        if create:
            found = await self._metadata.ensure_image(*key)
        else:
            found = await self._metadata.image_id(*key)
        if found is not None:
            if len(self._image_ids) >= IMAGE_ID_CACHE_SIZE:
                self._image_ids.clear()
            self._image_ids[key] = found
        return found
