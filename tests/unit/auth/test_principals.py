"""What a principal may do in a repository: project roles, robot grants, anonymous read,
system administrators, and inactive accounts."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from cargohold.auth.principals import (
    ALL_ACTIONS,
    ANONYMOUS,
    ANONYMOUS_STANDING,
    ROLES,
    Principal,
    Standing,
    repository_actions,
)
from cargohold.db.accounts import GrantRecord
from cargohold.db.metadata import RepositoryRecord

PROJECT_A, PROJECT_B = 1, 2


def _repository(
    repository_id: int,
    project_id: int,
    *,
    anonymous_read: bool = False,
    project_anonymous_read: bool = False,
) -> RepositoryRecord:
    return RepositoryRecord(
        id=repository_id,
        project_id=project_id,
        project=f"project{project_id}",
        name=f"repo{repository_id}",
        kind="hosted",
        format="docker",
        created_at=0.0,
        anonymous_read=anonymous_read,
        project_anonymous_read=project_anonymous_read,
    )


A1 = _repository(11, PROJECT_A)
A2 = _repository(12, PROJECT_A)
B1 = _repository(21, PROJECT_B)


def _user(
    roles: Mapping[int, str] | None = None, *, active: bool = True, is_admin: bool = False
) -> Standing:
    return Standing(
        Principal("user", 7, "alice", is_admin=is_admin), active=active, roles=roles or {}
    )


def _grant(project_id: int, repository_id: int | None, *actions: str) -> GrantRecord:
    return GrantRecord(
        project_id,
        f"project{project_id}",
        repository_id,
        None if repository_id is None else f"repo{repository_id}",
        actions,
    )


def _robot(*grants: GrantRecord, active: bool = True) -> Standing:
    return Standing(Principal("robot", 3, "sa$ci"), active=active, grants=grants)


# Roles


@pytest.mark.parametrize(
    ("role", "expected"),
    [
        ("reader", {"pull"}),
        ("developer", {"pull", "push"}),
        ("maintainer", {"pull", "push", "delete"}),
        ("admin", {"pull", "push", "delete"}),
    ],
)
def test_each_role(role: str, expected: set[str]) -> None:
    standing = _user({PROJECT_A: role})
    assert repository_actions(standing, A1) == expected
    assert repository_actions(standing, A2) == expected
    # A role is in one project only.
    assert repository_actions(standing, B1) == frozenset()


def test_the_roles_are_exactly_these() -> None:
    assert set(ROLES) == {"reader", "developer", "maintainer", "admin"}


def test_different_roles_in_different_projects() -> None:
    standing = _user({PROJECT_A: "reader", PROJECT_B: "maintainer"})
    assert repository_actions(standing, A1) == {"pull"}
    assert repository_actions(standing, B1) == {"pull", "push", "delete"}


def test_no_role_no_access() -> None:
    assert repository_actions(_user(), A1) == frozenset()


def test_system_administrator_may_do_everything_everywhere() -> None:
    admin = _user(is_admin=True)
    for repository in (A1, A2, B1):
        assert repository_actions(admin, repository) == ALL_ACTIONS == {"pull", "push", "delete"}


# Robot grants


def test_project_grant_covers_every_repository_of_that_project() -> None:
    robot = _robot(_grant(PROJECT_A, None, "pull"))
    assert repository_actions(robot, A1) == {"pull"}
    assert repository_actions(robot, A2) == {"pull"}
    assert repository_actions(robot, B1) == frozenset()


def test_repository_grant_covers_that_repository_only() -> None:
    robot = _robot(_grant(PROJECT_A, A1.id, "pull", "push", "delete"))
    assert repository_actions(robot, A1) == {"pull", "push", "delete"}
    assert repository_actions(robot, A2) == frozenset()
    assert repository_actions(robot, B1) == frozenset()


def test_a_repository_grant_needs_its_project_to_match() -> None:
    # A grant naming B1's id under project A (inconsistent data) grants nothing on B1.
    robot = _robot(_grant(PROJECT_A, B1.id, "pull"))
    assert repository_actions(robot, B1) == frozenset()


def test_grants_add_up() -> None:
    robot = _robot(
        _grant(PROJECT_A, None, "pull"),
        _grant(PROJECT_A, A1.id, "push"),
        _grant(PROJECT_B, B1.id, "delete"),
    )
    assert repository_actions(robot, A1) == {"pull", "push"}
    assert repository_actions(robot, A2) == {"pull"}
    assert repository_actions(robot, B1) == {"delete"}


def test_unknown_actions_in_a_grant_grant_nothing() -> None:
    robot = _robot(_grant(PROJECT_A, None, "*", "admin", "pull"))
    assert repository_actions(robot, A1) == {"pull"}


def test_robots_have_no_roles_and_users_no_grants() -> None:
    robot = Standing(Principal("robot", 3, "sa$ci"), active=True, roles={PROJECT_A: "admin"})
    # Roles would be honoured if present: the store never gives a robot any.
    assert repository_actions(robot, A1) == {"pull", "push", "delete"}
    assert repository_actions(_robot(), A1) == frozenset()


# Anonymous read


@pytest.mark.parametrize(
    "repository",
    [
        _repository(31, PROJECT_A, anonymous_read=True),
        _repository(32, PROJECT_A, project_anonymous_read=True),
        _repository(33, PROJECT_A, anonymous_read=True, project_anonymous_read=True),
    ],
    ids=["repository", "project", "both"],
)
def test_anonymous_read_lets_anyone_pull(repository: RepositoryRecord) -> None:
    assert repository_actions(ANONYMOUS_STANDING, repository) == {"pull"}
    assert repository_actions(_user(), repository) == {"pull"}
    assert repository_actions(_robot(), repository) == {"pull"}
    # ... and only pull: pushing still takes a role or a grant.
    assert repository_actions(_user({PROJECT_A: "developer"}), repository) == {"pull", "push"}
    assert repository_actions(_robot(_grant(PROJECT_A, None, "delete")), repository) == {
        "pull",
        "delete",
    }


def test_anonymous_without_anonymous_read() -> None:
    assert ANONYMOUS_STANDING.principal is ANONYMOUS
    for repository in (A1, A2, B1):
        assert repository_actions(ANONYMOUS_STANDING, repository) == frozenset()


# Inactive accounts


@pytest.mark.parametrize(
    "standing",
    [
        _user({PROJECT_A: "maintainer"}, active=False),
        _user(active=False, is_admin=True),
        _robot(_grant(PROJECT_A, None, "pull", "push", "delete"), active=False),
    ],
    ids=["user", "administrator", "robot"],
)
def test_inactive_accounts_keep_only_what_anyone_has(standing: Standing) -> None:
    assert repository_actions(standing, A1) == frozenset()
    public = _repository(41, PROJECT_A, anonymous_read=True)
    assert repository_actions(standing, public) == {"pull"}
