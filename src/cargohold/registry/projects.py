"""Projects and the repositories inside them."""

from __future__ import annotations

import re

from cargohold.db.metadata import MetadataStore, ProjectRecord, RepositoryRecord
from cargohold.db.store import AlreadyExists
from cargohold.registry.errors import Conflict, InvalidInput, NotFound
from cargohold.registry.router import NameRouter

# One component of the OCI name grammar: projects and repositories are name components.
COMPONENT = re.compile(r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*")
MAX_COMPONENT_LENGTH = 100
REPOSITORY_KINDS = ("hosted",)
REPOSITORY_FORMATS = ("docker",)


def _check_component(what: str, value: str) -> None:
    if len(value) > MAX_COMPONENT_LENGTH or not COMPONENT.fullmatch(value):
        raise InvalidInput(
            f"{what} name {value!r} is invalid: use lowercase letters and digits, separated"
            f" by '.', '_', '__' or dashes, at most {MAX_COMPONENT_LENGTH} characters"
        )


def _refuse_unsupported(
    *,
    kind: str = "hosted",
    remote_url: str | None = None,
    flat_alias_prefix: str | None = None,
    is_catch_all: bool | None = None,
) -> None:
    """Refuse what later work brings: proxy repositories and flat aliases."""
    if kind == "proxy":
        raise InvalidInput("proxy repositories are not supported yet; create a hosted repository")
    if remote_url is not None:
        raise InvalidInput(
            "remote_url is not supported yet: it belongs to proxy repositories, which are not"
            " supported yet"
        )
    if flat_alias_prefix is not None:
        raise InvalidInput("flat aliases (flat_alias_prefix) are not supported yet")
    if is_catch_all:
        raise InvalidInput("catch-all repositories (is_catch_all) are not supported yet")


class ProjectService:
    def __init__(self, metadata: MetadataStore, router: NameRouter) -> None:
        self._metadata = metadata
        self._router = router

    async def create_project(self, name: str, anonymous_read: bool = False) -> ProjectRecord:
        _check_component("project", name)
        try:
            return await self._metadata.create_project(name, anonymous_read)
        except AlreadyExists:
            raise Conflict(f"project {name!r} already exists") from None

    async def list_projects(self) -> list[ProjectRecord]:
        return await self._metadata.list_projects()

    async def get_project(self, name: str) -> ProjectRecord:
        project = await self._metadata.get_project(name)
        if project is None:
            raise NotFound(f"project {name!r} does not exist")
        return project

    async def update_project(self, name: str, *, anonymous_read: bool) -> ProjectRecord:
        if not await self._metadata.update_project(name, anonymous_read=anonymous_read):
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
        remote_url: str | None = None,
        flat_alias_prefix: str | None = None,
        is_catch_all: bool = False,
    ) -> RepositoryRecord:
        _check_component("repository", name)
        _refuse_unsupported(
            kind=kind,
            remote_url=remote_url,
            flat_alias_prefix=flat_alias_prefix,
            is_catch_all=is_catch_all,
        )
        if kind not in REPOSITORY_KINDS:
            raise InvalidInput(
                f"repository type {kind!r} is not supported; choose {', '.join(REPOSITORY_KINDS)}"
            )
        if format not in REPOSITORY_FORMATS:
            raise InvalidInput(
                f"format {format!r} is not supported; choose {', '.join(REPOSITORY_FORMATS)}"
            )
        project = await self._metadata.get_project(project_name)
        if project is None:
            raise NotFound(f"project {project_name!r} does not exist")
        try:
            repository = await self._metadata.create_repository(
                project, name, kind, format, anonymous_read
            )
        except AlreadyExists:
            raise Conflict(f"repository {project_name}/{name} already exists") from None
        self._router.invalidate()
        return repository

    async def list_repositories(self) -> list[RepositoryRecord]:
        return await self._metadata.list_repositories()

    async def get_repository(self, project_name: str, name: str) -> RepositoryRecord:
        for repository in await self._metadata.list_repositories():
            if (repository.project, repository.name) == (project_name, name):
                return repository
        raise NotFound(f"repository {project_name}/{name} does not exist")

    async def update_repository(
        self,
        project_name: str,
        name: str,
        *,
        anonymous_read: bool | None = None,
        remote_url: str | None = None,
        flat_alias_prefix: str | None = None,
        is_catch_all: bool | None = None,
    ) -> RepositoryRecord:
        """Change what is given; None leaves a setting as it is."""
        repository = await self.get_repository(project_name, name)
        _refuse_unsupported(
            remote_url=remote_url, flat_alias_prefix=flat_alias_prefix, is_catch_all=is_catch_all
        )
        if anonymous_read is None:
            return repository
        await self._metadata.update_repository(repository.id, anonymous_read=anonymous_read)
        self._router.invalidate()
        return await self.get_repository(project_name, name)
