"""Projects and the repositories inside them."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from cargohold.db.metadata import MetadataStore, ProjectRecord, RepositoryRecord, TagRecord
from cargohold.db.store import AlreadyExists
from cargohold.registry.errors import Conflict, InvalidInput, NotFound
from cargohold.registry.policies import CleanupPolicy
from cargohold.registry.prefixes import (
    PrefixClash,
    PrefixError,
    normalize_host,
    normalize_prefix,
)
from cargohold.registry.router import NameRouter

# One component of the OCI name grammar: projects and repositories are name components.
COMPONENT = re.compile(r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*")
MAX_COMPONENT_LENGTH = 100
REPOSITORY_KINDS = ("hosted", "proxy")
REPOSITORY_FORMATS = ("docker",)
# What garbage collection does with manifests no tag, index or referrer needs.
UNTAGGED_MANIFEST_POLICIES = ("keep", "delete")


def _check_untagged_policy(policy: str) -> None:
    if policy not in UNTAGGED_MANIFEST_POLICIES:
        raise InvalidInput(
            f"untagged_manifests {policy!r} is not supported; choose"
            f" {', '.join(UNTAGGED_MANIFEST_POLICIES)}"
        )


def _check_component(what: str, value: str) -> None:
    if len(value) > MAX_COMPONENT_LENGTH or not COMPONENT.fullmatch(value):
        raise InvalidInput(
            f"{what} name {value!r} is invalid: use lowercase letters and digits, separated"
            f" by '.', '_', '__' or dashes, at most {MAX_COMPONENT_LENGTH} characters"
        )


DEFAULT_CACHE_TTL_SECONDS = 3600


class Unchanged(enum.Enum):
    """An update's value for a setting it leaves as it is, where None removes the setting."""

    UNCHANGED = "unchanged"


UNCHANGED = Unchanged.UNCHANGED


def _check_quota(quota_bytes: int | None) -> None:
    if quota_bytes is not None and quota_bytes < 0:
        raise InvalidInput("quota_bytes must be zero or more bytes")


@dataclass(frozen=True, slots=True)
class ProxySettings:
    """What a proxy repository needs to reach its upstream."""

    remote_url: str
    cache_ttl: int = DEFAULT_CACHE_TTL_SECONDS
    username: str | None = None
    password: str | None = None

    @classmethod
    def of(
        cls,
        remote_url: str | None,
        cache_ttl: int | None = None,
        username: str | None = None,
        password: str | None = None,
    ) -> ProxySettings | None:
        """Settings from optional fields: None when no upstream is named (a cache_ttl alone,
        which clients send for every kind of repository, is then ignored)."""
        if remote_url is None:
            if username is not None or password is not None:
                raise InvalidInput("upstream credentials need a remote_url")
            return None
        return cls(
            remote_url,
            DEFAULT_CACHE_TTL_SECONDS if cache_ttl is None else cache_ttl,
            username,
            password,
        )

    def checked(self) -> dict[str, object]:
        """The columns to store, once the settings make sense."""
        url = urlsplit(self.remote_url)
        if url.scheme not in ("http", "https") or not url.hostname or url.query or url.fragment:
            raise InvalidInput(
                f"remote_url {self.remote_url!r} must be an http(s) URL of a registry,"
                " e.g. https://registry-1.docker.io"
            )
        if self.cache_ttl < 0:
            raise InvalidInput("cache_ttl must be zero or more seconds")
        if (self.username is None) != (self.password is None):
            raise InvalidInput("give both the upstream username and password, or neither")
        return {
            "remote_url": self.remote_url.rstrip("/"),
            "cache_ttl": self.cache_ttl,
            "upstream_username": self.username,
            "upstream_password": self.password,
        }


@dataclass(frozen=True, slots=True)
class FlatRouting:
    """How else clients reach a repository: an alias prefix, the catch-all, a host name."""

    flat_alias_prefix: str | None = None
    is_catch_all: bool = False
    host_name: str | None = None

    def normalized(self) -> FlatRouting:
        try:
            return FlatRouting(
                normalize_prefix(self.flat_alias_prefix) if self.flat_alias_prefix else None,
                self.is_catch_all,
                normalize_host(self.host_name) if self.host_name else None,
            )
        except PrefixError as error:
            raise InvalidInput(str(error)) from None


