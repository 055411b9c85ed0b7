"""Who is asking, and what they may do: roles, robot grants, anonymous read."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from cargohold.db.accounts import GrantRecord
from cargohold.db.metadata import RepositoryRecord
from cargohold.oci.auth import DELETE, PULL, PUSH, REPOSITORY_ACTIONS

ROBOT_PREFIX = "sa$"
ROLES: Mapping[str, frozenset[str]] = {
    "reader": frozenset({PULL}),
    "developer": frozenset({PULL, PUSH}),
    "maintainer": frozenset({PULL, PUSH, DELETE}),
    "admin": frozenset({PULL, PUSH, DELETE}),  # and manages the project's members
}
ALL_ACTIONS = frozenset(REPOSITORY_ACTIONS)


@dataclass(frozen=True, slots=True)
class Principal:
    kind: Literal["anonymous", "user", "robot"]
    id: int | None
    # The token subject: a user's name, `sa$<name>` for a robot, "" for anonymous.
    subject: str
    is_admin: bool = False


ANONYMOUS = Principal("anonymous", None, "")


@dataclass(frozen=True, slots=True)
class Standing:
    """A principal as the database knows it now (cached for a few seconds at most)."""

    principal: Principal
    active: bool
    # The stored hash of the password or API key: a cached sign-in holds while it is unchanged.
    credential_hash: str = ""
    roles: Mapping[int, str] = field(default_factory=dict)
    grants: tuple[GrantRecord, ...] = ()


ANONYMOUS_STANDING = Standing(ANONYMOUS, active=True)


def repository_actions(standing: Standing, repository: RepositoryRecord) -> frozenset[str]:
    """What the principal may do in a repository, by role, grant, and anonymous read."""
    actions: set[str] = set()
    if repository.anonymous_read or repository.project_anonymous_read:
        actions.add(PULL)
    if not standing.active:
        return frozenset(actions)
    if standing.principal.is_admin:
        return ALL_ACTIONS
    role = standing.roles.get(repository.project_id)
    if role is not None:
        actions |= ROLES[role]
    for grant in standing.grants:
        if grant.project_id == repository.project_id and grant.repository_id in (
            None,
            repository.id,
        ):
            actions |= set(grant.actions) & ALL_ACTIONS
    return frozenset(actions)
