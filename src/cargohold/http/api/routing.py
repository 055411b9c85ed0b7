"""The route table of the management API: each route is declared once, with its method,
path, who may call it, request and response models and summary; the aiohttp handlers and
the OpenAPI document are both made from it."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, TypeAdapter, ValidationError

from cargohold.auth.management import is_system_admin
from cargohold.auth.principals import ANONYMOUS_STANDING, Standing
from cargohold.auth.service import AccessDenied
from cargohold.http.api.errors import describe_validation_error, forbidden, unauthorized
from cargohold.http.context import SERVICES
from cargohold.registry.errors import InvalidInput
from cargohold.registry.services import Services

B = TypeVar("B", bound=BaseModel)
R = TypeVar("R")

PATH_PARAMETER = re.compile(r"\{([^}:]+)\}")


class Access(Enum):
    """Who may call a route at all; handlers check anything finer."""

    PUBLIC = "anyone, without credentials"
    SIGNED_IN = "any signed-in user or robot"
    USER = "any signed-in user (not robots)"
    ADMIN = "system administrators"


@dataclass(frozen=True, slots=True)
class Call:
    """An API request, as handlers see it: the caller's live standing, the services."""

    request: web.Request
    services: Services
    standing: Standing

    def param(self, name: str) -> str:
        return self.request.match_info[name]


Endpoint = Callable[[Call, Any], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    path: str
    summary: str
    # The handler as declared, and the same made uniform: (call, parsed body or None).
    handler: Callable[..., Awaitable[Any]]
    endpoint: Endpoint
    access: Access
    # The request body's model; None for a route without a body.
    body: type[BaseModel] | None
    # The response body's type; None for 204 No Content.
    response: Any
    status: int
    # Statuses this route answers besides the ones every route may (see `error_statuses`).
    errors: tuple[int, ...]

    @property
    def operation_id(self) -> str:
        return self.handler.__name__

    @property
    def parameters(self) -> list[str]:
        return PATH_PARAMETER.findall(self.path)

    @property
    def error_statuses(self) -> list[int]:
        statuses = set(self.errors)
        if self.body is not None:
            statuses.add(400)
        if self.access is not Access.PUBLIC:
            statuses |= {401, 429}
        if self.access in (Access.USER, Access.ADMIN):
            statuses.add(403)
        if self.parameters:
            statuses.add(404)
        return sorted(statuses)


def route(
    method: str,
    path: str,
    handler: Callable[[Call], Awaitable[R]],
    *,
    summary: str,
    response: Any,
    access: Access,
    status: int = 200,
    errors: tuple[int, ...] = (),
) -> Route:
    """A route without a request body; `response` None answers 204."""

    async def endpoint(call: Call, body: object) -> R:
        return await handler(call)

    return Route(
        method,
        path,
        summary,
        handler,
        endpoint,
        access,
        None,
        response,
        204 if response is None else status,
        errors,
    )


def route_with_body(
    method: str,
    path: str,
    handler: Callable[[Call, B], Awaitable[R]],
    *,
    body: type[B],
    summary: str,
    response: Any,
    access: Access,
    status: int = 200,
    errors: tuple[int, ...] = (),
) -> Route:
    """A route whose JSON body is validated by `body` before `handler` sees it."""

    async def endpoint(call: Call, parsed: object) -> R:
        assert isinstance(parsed, body)
        return await handler(call, parsed)

    return Route(
        method,
        path,
        summary,
        handler,
        endpoint,
        access,
        body,
        response,
        204 if response is None else status,
        errors,
    )


def parse_body(raw: bytes, model: type[B]) -> B:
    if not raw.strip():
        raise InvalidInput("a JSON request body is required")
    try:
        return model.model_validate_json(raw)
    except ValidationError as error:
        raise InvalidInput(describe_validation_error(error)) from None


async def authenticate(request: web.Request, services: Services) -> Standing:
    """The caller's standing as the database has it now, whatever its token says."""
    try:
        caller = await services.auth.authenticate(
            request.headers.get("Authorization"), request.remote or ""
        )
    except AccessDenied as error:
        raise unauthorized(str(error)) from None
    if caller.principal.kind == "anonymous":
        raise unauthorized(
            "authentication required: send Basic credentials (a user, or a robot `sa$<name>`"
            " with its API key) or a bearer token from /v2/token"
        )
    standing = await services.auth.standing(caller.principal.subject)
    if standing is None or not standing.active:
        raise unauthorized("the account is disabled, expired or gone")
    return standing


def check_access(access: Access, standing: Standing) -> None:
    if access is Access.ADMIN and not is_system_admin(standing):
        raise forbidden("only system administrators may do this")
    if access is Access.USER and standing.principal.kind != "user":
        raise forbidden("robot accounts may only read projects and repositories")


def aiohttp_handler(route: Route) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    adapter: TypeAdapter[Any] | None = (
        None if route.response is None else TypeAdapter(route.response)
    )

    async def handle(request: web.Request) -> web.StreamResponse:
        services = request.config_dict[SERVICES]
        if route.access is Access.PUBLIC:
            standing = ANONYMOUS_STANDING
        else:
            standing = await authenticate(request, services)
            check_access(route.access, standing)
        body = None if route.body is None else parse_body(await request.read(), route.body)
        result = await route.endpoint(Call(request, services, standing), body)
        if adapter is None:
            return web.Response(status=204)
        return web.Response(
            status=route.status,
            body=adapter.dump_json(result),
            content_type="application/json",
            charset="utf-8",
        )

    handle.__name__ = route.operation_id
    return handle


def check_table(routes: Sequence[Route]) -> None:
    """Refuse a table that declares a route twice or reuses an operation id."""
    seen: set[tuple[str, str]] = set()
    operations: set[str] = set()
    for entry in routes:
        key = (entry.method, PATH_PARAMETER.sub("{}", entry.path))
        if key in seen or entry.operation_id in operations:
            raise ValueError(f"route {entry.method} {entry.path} is declared twice")
        seen.add(key)
        operations.add(entry.operation_id)
