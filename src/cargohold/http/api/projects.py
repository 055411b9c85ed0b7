"""Projects, their repositories and their members.

What a caller may not see answers 404 as if it did not exist; what it sees but may not
change answers 403.
"""

from __future__ import annotations

from cargohold.auth.management import (
    cleans_repositories,
    is_system_admin,
    manages_project,
    sees_project,
    sees_repository,
)
from cargohold.db.metadata import ProjectRecord, RepositoryRecord
from cargohold.http.api.errors import forbidden
from cargohold.http.api.models import (
    CleanupResult,
    CleanupRun,
    Member,
    MemberRole,
    Project,
    ProjectCreate,
    ProjectUpdate,
    Repository,
    RepositoryCreate,
    RepositoryUpdate,
    Tag,
)
from cargohold.http.api.routing import Access, Call, Route, route, route_with_body
from cargohold.registry.errors import NotFound
from cargohold.registry.projects import UNCHANGED, FlatRouting, ProxySettings


async def _visible_project(call: Call, name: str) -> ProjectRecord:
    project = await call.services.projects.get_project(name)
    if is_system_admin(call.standing) or sees_project(
        call.standing, project, await call.services.projects.list_repositories()
    ):
        return project
    raise NotFound(f"project {name!r} does not exist")


async def _managed_project(call: Call, name: str) -> ProjectRecord:
    project = await _visible_project(call, name)
    if not manages_project(call.standing, project.id):
        raise forbidden(f"only administrators of project {name!r} may do this")
    return project


async def _visible_repository(call: Call, project: str, name: str) -> RepositoryRecord:
    repository = await call.services.projects.get_repository(project, name)
    if not sees_repository(call.standing, repository):
        raise NotFound(f"repository {project}/{name} does not exist")
    return repository


# Projects


async def _shown(call: Call, projects: list[ProjectRecord]) -> list[Project]:
    usage = await call.services.projects.usage(projects)
    return [Project.of(project, usage[project.id]) for project in projects]


async def list_projects(call: Call) -> list[Project]:
    repositories = await call.services.projects.list_repositories()
    return await _shown(
        call,
        [
            project
            for project in await call.services.projects.list_projects()
            if sees_project(call.standing, project, repositories)
        ],
    )


async def create_project(call: Call, body: ProjectCreate) -> Project:
    project = await call.services.projects.create_project(
        body.name, body.anonymous_read, body.quota_bytes
    )
    return (await _shown(call, [project]))[0]


async def get_project(call: Call) -> Project:
    return (await _shown(call, [await _visible_project(call, call.param("project"))]))[0]


async def update_project(call: Call, body: ProjectUpdate) -> Project:
    project = await _managed_project(call, call.param("project"))
    project = await call.services.projects.update_project(
        project.name,
        anonymous_read=body.anonymous_read,
        quota_bytes=body.quota_bytes if "quota_bytes" in body.model_fields_set else UNCHANGED,
    )
    return (await _shown(call, [project]))[0]


# Members


async def list_members(call: Call) -> list[Member]:
    project = await _managed_project(call, call.param("project"))
    return [
        Member.of(member) for member in await call.services.accounts_admin.members(project.name)
    ]


async def set_member(call: Call, body: MemberRole) -> Member:
    project = await _managed_project(call, call.param("project"))
    member = await call.services.accounts_admin.set_member(
        project.name, call.param("user"), body.role
    )
    return Member.of(member)


async def remove_member(call: Call) -> None:
    project = await _managed_project(call, call.param("project"))
    await call.services.accounts_admin.remove_member(project.name, call.param("user"))


# Repositories


async def list_repositories(call: Call) -> list[Repository]:
    return [
        Repository.of(repository)
        for repository in await call.services.projects.list_repositories()
        if sees_repository(call.standing, repository)
    ]


def _check_routing_access(call: Call, *settings: object) -> None:
    """Flat aliases, the catch-all and host names route names of every project: only system
    administrators set them (a project's administrators could otherwise take names that
    clients of other projects use)."""
    if any(value not in (None, False, "") for value in settings) and not is_system_admin(
        call.standing
    ):
        raise forbidden(
            "only system administrators may set flat_alias_prefix, is_catch_all or host_name"
        )


async def create_repository(call: Call, body: RepositoryCreate) -> Repository:
    project = await _managed_project(call, body.project)
    _check_routing_access(call, body.flat_alias_prefix, body.is_catch_all, body.host_name)
    repository = await call.services.projects.create_repository(
        project.name,
        body.name,
        body.repository_type,
        body.format,
        body.anonymous_read,
        proxy=ProxySettings.of(
            body.remote_url, body.cache_ttl, body.upstream_username, body.upstream_password
        ),
        routing=FlatRouting(body.flat_alias_prefix, body.is_catch_all, body.host_name),
        untagged_manifests=body.untagged_manifests,
    )
    return Repository.of(repository)


