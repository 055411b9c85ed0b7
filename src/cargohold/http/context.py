"""What handlers reach through the application: the services, built once at start."""

from __future__ import annotations

from aiohttp import web

from cargohold.registry.services import Services

SERVICES = web.AppKey("services", Services)


def services(request: web.Request) -> Services:
    return request.app[SERVICES]
