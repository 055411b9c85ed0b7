"""The routing table of names: every repository's canonical prefix `<project>/<repository>/`,
its flat alias (`common/external/`, for clients migrated from Nexus or Artifactory), the
catch-all repository, and host names bound to repositories. Pure: no I/O.

A name resolves, in order: to the repository bound to the request's host (the whole name is
the image name); to the longest prefix it starts with (the rest is the image name); to the
catch-all (the whole name is the image name).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from cargohold.db.metadata import RepositoryRecord

_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
_PREFIX = re.compile(rf"(?:{_COMPONENT}/)+")
_HOST = re.compile(
    r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*(?::\d{1,5})?"
)


class PrefixError(ValueError):
    """A prefix or host name that is malformed."""


class PrefixClash(ValueError):
    """A prefix, catch-all or host name another repository has; the message names it."""


def normalize_prefix(prefix: str) -> str:
    """`common/external/` from `common/external` or `/common/external/`; refused when a
    component is outside the name grammar (upper case included)."""
    normalized = prefix.strip().strip("/") + "/"
    if not _PREFIX.fullmatch(normalized):
        raise PrefixError(
            f"flat alias prefix {prefix!r} is not a name prefix: lowercase components of"
            " letters and digits separated by '.', '_', '__' or '-', joined by '/'"
        )
    return normalized


def normalize_host(host: str) -> str:
    normalized = host.strip().lower()
    if not _HOST.fullmatch(normalized):
        raise PrefixError(f"host name {host!r} is not a host name (with an optional :port)")
    return normalized


def _label(repository: RepositoryRecord) -> str:
    return f"{repository.project}/{repository.name}"


@dataclass(frozen=True, slots=True)
class Route:
    repository: RepositoryRecord
    image: str
    # Taken by the catch-all because no host and no prefix matched.
    by_catch_all: bool = False


class PrefixTable:
    def __init__(self, repositories: Iterable[RepositoryRecord]) -> None:
        self.repositories = list(repositories)
        self._prefixes: dict[str, RepositoryRecord] = {}
        self._hosts: dict[str, RepositoryRecord] = {}
        self.catch_all: RepositoryRecord | None = None
        for repository in self.repositories:
            self._prefixes[repository.prefix] = repository
            if repository.flat_alias_prefix:
                self._prefixes[repository.flat_alias_prefix] = repository
            if repository.host_name:
                self._hosts[repository.host_name] = repository
            if repository.is_catch_all:
                self.catch_all = repository

    def bound(self, host: str) -> RepositoryRecord | None:
        """The repository bound to `host` (`name:port`, or `name` for any port)."""
        host = host.lower()
        return self._hosts.get(host) or self._hosts.get(host.split(":")[0])

    def route(self, name: str, host: str | None = None) -> Route | None:
        if host is not None:
            bound = self.bound(host)
            if bound is not None:
                return Route(bound, name)
        parts = name.split("/")
        for depth in range(len(parts) - 1, 0, -1):
            repository = self._prefixes.get("/".join(parts[:depth]) + "/")
            if repository is not None:
                return Route(repository, "/".join(parts[depth:]))
        if self.catch_all is not None:
            return Route(self.catch_all, name, by_catch_all=True)
        return None

    def name_of(self, repository: RepositoryRecord, image: str) -> str:
        """The name clients use for `image` of `repository` (on no bound host): the bare image
        name under the catch-all, else the name under its flat alias, else the canonical
        name; a flat name that a longer prefix takes leads elsewhere and is passed over."""
        flat = []
        if repository.is_catch_all:
            flat.append(image)
        if repository.flat_alias_prefix:
            flat.append(repository.flat_alias_prefix + image)
        for name in flat:
            route = self.route(name)
            if route is not None and (route.repository.id, route.image) == (repository.id, image):
                return name
        return repository.prefix + image

    def check(
        self,
        repository_id: int | None,
        canonical: str,
        flat_alias_prefix: str | None,
        is_catch_all: bool,
        host_name: str | None,
    ) -> None:
        """Refuse a repository (new, or `repository_id` changed) whose canonical prefix,
        alias, catch-all or host clashes with another's; the message names the other."""
        others = [r for r in self.repositories if r.id != repository_id]
        existing = next((r for r in others if r.prefix == canonical), None)
        if existing is not None:
            raise PrefixClash(f"repository {_label(existing)} already exists")
        taken = {r.prefix: f"the repository {_label(r)}" for r in others}
        taken.update(
            {
                r.flat_alias_prefix: f"the flat alias of {_label(r)}"
                for r in others
                if r.flat_alias_prefix
            }
        )
        if canonical in taken:
            raise PrefixClash(f"{canonical} is already {taken[canonical]}")
        if flat_alias_prefix is not None:
            if flat_alias_prefix == canonical:
                raise PrefixClash(f"{flat_alias_prefix} is the repository's own canonical prefix")
            if flat_alias_prefix in taken:
                raise PrefixClash(
                    f"flat alias {flat_alias_prefix} is already {taken[flat_alias_prefix]}"
                )
        if is_catch_all:
            current = next((r for r in others if r.is_catch_all), None)
            if current is not None:
                raise PrefixClash(f"{_label(current)} is already the catch-all repository")
        if host_name is not None:
            holder = next((r for r in others if r.host_name == host_name), None)
            if holder is not None:
                raise PrefixClash(f"host {host_name} is already bound to {_label(holder)}")
