"""Users and robot accounts.

System administrators manage both; any other user may see its own account and change its
own password.
"""

from __future__ import annotations

from cargohold.auth.management import is_system_admin
from cargohold.http.api.errors import forbidden
from cargohold.http.api.models import (
    CreatedUser,
    Robot,
    RobotCreate,
    RobotUpdate,
    RobotWithKey,
    User,
    UserCreate,
    UserUpdate,
)
from cargohold.http.api.routing import Access, Call, Route, route, route_with_body

# Users


def _own_account_or_admin(call: Call, name: str) -> None:
    if not is_system_admin(call.standing) and call.standing.principal.subject != name:
        raise forbidden("only system administrators may see or change other users")


async def list_users(call: Call) -> list[User]:
    return [User.of(user) for user in await call.services.accounts_admin.list_users()]


async def create_user(call: Call, body: UserCreate) -> CreatedUser:
    user, generated = await call.services.accounts_admin.create_user(
        body.name, body.password, is_admin=body.is_admin
    )
    return CreatedUser.created(user, generated)


async def get_user(call: Call) -> User:
    name = call.param("name")
    _own_account_or_admin(call, name)
    return User.of(await call.services.accounts_admin.get_user(name))


async def update_user(call: Call, body: UserUpdate) -> User:
    name = call.param("name")
    _own_account_or_admin(call, name)
    if not is_system_admin(call.standing) and (
        body.is_admin is not None or body.disabled is not None
    ):
        raise forbidden("only system administrators may change is_admin or disabled")
    user = await call.services.accounts_admin.update_user(
        name, password=body.password, is_admin=body.is_admin, disabled=body.disabled
    )
    return User.of(user)


async def delete_user(call: Call) -> None:
    await call.services.accounts_admin.delete_user(call.param("name"))


# Robots


async def list_robots(call: Call) -> list[Robot]:
    return [Robot.of(robot) for robot in await call.services.accounts_admin.list_robots()]


async def create_robot(call: Call, body: RobotCreate) -> RobotWithKey:
    robot, key = await call.services.accounts_admin.create_robot(
        body.name,
        body.grant_specs(),
        expires_in_seconds=body.expires_in_seconds,
        description=body.description,
    )
    return RobotWithKey.with_key(robot, key)


async def get_robot(call: Call) -> Robot:
    return Robot.of(await call.services.accounts_admin.get_robot(call.param("name")))


async def update_robot(call: Call, body: RobotUpdate) -> Robot:
    robot = await call.services.accounts_admin.update_robot(
        call.param("name"),
        disabled=body.disabled,
        grants=None if body.grants is None else [grant.spec() for grant in body.grants],
        description=body.description,
    )
    return Robot.of(robot)


async def delete_robot(call: Call) -> None:
    await call.services.accounts_admin.delete_robot(call.param("name"))


async def rotate_robot_key(call: Call) -> RobotWithKey:
    robot, key = await call.services.accounts_admin.rotate_robot_key(call.param("name"))
    return RobotWithKey.with_key(robot, key)


ROUTES: tuple[Route, ...] = (
    route(
        "GET",
        "/users",
        list_users,
        summary="List users",
        response=list[User],
        access=Access.ADMIN,
    ),
    route_with_body(
        "POST",
        "/users",
        create_user,
        body=UserCreate,
        summary="Create a user; a password is generated and returned once when none is given",
        response=CreatedUser,
        status=201,
        access=Access.ADMIN,
        errors=(409,),
    ),
    route(
        "GET",
        "/users/{name}",
        get_user,
        summary="Show a user (administrators, or the user itself)",
        response=User,
        access=Access.USER,
    ),
    route_with_body(
        "PATCH",
        "/users/{name}",
        update_user,
        body=UserUpdate,
        summary="Change a user (administrators; a user may change its own password)",
        response=User,
        access=Access.USER,
    ),
    route(
        "DELETE",
        "/users/{name}",
        delete_user,
        summary="Delete a user",
        response=None,
        access=Access.ADMIN,
    ),
    route(
        "GET",
        "/robots",
        list_robots,
        summary="List robot accounts",
        response=list[Robot],
        access=Access.ADMIN,
    ),
    route_with_body(
        "POST",
        "/robots",
        create_robot,
        body=RobotCreate,
        summary="Create a robot account; its API key is returned once",
        response=RobotWithKey,
        status=201,
        access=Access.ADMIN,
        errors=(404, 409),
    ),
    route(
        "GET",
        "/robots/{name}",
        get_robot,
        summary="Show a robot account (`name` with or without `sa$`)",
        response=Robot,
        access=Access.ADMIN,
    ),
    route_with_body(
        "PATCH",
        "/robots/{name}",
        update_robot,
        body=RobotUpdate,
        summary="Change a robot account's description, state or grants",
        response=Robot,
        access=Access.ADMIN,
    ),
    route(
        "DELETE",
        "/robots/{name}",
        delete_robot,
        summary="Delete a robot account",
        response=None,
        access=Access.ADMIN,
    ),
    route(
        "POST",
        "/robots/{name}/key",
        rotate_robot_key,
        summary="Give a robot account a new API key, returned once; the old one stops working",
        response=RobotWithKey,
        access=Access.ADMIN,
    ),
)
