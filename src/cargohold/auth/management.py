"""Who may see and change what through the management API.

System administrators see and change everything. A user sees the repositories it can pull
from and the projects that hold them or where it has a role; a project's `admin` manages
that project (its settings, repositories and members), and it or a `maintainer` may run the
cleanup of its repositories. A robot sees the projects and
repositories its grants name, and changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable

from cargohold.auth.principals import Standing, repository_actions
from cargohold.db.metadata import ProjectRecord, RepositoryRecord
from cargohold.oci.auth import PULL

PROJECT_ADMIN = "admin"
# Cleanup deletes tags, as these roles may.
CLEANUP_ROLES = frozenset({PROJECT_ADMIN, "maintainer"})


def is_system_admin(standing: Standing) -> bool:
    return standing.active and standing.principal.is_admin


def is_user(standing: Standing) -> bool:
    return standing.active and standing.principal.kind == "user"


def manages_project(standing: Standing, project_id: int) -> bool:
    """May change the project, create and change its repositories, and manage its members."""
    return is_system_admin(standing) or (
        is_user(standing) and standing.roles.get(project_id) == PROJECT_ADMIN
    )


def cleans_repositories(standing: Standing, project_id: int) -> bool:
    """May run the cleanup of the project's repositories (their policies and cache limits)."""
    return is_system_admin(standing) or (
        is_user(standing) and standing.roles.get(project_id) in CLEANUP_ROLES
    )


def sees_repository(standing: Standing, repository: RepositoryRecord) -> bool:
    if not standing.active:
        return False
    if standing.principal.is_admin:
        return True
    if standing.principal.kind == "robot":
        return any(
            grant.project_id == repository.project_id
            and grant.repository_id in (None, repository.id)
            for grant in standing.grants
        )
    return standing.principal.kind == "user" and PULL in repository_actions(standing, repository)


def sees_project(
    standing: Standing, project: ProjectRecord, repositories: Iterable[RepositoryRecord]
) -> bool:
    """`repositories` may hold any repositories; those of other projects are ignored."""
    if not standing.active:
        return False
    if standing.principal.is_admin:
        return True
    if standing.principal.kind == "robot":
        return any(grant.project_id == project.id for grant in standing.grants)
    if standing.principal.kind != "user":
        return False
    if project.id in standing.roles or project.anonymous_read:
        return True
    return any(
        repository.project_id == project.id and sees_repository(standing, repository)
        for repository in repositories
    )
