"""From the name a client typed (and the host it asked) to a repository and an image name.

The routing rules are `prefixes.PrefixTable`'s. The table is kept in memory and reloaded
when it may be stale: after a few seconds, after a change made through this process, and
when a name finds no repository, so a repository created by another process is found at
once (misses that arrive together share one reload). A name the catch-all takes counts as a
miss when the database knows a prefix of it (one indexed query): the catch-all never hides
a repository or alias just made elsewhere.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from cargohold.db.metadata import MetadataStore, RepositoryRecord
from cargohold.oci.errors import ErrorCode, RegistryError
from cargohold.oci.names import validate_name
from cargohold.registry.prefixes import PrefixTable

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
        self._table = PrefixTable(())
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
            self._table = PrefixTable(repositories)
            known = {repository.id for repository in repositories}
            self._image_ids = {k: v for k, v in self._image_ids.items() if k[0] in known}
            self._loaded_at = time.monotonic()

    def _match(self, name: str, host: str | None) -> Target | None:
        route = self._table.route(name, host)
        return None if route is None else Target(name, route.repository, route.image)

    async def _stale_catch_all(self, name: str, host: str | None) -> bool:
        """Whether the catch-all takes `name` only because the table misses a repository or
        alias made since (by another process) whose prefix the name starts with."""
        route = self._table.route(name, host)
        if route is None or not route.by_catch_all or "/" not in name:
            return False
        parts = name.split("/")
        prefixes = ["/".join(parts[:depth]) + "/" for depth in range(1, len(parts))]
        return await self._metadata.has_prefix_among(prefixes)

    async def repositories(self) -> list[RepositoryRecord]:
        """Every repository, as of a few seconds ago at most."""
        asked_at = time.monotonic()
        if asked_at - self._loaded_at > TABLE_MAX_AGE_SECONDS:
            await self._reload(asked_at - TABLE_MAX_AGE_SECONDS)
        return self._table.repositories

    def is_bound_host(self, host: str) -> bool:
        """Whether a repository is bound to `host`, as of a few seconds ago at most."""
        return self._table.bound(host) is not None

    async def table(self) -> PrefixTable:
        """The current routing table (to check a change against it)."""
        await self._reload(float("inf"))
        return self._table

    async def resolve(self, name: str, host: str | None = None) -> Target:
        """What `name`, asked of `host` (the request's Host), designates."""
        validate_name(name)
        asked_at = time.monotonic()
        if asked_at - self._loaded_at > TABLE_MAX_AGE_SECONDS:
            await self._reload(asked_at - TABLE_MAX_AGE_SECONDS)
        target = self._match(name, host)
        if target is None or await self._stale_catch_all(name, host):
            await self._reload(asked_at)
            target = self._match(name, host)
        if target is None:
            raise RegistryError(
                ErrorCode.NAME_UNKNOWN,
                f"no repository serves {name!r}: names are <project>/<repository>/<image>",
                detail={"name": name},
            )
        return target

    async def find(self, name: str, host: str | None = None) -> Target | None:
        """Like `resolve`, but None for a name that is invalid or has no repository."""
        try:
            return await self.resolve(name, host)
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
