"""Queries of accounts: users, robots and their grants, project members, refresh tokens,
token signing keys and failed sign-ins."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from cargohold.db.engine import Reader, Writer
from cargohold.db.schema import (
    login_failures,
    members,
    projects,
    refresh_tokens,
    repositories,
    robot_grants,
    robots,
    signing_keys,
    users,
)
from cargohold.db.store import AlreadyExists, Store


@dataclass(frozen=True, slots=True)
class UserRecord:
    id: int
    name: str
    password_hash: str
    is_admin: bool
    disabled: bool
    created_at: float


@dataclass(frozen=True, slots=True)
class GrantRecord:
    project_id: int
    project: str
    repository_id: int | None
    repository: str | None
    actions: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RobotRecord:
    id: int
    name: str
    secret_hash: str
    description: str
    expires_at: float | None
    disabled: bool
    created_at: float
    last_used_at: float | None
    grants: tuple[GrantRecord, ...]


@dataclass(frozen=True, slots=True)
class NewGrant:
    project_id: int
    repository_id: int | None
    actions: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class MemberRecord:
    project: str
    user: str
    role: str


@dataclass(frozen=True, slots=True)
class RefreshTokenRecord:
    service: str
    user_id: int | None
    robot_id: int | None


_GRANT_QUERY = (
    select(
        robot_grants.c.robot_id,
        robot_grants.c.project_id,
        projects.c.name,
        robot_grants.c.repository_id,
        repositories.c.name,
        robot_grants.c.actions,
    )
    .join(projects, projects.c.id == robot_grants.c.project_id)
    .outerjoin(repositories, repositories.c.id == robot_grants.c.repository_id)
    # A project-wide grant first: SQLite sorts NULL first, PostgreSQL last unless told.
    .order_by(projects.c.name, repositories.c.name.nulls_first())
)


_OLDEST_KEY = (
    select(signing_keys.c.private_key_pem)
    .order_by(signing_keys.c.created_at, signing_keys.c.kid)
    .limit(1)
)


class AccountStore(Store):
    # Users

    async def create_user(self, name: str, password_hash: str, is_admin: bool) -> UserRecord:
        now = time.time()
        try:
            async with self._write() as conn:
                result = await conn.execute(
                    insert(users)
                    .values(
                        name=name, password_hash=password_hash, is_admin=is_admin, created_at=now
                    )
                    .returning(users.c.id)
                )
                return UserRecord(result.scalar_one(), name, password_hash, is_admin, False, now)
        except IntegrityError as error:
            raise AlreadyExists(name) from error

    async def get_user(self, name: str) -> UserRecord | None:
        async with self._read() as conn:
            row = (await conn.execute(select(users).where(users.c.name == name))).first()
        return UserRecord(*row) if row else None

    async def list_users(self) -> list[UserRecord]:
        async with self._read() as conn:
            return [
                UserRecord(*row) for row in await conn.execute(select(users).order_by(users.c.name))
            ]

    async def count_admins(self) -> int:
        query = select(func.count()).select_from(users).where(users.c.is_admin.is_(True))
        async with self._read() as conn:
            count: int = (await conn.execute(query)).scalar_one()
            return count

    async def update_user(self, name: str, **values: Any) -> bool:
        """Change `password_hash`, `is_admin` or `disabled`; a password change or a disabled
        account ends its refresh tokens."""
        async with self._write() as conn:
            result = await conn.execute(update(users).where(users.c.name == name).values(**values))
            if result.rowcount and ("password_hash" in values or values.get("disabled")):
                user_id = select(users.c.id).where(users.c.name == name).scalar_subquery()
                await conn.execute(
                    delete(refresh_tokens).where(refresh_tokens.c.user_id == user_id)
                )
            return bool(result.rowcount)

    async def delete_user(self, name: str) -> bool:
        async with self._write() as conn:
            result = await conn.execute(delete(users).where(users.c.name == name))
            return bool(result.rowcount)

    # Project members

    async def set_member(self, project_id: int, user_id: int, role: str) -> None:
        async with self._write() as conn:
            await self._one_writer_at_a_time(conn, f"member:{project_id}:{user_id}")
            changed = await conn.execute(
                update(members)
                .where(members.c.project_id == project_id, members.c.user_id == user_id)
                .values(role=role)
            )
            if not changed.rowcount:
                await conn.execute(
                    insert(members).values(project_id=project_id, user_id=user_id, role=role)
                )

    async def remove_member(self, project_id: int, user_id: int) -> bool:
        async with self._write() as conn:
            result = await conn.execute(
                delete(members).where(
                    members.c.project_id == project_id, members.c.user_id == user_id
                )
            )
            return bool(result.rowcount)

    async def members(self, project_id: int) -> list[MemberRecord]:
        query = (
            select(projects.c.name, users.c.name, members.c.role)
            .join(projects, projects.c.id == members.c.project_id)
            .join(users, users.c.id == members.c.user_id)
            .where(members.c.project_id == project_id)
            .order_by(users.c.name)
        )
        async with self._read() as conn:
            return [MemberRecord(*row) for row in await conn.execute(query)]

    async def roles(self, user_id: int) -> dict[int, str]:
        """The user's role in each project where it has one, by project id."""
        query = select(members.c.project_id, members.c.role).where(members.c.user_id == user_id)
        async with self._read() as conn:
            return {project_id: role for project_id, role in await conn.execute(query)}

    # Robots

    async def create_robot(
        self,
        name: str,
        secret_hash: str,
        description: str,
        expires_at: float | None,
        grants: Sequence[NewGrant],
    ) -> RobotRecord:
        now = time.time()
        try:
            async with self._write() as conn:
                result = await conn.execute(
                    insert(robots)
                    .values(
                        name=name,
                        secret_hash=secret_hash,
                        description=description,
                        expires_at=expires_at,
                        created_at=now,
                    )
                    .returning(robots.c.id)
                )
                await self._replace_grants(conn, result.scalar_one(), grants)
        except IntegrityError as error:
            raise AlreadyExists(name) from error
        robot = await self.get_robot(name)
        assert robot is not None
        return robot

    @classmethod
    async def _replace_grants(cls, conn: Writer, robot_id: int, grants: Sequence[NewGrant]) -> None:
        await cls._one_writer_at_a_time(conn, f"robot_grants:{robot_id}")
        await conn.execute(delete(robot_grants).where(robot_grants.c.robot_id == robot_id))
        if grants:
            await conn.execute(
                insert(robot_grants),
                [
                    {
                        "robot_id": robot_id,
                        "project_id": grant.project_id,
                        "repository_id": grant.repository_id,
                        "actions": ",".join(grant.actions),
                    }
                    for grant in grants
                ],
            )

    async def set_grants(self, name: str, grants: Sequence[NewGrant]) -> bool:
        async with self._write() as conn:
            robot_id = (
                await conn.execute(select(robots.c.id).where(robots.c.name == name))
            ).scalar_one_or_none()
            if robot_id is None:
                return False
            await self._replace_grants(conn, robot_id, grants)
            return True

    async def _robots(self, conn: Reader, name: str | None) -> list[RobotRecord]:
        query = select(robots).order_by(robots.c.name)
        grant_query = _GRANT_QUERY
        if name is not None:
            query = query.where(robots.c.name == name)
            grant_query = grant_query.join(robots, robots.c.id == robot_grants.c.robot_id).where(
                robots.c.name == name
            )
        grants: dict[int, list[GrantRecord]] = {}
        for robot_id, project_id, project, repository_id, repository, actions in await conn.execute(
            grant_query
        ):
            grants.setdefault(robot_id, []).append(
                GrantRecord(
                    project_id,
                    project,
                    repository_id,
                    repository,
                    tuple(a for a in actions.split(",") if a),
                )
            )
        return [
            RobotRecord(**row._mapping, grants=tuple(grants.get(row.id, ())))
            for row in await conn.execute(query)
        ]

    async def get_robot(self, name: str) -> RobotRecord | None:
        async with self._read() as conn:
            found = await self._robots(conn, name)
        return found[0] if found else None

    async def list_robots(self) -> list[RobotRecord]:
        async with self._read() as conn:
            return await self._robots(conn, None)

    async def update_robot(self, name: str, **values: Any) -> bool:
        """Change `secret_hash`, `disabled`, `expires_at` or `description`; a new secret or a
        disabled robot ends its refresh tokens."""
        async with self._write() as conn:
            result = await conn.execute(
                update(robots).where(robots.c.name == name).values(**values)
            )
            if result.rowcount and ("secret_hash" in values or values.get("disabled")):
                robot_id = select(robots.c.id).where(robots.c.name == name).scalar_subquery()
                await conn.execute(
                    delete(refresh_tokens).where(refresh_tokens.c.robot_id == robot_id)
                )
            return bool(result.rowcount)

    async def delete_robot(self, name: str) -> bool:
        async with self._write() as conn:
            result = await conn.execute(delete(robots).where(robots.c.name == name))
            return bool(result.rowcount)

    async def record_robot_use(self, robot_id: int, when: float) -> None:
        async with self._write() as conn:
            await conn.execute(
                update(robots).where(robots.c.id == robot_id).values(last_used_at=when)
            )

    async def subject_of(self, kind: str, principal_id: int) -> str | None:
        """The token subject of a user or robot by id: its name, or `sa$<name>`."""
        table, prefix = (users, "") if kind == "user" else (robots, "sa$")
        async with self._read() as conn:
            name = (
                await conn.execute(select(table.c.name).where(table.c.id == principal_id))
            ).scalar_one_or_none()
        return None if name is None else prefix + name

    # Refresh tokens

    async def add_refresh_token(
        self, token_hash: str, service: str, user_id: int | None, robot_id: int | None
    ) -> None:
        async with self._write() as conn:
            await conn.execute(
                insert(refresh_tokens).values(
                    token_hash=token_hash,
                    service=service,
                    user_id=user_id,
                    robot_id=robot_id,
                    created_at=time.time(),
                )
            )

    async def find_refresh_token(self, token_hash: str) -> RefreshTokenRecord | None:
        query = select(
            refresh_tokens.c.service, refresh_tokens.c.user_id, refresh_tokens.c.robot_id
        )
        async with self._read() as conn:
            row = (
                await conn.execute(query.where(refresh_tokens.c.token_hash == token_hash))
            ).first()
        return RefreshTokenRecord(*row) if row else None

    # Token signing keys

    async def signing_key(self) -> str | None:
        """The PEM of the key every process signs with: the oldest stored."""
        async with self._read() as conn:
            pem = (await conn.execute(_OLDEST_KEY)).scalar_one_or_none()
        return None if pem is None else str(pem)

    async def add_signing_key(self, kid: str, pem: str) -> str:
        """Store a new key unless one exists; the key to sign with, whichever won."""
        async with self._write() as conn:
            await self._one_writer_at_a_time(conn, "signing_key")
            if (await conn.execute(_OLDEST_KEY)).first() is None:
                await conn.execute(
                    insert(signing_keys).values(
                        kid=kid, private_key_pem=pem, created_at=time.time()
                    )
                )
            return str((await conn.execute(_OLDEST_KEY)).scalar_one())

    # Failed sign-ins

    async def failures(self, key: str, since: float) -> tuple[int, float]:
        """Failures recorded for `key` in a window that started after `since`, and its start."""
        query = select(login_failures.c.failures, login_failures.c.window_start).where(
            login_failures.c.key == key, login_failures.c.window_start > since
        )
        async with self._read() as conn:
            row = (await conn.execute(query)).first()
        return (row[0], row[1]) if row else (0, 0.0)

    async def record_failure(self, key: str, now: float, since: float) -> None:
        """Count a failure in the key's window, or start a new window at `now`."""
        async with self._write() as conn:
            await self._one_writer_at_a_time(conn, f"login_failures:{key}")
            counted = await conn.execute(
                update(login_failures)
                .where(login_failures.c.key == key, login_failures.c.window_start > since)
                .values(failures=login_failures.c.failures + 1)
            )
            if counted.rowcount:
                return
            await conn.execute(delete(login_failures).where(login_failures.c.key == key))
            await conn.execute(insert(login_failures).values(key=key, window_start=now, failures=1))

    async def prune_failures(self, before: float) -> int:
        """Forget the windows that started before `before`: they no longer count."""
        async with self._write() as conn:
            result = await conn.execute(
                delete(login_failures).where(login_failures.c.window_start <= before)
            )
            return int(result.rowcount)

    async def clear_failures(self, key: str) -> None:
        async with self._write() as conn:
            await conn.execute(delete(login_failures).where(login_failures.c.key == key))
