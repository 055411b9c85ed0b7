"""Builds the aiohttp application: routes, middlewares, start-up and shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial

from aiohttp import web

from cargohold.config import Settings
from cargohold.http import api, health, token, v2
from cargohold.http.context import SERVICES
from cargohold.http.errors import registry_errors
from cargohold.oci.errors import RegistryError
from cargohold.registry.services import Services, build_services

log = logging.getLogger(__name__)


async def _sweep(services: Services, interval: float) -> None:
    """Housekeeping: stale upload sessions, and failed sign-ins that no longer count."""
    while True:
        try:
            await services.uploads.sweep()
            await services.auth.forget_old_failures()
        except RegistryError as error:
            # The blob store out of reach or refusing: said where it was found, with its cause.
            log.warning("housekeeping failed (%s); trying again later", error.message)
        except Exception:
            log.exception("housekeeping failed; trying again later")
        await asyncio.sleep(interval)


async def _every(interval: float, job: Callable[[], Awaitable[object]], what: str) -> None:
    """A maintenance job on a schedule: every worker wakes up once an interval, and the job's
    lease in the database lets one of them, on one node, run it."""
    while True:
        await asyncio.sleep(interval)
        try:
            await job()
        except Exception:
            log.exception("%s failed; trying again at the next interval", what)


async def _check_blob_store(services: Services) -> None:
    """Say at start when the blob store cannot serve (the store logs what it answered, and
    where). The node starts anyway, as distribution does: /readyz answers 503 meanwhile,
    and it serves as soon as the bucket exists or the credentials are accepted, without a
    restart (new credentials can take a while to reach every region)."""
    try:
        await services.store.ping()
    except Exception as error:
        log.error(
            "the blob store cannot serve: %s; serving anyway, /readyz answers 503 until it can",
            error,
        )


def create_app(settings: Settings) -> web.Application:
    app = web.Application(middlewares=[registry_errors])

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        services = app[SERVICES] = await build_services(settings)
        generated = await services.accounts_admin.ensure_admin(settings.admin_password)
        if generated is not None:
            # Shown this once: only its hash is kept.
            print(f"created user admin with password: {generated}", flush=True)
        await _check_blob_store(services)
        background = [
            asyncio.create_task(_sweep(services, settings.cleanup_interval_seconds)),
            asyncio.create_task(services.pulls.run()),
        ]
        for interval, job, what in [
            (settings.cleanup_policy_interval_seconds, services.cleanup.run_if_due, "cleanup"),
            (settings.gc_interval_seconds, services.gc.run_if_due, "garbage collection"),
        ]:
            if interval:
                scheduled = partial(job, interval)
                background.append(asyncio.create_task(_every(interval, scheduled, what)))
        yield
        for task in background:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await services.close()

    app.cleanup_ctx.append(lifecycle)
    token.add_routes(app)
    v2.add_routes(app)
    health.add_routes(app)
    api.add_routes(app)
    return app