async def get_repository(call: Call) -> Repository:
    return Repository.of(await _visible_repository(call, call.param("project"), call.param("name")))


async def update_repository(call: Call, body: RepositoryUpdate) -> Repository:
    project = await _managed_project(call, call.param("project"))
    routing = (body.flat_alias_prefix, body.is_catch_all, body.host_name)
    _check_routing_access(call, *(value is not None for value in routing))
    repository = await call.services.projects.update_repository(
        project.name,
        call.param("name"),
        anonymous_read=body.anonymous_read,
        remote_url=body.remote_url,
        cache_ttl=body.cache_ttl,
        upstream_username=body.upstream_username,
        upstream_password=body.upstream_password,
        flat_alias_prefix=body.flat_alias_prefix,
        is_catch_all=body.is_catch_all,
        host_name=body.host_name,
        untagged_manifests=body.untagged_manifests,
        **body.lifecycle(),
    )
    return Repository.of(repository)


async def run_cleanup(call: Call, body: CleanupRun) -> CleanupResult:
    repository = await _visible_repository(call, call.param("project"), call.param("name"))
    if not cleans_repositories(call.standing, repository.project_id):
        raise forbidden(
            f"only administrators and maintainers of project {repository.project!r} may run"
            " its cleanup"
        )
    report = await call.services.cleanup.run(
        repository.project, repository.name, dry_run=body.dry_run
    )
    return CleanupResult.of(report)


async def list_tags(call: Call) -> list[Tag]:
    repository = await _visible_repository(call, call.param("project"), call.param("name"))
    return [Tag.of(record) for record in await call.services.projects.tags(repository)]


ROUTES: tuple[Route, ...] = (
    route(
        "GET",
        "/projects",
        list_projects,
        summary="List the projects the caller may see",
        response=list[Project],
        access=Access.SIGNED_IN,
    ),
    route_with_body(
        "POST",
        "/projects",
        create_project,
        body=ProjectCreate,
        summary="Create a project",
        response=Project,
        status=201,
        access=Access.ADMIN,
        errors=(409,),
    ),
    route(
        "GET",
        "/projects/{project}",
        get_project,
        summary="Show a project",
        response=Project,
        access=Access.SIGNED_IN,
    ),
    route_with_body(
        "PATCH",
        "/projects/{project}",
        update_project,
        body=ProjectUpdate,
        summary="Change a project (system or project administrators)",
        response=Project,
        access=Access.USER,
    ),
    route(
        "GET",
        "/projects/{project}/members",
        list_members,
        summary="List a project's members and their roles (system or project administrators)",
        response=list[Member],
        access=Access.USER,
    ),
    route_with_body(
        "PUT",
        "/projects/{project}/members/{user}",
        set_member,
        body=MemberRole,
        summary="Make a user a member of a project, or change its role there",
        response=Member,
        access=Access.USER,
    ),
    route(
        "DELETE",
        "/projects/{project}/members/{user}",
        remove_member,
        summary="Remove a user from a project's members",
        response=None,
        access=Access.USER,
    ),
    route(
        "GET",
        "/repos",
        list_repositories,
        summary="List the repositories the caller may see",
        response=list[Repository],
        access=Access.SIGNED_IN,
    ),
    route_with_body(
        "POST",
        "/repos",
        create_repository,
        body=RepositoryCreate,
        summary="Create a repository (system or project administrators)",
        response=Repository,
        status=201,
        access=Access.USER,
        errors=(404, 409),
    ),
    route(
        "GET",
        "/repos/{project}/{name}",
        get_repository,
        summary="Show a repository",
        response=Repository,
        access=Access.SIGNED_IN,
    ),
    route_with_body(
        "PATCH",
        "/repos/{project}/{name}",
        update_repository,
        body=RepositoryUpdate,
        summary="Change a repository (system or project administrators)",
        response=Repository,
        access=Access.USER,
        errors=(409,),
    ),
    route(
        "GET",
        "/repos/{project}/{name}/tags",
        list_tags,
        summary="List a repository's tags with their pull statistics",
        response=list[Tag],
        access=Access.SIGNED_IN,
    ),
    route_with_body(
        "POST",
        "/repos/{project}/{name}/cleanup",
        run_cleanup,
        body=CleanupRun,
        summary="Apply a repository's cleanup policy or cache limits, or report what they"
        " would remove (system administrators, project administrators and maintainers)",
        response=CleanupResult,
        access=Access.USER,
    ),
)
