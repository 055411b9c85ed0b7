"""Who sees and changes what through the management API."""

from __future__ import annotations

from cargohold.auth.management import (
    is_system_admin,
    is_user,
    manages_project,
    sees_project,
    sees_repository,
)
from cargohold.auth.principals import ANONYMOUS_STANDING, Principal, Standing
from cargohold.db.accounts import GrantRecord
from cargohold.db.metadata import ProjectRecord, RepositoryRecord

MINE = ProjectRecord(1, "mine", 0.0, False)
OTHER = ProjectRecord(2, "other", 0.0, False)
PUBLIC = ProjectRecord(3, "public", 0.0, True)
EMPTY = ProjectRecord(4, "empty", 0.0, False)


def _repository(
    id: int, project: ProjectRecord, name: str, anonymous_read: bool = False
) -> RepositoryRecord:
    return RepositoryRecord(
        id,
        project.id,
        project.name,
        name,
        "hosted",
        "docker",
        0.0,
        anonymous_read,
        project.anonymous_read,
    )


MINE_APPS = _repository(10, MINE, "apps")
MINE_LIBS = _repository(11, MINE, "libs")
OTHER_PRIVATE = _repository(20, OTHER, "private")
OTHER_OPEN = _repository(21, OTHER, "open", anonymous_read=True)
PUBLIC_REPO = _repository(30, PUBLIC, "repo")
ALL = [MINE_APPS, MINE_LIBS, OTHER_PRIVATE, OTHER_OPEN, PUBLIC_REPO]


def _user(
    roles: dict[int, str] | None = None, *, admin: bool = False, active: bool = True
) -> Standing:
    return Standing(Principal("user", 7, "alice", is_admin=admin), active=active, roles=roles or {})


def _robot(*grants: GrantRecord, active: bool = True) -> Standing:
    return Standing(Principal("robot", 8, "sa$ci"), active=active, grants=grants)


def test_system_admin_sees_and_manages_everything() -> None:
    admin = _user(admin=True)
    assert is_system_admin(admin)
    assert all(manages_project(admin, project.id) for project in (MINE, OTHER, EMPTY))
    assert all(sees_repository(admin, repository) for repository in ALL)
    assert all(sees_project(admin, project, ALL) for project in (MINE, OTHER, PUBLIC, EMPTY))


def test_a_disabled_admin_is_nothing() -> None:
    admin = _user(admin=True, active=False)
    assert not is_system_admin(admin)
    assert not manages_project(admin, MINE.id)
    assert not sees_repository(admin, MINE_APPS)
    assert not sees_project(admin, MINE, ALL)


def test_only_a_project_admin_manages_its_project() -> None:
    for role in ("reader", "developer", "maintainer"):
        assert not manages_project(_user({MINE.id: role}), MINE.id)
    project_admin = _user({MINE.id: "admin"})
    assert manages_project(project_admin, MINE.id)
    assert not manages_project(project_admin, OTHER.id)
    assert not is_system_admin(project_admin)


def test_a_member_sees_its_projects_repositories_and_what_anyone_may_pull() -> None:
    reader = _user({MINE.id: "reader"})
    assert [r.name for r in ALL if sees_repository(reader, r)] == ["apps", "libs", "open", "repo"]
    assert sees_project(reader, MINE, ALL)
    # A project is seen through an anonymous-read repository in it, or its own flag.
    assert sees_project(reader, OTHER, ALL)
    assert sees_project(reader, PUBLIC, [])
    assert not sees_project(reader, EMPTY, ALL)


def test_a_member_sees_its_project_before_it_has_repositories() -> None:
    assert sees_project(_user({EMPTY.id: "developer"}), EMPTY, ALL)


def test_a_user_without_roles_sees_only_what_anyone_may_pull() -> None:
    nobody = _user()
    assert [r.name for r in ALL if sees_repository(nobody, r)] == ["open", "repo"]
    assert not sees_project(nobody, MINE, ALL)
    assert sees_project(nobody, OTHER, ALL)


def test_a_robot_sees_what_its_grants_name_and_manages_nothing() -> None:
    robot = _robot(
        GrantRecord(MINE.id, MINE.name, MINE_APPS.id, "apps", ("pull",)),
        GrantRecord(EMPTY.id, EMPTY.name, None, None, ("push",)),
    )
    assert [r.name for r in ALL if sees_repository(robot, r)] == ["apps"]
    assert [p.name for p in (MINE, OTHER, PUBLIC, EMPTY) if sees_project(robot, p, ALL)] == [
        "mine",
        "empty",
    ]
    assert not is_user(robot)
    assert not any(manages_project(robot, p.id) for p in (MINE, EMPTY))


def test_a_project_grant_covers_every_repository_of_the_project() -> None:
    robot = _robot(GrantRecord(MINE.id, MINE.name, None, None, ("pull",)))
    assert [r.name for r in ALL if sees_repository(robot, r)] == ["apps", "libs"]


def test_a_disabled_robot_sees_nothing() -> None:
    robot = _robot(GrantRecord(MINE.id, MINE.name, None, None, ("pull",)), active=False)
    assert not sees_repository(robot, MINE_APPS)
    assert not sees_project(robot, MINE, ALL)


def test_anonymous_sees_nothing() -> None:
    assert not any(sees_repository(ANONYMOUS_STANDING, r) for r in ALL)
    assert not sees_project(ANONYMOUS_STANDING, PUBLIC, ALL)
    assert not is_user(ANONYMOUS_STANDING)
    assert not manages_project(ANONYMOUS_STANDING, MINE.id)