def _lifecycle_values(
    repository: RepositoryRecord,
    cleanup_policy: CleanupPolicy | Unchanged | None,
    cache_max_age_days: int | Unchanged | None,
    cache_max_bytes: int | Unchanged | None,
) -> dict[str, object]:
    """The columns of the cleanup policy (hosted) and cache limits (proxy) to change."""
    values: dict[str, object] = {}
    if cleanup_policy is not UNCHANGED:
        if cleanup_policy is not None and repository.is_proxy:
            raise InvalidInput(
                "cleanup policies are for hosted repositories; a proxy's cache is bounded by"
                " cache_max_age_days and cache_max_bytes"
            )
        values["cleanup_policy"] = (
            None if cleanup_policy is None else cleanup_policy.checked().to_json()
        )
    for column, limit in (
        ("cache_max_age_days", cache_max_age_days),
        ("cache_max_bytes", cache_max_bytes),
    ):
        if limit is UNCHANGED:
            continue
        if limit is not None and not repository.is_proxy:
            raise InvalidInput(f"only a proxy repository has {column}")
        if limit is not None and limit < 0:
            raise InvalidInput(f"{column} must be zero or more")
        values[column] = limit
    return values


class ProjectService:
    def __init__(self, metadata: MetadataStore, router: NameRouter) -> None:
        self._metadata = metadata
        self._router = router

    async def create_project(
        self, name: str, anonymous_read: bool = False, quota_bytes: int | None = None
    ) -> ProjectRecord:
        _check_component("project", name)
        _check_quota(quota_bytes)
        try:
            return await self._metadata.create_project(name, anonymous_read, quota_bytes)
        except AlreadyExists:
            raise Conflict(f"project {name!r} already exists") from None

    async def list_projects(self) -> list[ProjectRecord]:
        return await self._metadata.list_projects()

    async def get_project(self, name: str) -> ProjectRecord:
        project = await self._metadata.get_project(name)
        if project is None:
            raise NotFound(f"project {name!r} does not exist")
        return project

    async def usage(self, projects: list[ProjectRecord]) -> dict[int, int]:
        """Bytes each project's hosted repositories hold, by project id."""
        used = await self._metadata.project_usage([project.id for project in projects])
        return {project.id: used.get(project.id, 0) for project in projects}

    async def update_project(
        self,
        name: str,
        *,
        anonymous_read: bool | None = None,
        quota_bytes: int | Unchanged | None = UNCHANGED,
    ) -> ProjectRecord:
        """Change what is given (a quota of None: unlimited)."""
        values: dict[str, object] = {}
        if anonymous_read is not None:
            values["anonymous_read"] = anonymous_read
        if quota_bytes is not UNCHANGED:
            _check_quota(quota_bytes)
            values["quota_bytes"] = quota_bytes
        if values and not await self._metadata.update_project(name, **values):
            raise NotFound(f"project {name!r} does not exist")
        self._router.invalidate()
        return await self.get_project(name)

    async def create_repository(
        self,
        project_name: str,
        name: str,
        kind: str = "hosted",
        format: str = "docker",
        anonymous_read: bool = False,
        *,
        proxy: ProxySettings | None = None,
        routing: FlatRouting = FlatRouting(),
        untagged_manifests: str = "keep",
    ) -> RepositoryRecord:
        _check_component("repository", name)
        _check_untagged_policy(untagged_manifests)
        routing = routing.normalized()
        if kind not in REPOSITORY_KINDS:
            raise InvalidInput(
                f"repository type {kind!r} is not supported; choose {', '.join(REPOSITORY_KINDS)}"
            )
        if format not in REPOSITORY_FORMATS:
            raise InvalidInput(
                f"format {format!r} is not supported; choose {', '.join(REPOSITORY_FORMATS)}"
            )
        if (kind == "proxy") != (proxy is not None):
            raise InvalidInput("a proxy repository needs a remote_url, and only a proxy has one")
        project = await self._metadata.get_project(project_name)
        if project is None:
            raise NotFound(f"project {project_name!r} does not exist")
        await self._check_routing(None, f"{project_name}/{name}/", routing)
        try:
            repository = await self._metadata.create_repository(
                project,
                name,
                kind,
                format,
                anonymous_read=anonymous_read,
                flat_alias_prefix=routing.flat_alias_prefix,
                is_catch_all=routing.is_catch_all,
                host_name=routing.host_name,
                untagged_manifests=untagged_manifests,
                **(proxy.checked() if proxy else {}),
            )
        except AlreadyExists:
            raise Conflict(
                f"repository {project_name}/{name}, or its alias, catch-all or host name,"
                " exists already"
            ) from None
        self._router.invalidate()
        return repository

    async def _check_routing(
        self, repository_id: int | None, canonical: str, routing: FlatRouting
    ) -> None:
        table = await self._router.table()
        try:
            table.check(
                repository_id,
                canonical,
                routing.flat_alias_prefix,
                routing.is_catch_all,
                routing.host_name,
            )
        except PrefixClash as error:
            raise Conflict(str(error)) from None

    async def list_repositories(self) -> list[RepositoryRecord]:
        return await self._metadata.list_repositories()

    async def get_repository(self, project_name: str, name: str) -> RepositoryRecord:
        repository = await self._metadata.get_repository(project_name, name)
        if repository is None:
            raise NotFound(f"repository {project_name}/{name} does not exist")
        return repository

    async def tags(self, repository: RepositoryRecord) -> list[TagRecord]:
        """Every tag of the repository, with its pull statistics."""
        return await self._metadata.tag_records(repository.id)

    async def update_repository(
        self,
        project_name: str,
        name: str,
        *,
        anonymous_read: bool | None = None,
        remote_url: str | None = None,
        cache_ttl: int | None = None,
        upstream_username: str | None = None,
        upstream_password: str | None = None,
        flat_alias_prefix: str | None = None,
        is_catch_all: bool | None = None,
        host_name: str | None = None,
        cleanup_policy: CleanupPolicy | Unchanged | None = UNCHANGED,
        cache_max_age_days: int | Unchanged | None = UNCHANGED,
        cache_max_bytes: int | Unchanged | None = UNCHANGED,
        untagged_manifests: str | None = None,
    ) -> RepositoryRecord:
        """Change what is given; None leaves a setting as it is (an empty alias prefix or host
        name removes it), except for the lifecycle settings, where None removes the setting
        and UNCHANGED leaves it."""
        repository = await self.get_repository(project_name, name)
        values = _lifecycle_values(repository, cleanup_policy, cache_max_age_days, cache_max_bytes)
        if (flat_alias_prefix, is_catch_all, host_name) != (None, None, None):
            routing = FlatRouting(
                repository.flat_alias_prefix if flat_alias_prefix is None else flat_alias_prefix,
                repository.is_catch_all if is_catch_all is None else is_catch_all,
                repository.host_name if host_name is None else host_name,
            ).normalized()
            await self._check_routing(repository.id, repository.prefix, routing)
            values.update(
                flat_alias_prefix=routing.flat_alias_prefix,
                is_catch_all=routing.is_catch_all,
                host_name=routing.host_name,
            )
        if anonymous_read is not None:
            values["anonymous_read"] = anonymous_read
        if untagged_manifests is not None:
            _check_untagged_policy(untagged_manifests)
            values["untagged_manifests"] = untagged_manifests
        upstream = (remote_url, cache_ttl, upstream_username, upstream_password)
        if any(value is not None for value in upstream):
            if not repository.is_proxy:
                raise InvalidInput("only a proxy repository has upstream settings")
            credentials_given = upstream_username is not None or upstream_password is not None
            proxy = ProxySettings(
                remote_url or repository.remote_url or "",
                cache_ttl if cache_ttl is not None else repository.cache_ttl or 0,
                upstream_username if credentials_given else repository.upstream_username,
                upstream_password if credentials_given else repository.upstream_password,
            )
            values.update(proxy.checked())
        if values:
            try:
                await self._metadata.update_repository(repository.id, **values)
            except AlreadyExists:
                raise Conflict(
                    "another repository took that alias, catch-all or host name"
                ) from None
            self._router.invalidate()
        return await self.get_repository(project_name, name)
