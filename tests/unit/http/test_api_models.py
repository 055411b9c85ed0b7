"""What the management API renders of the stored records."""

from __future__ import annotations

import json

from pydantic import TypeAdapter

from cargohold.auth.accounts import GrantSpec
from cargohold.db.accounts import GrantRecord, MemberRecord, RobotRecord, UserRecord
from cargohold.db.metadata import ProjectRecord, RepositoryRecord
from cargohold.http.api.models import (
    CreatedUser,
    Grant,
    Member,
    Project,
    Repository,
    RobotCreate,
    RobotWithKey,
    User,
)
from cargohold.http.api.models import Robot as RobotOut

USER = UserRecord(5, "alice", "$argon2id$secret-hash", False, True, 1700000000.75)
ROBOT = RobotRecord(
    9,
    "ci",
    "$argon2id$robot-hash",
    "builds",
    1800000000.5,
    False,
    1700000000.25,
    None,
    (
        GrantRecord(1, "team", None, None, ("pull", "push")),
        GrantRecord(2, "other", 3, "repo", ("pull",)),
    ),
)


def test_project() -> None:
    project = Project.of(ProjectRecord(1, "team", 1700000000.9, True, 10_000), 4_000)
    assert project.model_dump() == {
        "name": "team",
        "anonymous_read": True,
        "created_at": 1700000000,
        "quota_bytes": 10_000,
        "usage_bytes": 4_000,
    }


def test_a_hosted_repository_has_the_save_fields_unset() -> None:
    record = RepositoryRecord(3, 1, "team", "apps", "hosted", "docker", 1700000000.5, False, True)
    assert Repository.of(record).model_dump() == {
        "project": "team",
        "name": "apps",
        "format": "docker",
        "repository_type": "hosted",
        "remote_url": None,
        "cache_ttl": None,
        "has_upstream_credentials": False,
        "flat_alias_prefix": None,
        "is_catch_all": False,
        "host_name": None,
        "anonymous_read": False,
        "untagged_manifests": "keep",
        "created_at": 1700000000,
        "cleanup_policy": None,
        "cache_max_age_days": None,
        "cache_max_bytes": None,
    }


def test_a_repository_shows_its_flat_routing() -> None:
    record = RepositoryRecord(
        4,
        1,
        "team",
        "hub",
        "hosted",
        "docker",
        1700000000.5,
        False,
        False,
        flat_alias_prefix="team/external/",
        is_catch_all=True,
        host_name="hub.example.test",
    )
    shown = Repository.of(record).model_dump()
    assert (shown["flat_alias_prefix"], shown["is_catch_all"], shown["host_name"]) == (
        "team/external/",
        True,
        "hub.example.test",
    )


def test_a_user_never_shows_its_hash() -> None:
    rendered = User.of(USER).model_dump_json()
    assert json.loads(rendered) == {
        "name": "alice",
        "is_admin": False,
        "disabled": True,
        "created_at": 1700000000,
    }
    assert "argon2" not in rendered


def test_a_created_user_shows_the_generated_password_once() -> None:
    assert CreatedUser.created(USER, "generated-secret").password == "generated-secret"
    assert CreatedUser.created(USER, None).password is None


def test_a_robot_is_named_as_it_signs_in() -> None:
    robot = RobotOut.of(ROBOT)
    assert robot.model_dump() == {
        "name": "sa$ci",
        "description": "builds",
        "expires_at": 1800000000,
        "disabled": False,
        "created_at": 1700000000,
        "last_used_at": None,
        "grants": [
            {"project": "team", "repository": None, "actions": ["pull", "push"]},
            {"project": "other", "repository": "repo", "actions": ["pull"]},
        ],
    }
    assert "argon2" not in robot.model_dump_json()


def test_the_key_is_only_in_the_answers_that_declare_it() -> None:
    with_key = RobotWithKey.with_key(ROBOT, "the-key")
    assert json.loads(TypeAdapter(RobotWithKey).dump_json(with_key))["key"] == "the-key"
    # Rendered as a plain robot (what GET declares), the key is not there.
    assert "key" not in json.loads(TypeAdapter(RobotOut).dump_json(with_key))


def test_grants_become_specs() -> None:
    body = RobotCreate.model_validate(
        {
            "name": "sa$ci",
            "grants": [
                {"project": "team", "actions": ["pull"]},
                {"project": "team", "repository": "apps", "actions": ["push", "delete"]},
            ],
        }
    )
    assert body.grant_specs() == [
        GrantSpec("team", None, ("pull",)),
        GrantSpec("team", "apps", ("push", "delete")),
    ]
    assert body.expires_in_seconds is None
    assert body.description == ""


def test_grant_round_trip() -> None:
    grant = Grant.of(GrantRecord(2, "other", 3, "repo", ("pull",)))
    assert grant.spec() == GrantSpec("other", "repo", ("pull",))


def test_member() -> None:
    assert Member.of(MemberRecord("team", "alice", "developer")).model_dump() == {
        "project": "team",
        "user": "alice",
        "role": "developer",
    }
