"""Users, robot accounts and project members: what the CLI and the management API change.

Secrets are generated here and returned once; only their argon2 hashes are stored.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass

from cargohold.auth.passwords import generate_secret, hash_secret
from cargohold.auth.principals import ROBOT_PREFIX, ROLES
from cargohold.auth.service import AuthService
from cargohold.db.accounts import AccountStore, MemberRecord, NewGrant, RobotRecord, UserRecord
from cargohold.db.metadata import MetadataStore
from cargohold.db.store import AlreadyExists
from cargohold.oci.auth import REPOSITORY_ACTIONS
from cargohold.registry.errors import Conflict, InvalidInput, NotFound

ACCOUNT_NAME = re.compile(r"[a-z0-9](?:[a-z0-9._-]{0,62}[a-z0-9])?")
MIN_PASSWORD_LENGTH = 8
ADMIN = "admin"


@dataclass(frozen=True, slots=True)
class GrantSpec:
    """`project` or `project/repository`, and the actions allowed there."""

    project: str
    repository: str | None
    actions: tuple[str, ...]

    @classmethod
    def parse(cls, value: str) -> GrantSpec:
        """From `project[/repository]=action[,action]` (the CLI's --grant)."""
        where, equals, actions = value.partition("=")
        project, _, repository = where.partition("/")
        if not equals or not project:
            raise InvalidInput(f"grant {value!r} is not of the form PROJECT[/REPOSITORY]=ACTIONS")
        return cls(project, repository or None, tuple(a for a in actions.split(",") if a))


def _check_name(what: str, name: str) -> None:
    if not ACCOUNT_NAME.fullmatch(name):
        raise InvalidInput(
            f"{what} name {name!r} is invalid: 1 to 64 lowercase letters, digits, '.', '_' or"
            " '-', starting and ending with a letter or digit"
        )


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidInput(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")


def robot_name(name: str) -> str:
    """The stored name of a robot given as `ci` or `sa$ci`."""
    return name[len(ROBOT_PREFIX) :] if name.startswith(ROBOT_PREFIX) else name


class AccountService:
    def __init__(self, accounts: AccountStore, metadata: MetadataStore, auth: AuthService) -> None:
        self._accounts = accounts
        self._metadata = metadata
        self._auth = auth

    # Users

    async def create_user(
        self, name: str, password: str | None, *, is_admin: bool = False
    ) -> tuple[UserRecord, str | None]:
        """The new user, and its password when one was generated (to show once)."""
        _check_name("user", name)
        generated = None
        if password is None:
            password = generated = generate_secret()
        _check_password(password)
        try:
            user = await self._accounts.create_user(name, await hash_secret(password), is_admin)
        except AlreadyExists:
            raise Conflict(f"user {name!r} already exists") from None
        return user, generated

    async def ensure_admin(self, password: str | None) -> str | None:
        """While no system administrator exists (first start, or users made by the CLI
        before it), create `admin`; its password if generated."""
        if await self._accounts.count_admins():
            return None
        try:
            _, generated = await self.create_user(ADMIN, password, is_admin=True)
        except Conflict:  # a user `admin` exists, or another process created it just now
            return None
        return generated

    async def list_users(self) -> list[UserRecord]:
        return await self._accounts.list_users()

    async def get_user(self, name: str) -> UserRecord:
        user = await self._accounts.get_user(name)
        if user is None:
            raise NotFound(f"user {name!r} does not exist")
        return user

    async def update_user(
        self,
        name: str,
        *,
        password: str | None = None,
        is_admin: bool | None = None,
        disabled: bool | None = None,
    ) -> UserRecord:
        values: dict[str, object] = {}
        if password is not None:
            _check_password(password)
            values["password_hash"] = await hash_secret(password)
        if is_admin is not None:
            values["is_admin"] = is_admin
        if disabled is not None:
            values["disabled"] = disabled
        if values and not await self._accounts.update_user(name, **values):
            raise NotFound(f"user {name!r} does not exist")
        self._auth.forget(name)
        return await self.get_user(name)

    async def delete_user(self, name: str) -> None:
        if not await self._accounts.delete_user(name):
            raise NotFound(f"user {name!r} does not exist")
        self._auth.forget(name)

    # Robots

    async def _grants(self, specs: Sequence[GrantSpec]) -> list[NewGrant]:
        grants = []
        for spec in specs:
            unknown = set(spec.actions) - set(REPOSITORY_ACTIONS)
            if unknown or not spec.actions:
                raise InvalidInput(
                    f"grant actions must be among {', '.join(REPOSITORY_ACTIONS)}"
                    f" (got {', '.join(spec.actions) or 'none'})"
                )
            project = await self._metadata.get_project(spec.project)
            if project is None:
                raise NotFound(f"project {spec.project!r} does not exist")
            repository_id = None
            if spec.repository is not None:
                repositories = await self._metadata.list_repositories()
                found = [
                    r.id
                    for r in repositories
                    if r.project_id == project.id and r.name == spec.repository
                ]
                if not found:
                    raise NotFound(f"repository {spec.project}/{spec.repository} does not exist")
                repository_id = found[0]
            grants.append(NewGrant(project.id, repository_id, spec.actions))
        return grants

    async def create_robot(
        self,
        name: str,
        grants: Sequence[GrantSpec],
        *,
        expires_in_seconds: float | None = None,
        description: str = "",
    ) -> tuple[RobotRecord, str]:
        """The new robot `sa$<name>` and its API key, shown this once."""
        name = robot_name(name)
        _check_name("robot", name)
        if expires_in_seconds is not None and expires_in_seconds <= 0:
            raise InvalidInput("a robot's lifetime must be positive")
        new_grants = await self._grants(grants)
        secret = generate_secret()
        expires_at = None if expires_in_seconds is None else time.time() + expires_in_seconds
        try:
            robot = await self._accounts.create_robot(
                name, await hash_secret(secret), description, expires_at, new_grants
            )
        except AlreadyExists:
            raise Conflict(f"robot {ROBOT_PREFIX}{name} already exists") from None
        return robot, secret

    async def list_robots(self) -> list[RobotRecord]:
        return await self._accounts.list_robots()

    async def get_robot(self, name: str) -> RobotRecord:
        robot = await self._accounts.get_robot(robot_name(name))
        if robot is None:
            raise NotFound(f"robot {ROBOT_PREFIX}{robot_name(name)} does not exist")
        return robot

    async def update_robot(
        self,
        name: str,
        *,
        disabled: bool | None = None,
        grants: Sequence[GrantSpec] | None = None,
        description: str | None = None,
    ) -> RobotRecord:
        robot = await self.get_robot(name)
        values: dict[str, object] = {}
        if disabled is not None:
            values["disabled"] = disabled
        if description is not None:
            values["description"] = description
        if values:
            await self._accounts.update_robot(robot.name, **values)
        if grants is not None:
            await self._accounts.set_grants(robot.name, await self._grants(grants))
        self._auth.forget(ROBOT_PREFIX + robot.name)
        return await self.get_robot(robot.name)

    async def rotate_robot_key(self, name: str) -> tuple[RobotRecord, str]:
        """A new API key for the robot; the old one stops working."""
        robot = await self.get_robot(name)
        secret = generate_secret()
        await self._accounts.update_robot(robot.name, secret_hash=await hash_secret(secret))
        self._auth.forget(ROBOT_PREFIX + robot.name)
        return await self.get_robot(robot.name), secret

    async def delete_robot(self, name: str) -> None:
        robot = await self.get_robot(name)
        await self._accounts.delete_robot(robot.name)
        self._auth.forget(ROBOT_PREFIX + robot.name)

    # Project members

    async def _project_and_user(self, project_name: str, user_name: str) -> tuple[int, int]:
        project = await self._metadata.get_project(project_name)
        if project is None:
            raise NotFound(f"project {project_name!r} does not exist")
        return project.id, (await self.get_user(user_name)).id

    async def set_member(self, project_name: str, user_name: str, role: str) -> MemberRecord:
        if role not in ROLES:
            raise InvalidInput(f"role {role!r} is not one of {', '.join(ROLES)}")
        project_id, user_id = await self._project_and_user(project_name, user_name)
        await self._accounts.set_member(project_id, user_id, role)
        self._auth.forget(user_name)
        return MemberRecord(project_name, user_name, role)

    async def remove_member(self, project_name: str, user_name: str) -> None:
        project_id, user_id = await self._project_and_user(project_name, user_name)
        if not await self._accounts.remove_member(project_id, user_id):
            raise NotFound(f"{user_name!r} is not a member of {project_name!r}")
        self._auth.forget(user_name)

    async def members(self, project_name: str) -> list[MemberRecord]:
        project = await self._metadata.get_project(project_name)
        if project is None:
            raise NotFound(f"project {project_name!r} does not exist")
        return await self._accounts.members(project.id)
