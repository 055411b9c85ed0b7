"""The management API's route table, body parsing and error wording (no server)."""

from __future__ import annotations

import typing

import pytest
from pydantic import BaseModel

from cargohold.auth.principals import Principal, Standing
from cargohold.http.api import ROUTES
from cargohold.http.api.models import ProjectCreate, RepositoryCreate, RobotCreate
from cargohold.http.api.routing import (
    Access,
    Call,
    Route,
    check_access,
    check_table,
    parse_body,
    route,
)
from cargohold.registry.errors import InvalidInput

ADMIN = Standing(Principal("user", 1, "admin", is_admin=True), active=True)
USER = Standing(Principal("user", 2, "alice"), active=True)
ROBOT = Standing(Principal("robot", 3, "sa$ci"), active=True)

# The external contract: every one of these, and nothing else.
CONTRACT = {
    ("GET", "/projects"),
    ("POST", "/projects"),
    ("GET", "/projects/{project}"),
    ("PATCH", "/projects/{project}"),
    ("GET", "/projects/{project}/members"),
    ("PUT", "/projects/{project}/members/{user}"),
    ("DELETE", "/projects/{project}/members/{user}"),
    ("GET", "/repos"),
    ("POST", "/repos"),
    ("GET", "/repos/{project}/{name}"),
    ("PATCH", "/repos/{project}/{name}"),
    ("GET", "/repos/{project}/{name}/tags"),
    ("POST", "/repos/{project}/{name}/cleanup"),
    ("GET", "/users"),
    ("POST", "/users"),
    ("GET", "/users/{name}"),
    ("PATCH", "/users/{name}"),
    ("DELETE", "/users/{name}"),
    ("GET", "/robots"),
    ("POST", "/robots"),
    ("GET", "/robots/{name}"),
    ("PATCH", "/robots/{name}"),
    ("DELETE", "/robots/{name}"),
    ("POST", "/robots/{name}/key"),
    ("POST", "/gc"),
    ("GET", "/openapi.json"),
}


def test_the_table_holds_the_contract() -> None:
    assert {(entry.method, entry.path) for entry in ROUTES} == CONTRACT
    check_table(ROUTES)


@pytest.mark.parametrize("entry", ROUTES, ids=lambda entry: entry.operation_id)
def test_each_handler_takes_and_returns_what_its_route_declares(entry: Route) -> None:
    hints = typing.get_type_hints(entry.handler)
    assert hints["return"] == (type(None) if entry.response is None else entry.response)
    assert hints.get("body") is entry.body
    assert entry.status == (204 if entry.response is None else entry.status)


def test_post_routes_that_create_answer_201() -> None:
    created = {(e.method, e.path) for e in ROUTES if e.status == 201}
    assert created == {("POST", "/projects"), ("POST", "/repos"), ("POST", "/users")} | {
        ("POST", "/robots")
    }


def test_a_route_declared_twice_is_refused() -> None:
    async def one(call: Call) -> None:
        return None

    async def two(call: Call) -> None:
        return None

    first = route("GET", "/things/{a}", one, summary="", response=None, access=Access.ADMIN)
    same_shape = route("GET", "/things/{b}", two, summary="", response=None, access=Access.ADMIN)
    with pytest.raises(ValueError, match="declared twice"):
        check_table([first, same_shape])
    same_operation = route("PUT", "/other", one, summary="", response=None, access=Access.ADMIN)
    with pytest.raises(ValueError, match="declared twice"):
        check_table([first, same_operation])


def test_error_statuses_follow_from_the_declaration() -> None:
    by_id = {entry.operation_id: entry for entry in ROUTES}
    assert by_id["get_openapi"].error_statuses == []
    assert by_id["list_projects"].error_statuses == [401, 429]
    assert by_id["create_project"].error_statuses == [400, 401, 403, 409, 429]
    assert by_id["update_repository"].error_statuses == [400, 401, 403, 404, 409, 429]
    assert by_id["delete_user"].error_statuses == [401, 403, 404, 429]
    assert by_id["delete_user"].parameters == ["name"]
    assert by_id["get_repository"].parameters == ["project", "name"]


def test_access_levels() -> None:
    check_access(Access.ADMIN, ADMIN)
    check_access(Access.USER, USER)
    check_access(Access.SIGNED_IN, ROBOT)
    for access, standing in ((Access.ADMIN, USER), (Access.ADMIN, ROBOT), (Access.USER, ROBOT)):
        with pytest.raises(Exception) as refused:
            check_access(access, standing)
        assert getattr(refused.value, "status", None) == 403


def test_parse_body_gives_the_model() -> None:
    body = parse_body(b'{"name": "alpha", "anonymous_read": true}', ProjectCreate)
    assert body == ProjectCreate(name="alpha", anonymous_read=True)
    assert parse_body(b'{"name": "alpha"}', ProjectCreate).anonymous_read is False


@pytest.mark.parametrize(
    ("raw", "model", "message"),
    [
        (b"", ProjectCreate, "a JSON request body is required"),
        (b"  \n", ProjectCreate, "a JSON request body is required"),
        (b"{nope", ProjectCreate, "the request body is not valid JSON"),
        (b"[]", ProjectCreate, "invalid request body: Input should be an object"),
        (b"{}", ProjectCreate, "invalid request body: name: Field required"),
        (b'{"name": "a", "colour": 1}', ProjectCreate, "colour: unknown field"),
        (b'{"name": "a", "anonymous_read": "yes"}', ProjectCreate, "anonymous_read: Input should"),
        # Strict: no "1" for 1, no 1 for true.
        (b'{"name": "a", "anonymous_read": 1}', ProjectCreate, "anonymous_read: Input should"),
        (b'{"project": "p", "name": "r", "format": "helm"}', RepositoryCreate, "format: Input"),
        (b'{"project": "p", "name": "r", "cache_ttl": -1}', RepositoryCreate, "cache_ttl"),
        (b'{"project": "p", "name": "r", "cache_ttl": "60"}', RepositoryCreate, "cache_ttl"),
        (
            b'{"name": "r", "grants": [{"project": "p", "actions": []}]}',
            RobotCreate,
            "grants.0.actions: List should have at least 1 item",
        ),
        (
            b'{"name": "r", "grants": [{"project": "p", "actions": ["pull", "admin"]}]}',
            RobotCreate,
            "grants.0.actions.1: Input should be 'pull', 'push' or 'delete'",
        ),
        (b'{"name": "r", "expires_in_seconds": 0}', RobotCreate, "expires_in_seconds"),
    ],
)
def test_parse_body_refuses_with_a_message_naming_the_problem(
    raw: bytes, model: type[BaseModel], message: str
) -> None:
    with pytest.raises(InvalidInput) as refused:
        parse_body(raw, model)
    assert message in str(refused.value)


def test_many_problems_are_summed_up() -> None:
    raw = b'{"a": 1, "b": 2, "c": 3, "d": 4, "e": 5, "f": 6, "g": 7}'
    with pytest.raises(InvalidInput) as refused:
        parse_body(raw, ProjectCreate)
    assert str(refused.value).endswith("and 3 more")
