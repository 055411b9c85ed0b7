"""Liveness and readiness for load balancers and orchestrators."""

from __future__ import annotations

import logging

from aiohttp import web

from cargohold.http.context import services
from cargohold.http.errors import DATABASE_RETRY_AFTER
from cargohold.storage import StoreRefused

log = logging.getLogger(__name__)


async def healthz(request: web.Request) -> web.Response:
    """The process answers."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """The process can serve: its metadata database and its blob store answer."""
    checks = (
        ("metadata database", services(request).metadata.ping),
        ("blob store", services(request).store.ping),
    )
    for what, ping in checks:
        try:
            await ping()
        except StoreRefused as error:
            # The store's answer (its log line says for which bucket, at which endpoint); no
            # Retry-After: its settings must change.
            return web.json_response(
                {"status": "unavailable", "reason": f"{what} refused: {error.answer}"},
                status=503,
            )
        except Exception as error:
            log.warning("not ready: the %s does not answer: %s", what, error)
            return web.json_response(
                {"status": "unavailable", "reason": f"{what} does not answer"},
                status=503,
                headers={"Retry-After": DATABASE_RETRY_AFTER},
            )
    return web.json_response({"status": "ok"})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
