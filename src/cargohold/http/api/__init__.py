"""The management API under /api/v1 (JSON), with the OpenAPI document it serves.

Every route is declared once, in the route tables of `projects`, `accounts` and
`maintenance` (and the document's own below); the handlers and the OpenAPI document are
made from them.
"""

from __future__ import annotations

import functools
from typing import Any

from aiohttp import web

from cargohold import __version__
from cargohold.http.api import accounts, maintenance, projects
from cargohold.http.api.errors import json_errors
from cargohold.http.api.openapi import openapi_document
from cargohold.http.api.routing import Access, Call, Route, aiohttp_handler, check_table, route

PREFIX = "/api/v1"
TITLE = "Cargohold management API"


async def get_openapi(call: Call) -> dict[str, Any]:
    return document()


ROUTES: tuple[Route, ...] = (
    *projects.ROUTES,
    *accounts.ROUTES,
    *maintenance.ROUTES,
    route(
        "GET",
        "/openapi.json",
        get_openapi,
        summary="This API's OpenAPI 3.1 document",
        response=dict[str, Any],
        access=Access.PUBLIC,
    ),
)


@functools.cache
def document() -> dict[str, Any]:
    return openapi_document(ROUTES, prefix=PREFIX, title=TITLE, version=__version__)


def add_routes(app: web.Application) -> None:
    """Mount the API as a sub-application, so its errors are JSON of its own kind."""
    check_table(ROUTES)
    api = web.Application(middlewares=[json_errors])
    for entry in ROUTES:
        api.router.add_route(entry.method, entry.path, aiohttp_handler(entry))
    app.add_subapp(PREFIX, api)
