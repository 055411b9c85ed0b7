"""Every error under /v2/ leaves as the OCI error JSON with its status and code."""

from __future__ import annotations

import json
import logging
from http import HTTPStatus

from aiohttp import web
from aiohttp.typedefs import Handler

from cargohold.auth.service import AccessDenied, TooManyAttempts
from cargohold.db.engine import is_unavailable
from cargohold.http.auth import denied, throttled
from cargohold.oci.errors import ErrorCode, RegistryError, error_body

log = logging.getLogger(__name__)

MAX_REASON = 300
# What clients are told to wait while the metadata database is out of reach.
DATABASE_RETRY_AFTER = "5"
DATABASE_UNAVAILABLE = "the metadata database is unavailable; try again shortly"


def log_database_unavailable(request: web.Request, error: Exception) -> None:
    log.warning("%s %s: %s: %s", request.method, request.path, DATABASE_UNAVAILABLE, error)


def status_reason(error: RegistryError) -> str | None:
    """The reason phrase of a 5xx answer: its standard phrase and the error's message.

    docker, podman, skopeo, containerd and helm 3 show only the status line of a 5xx answer:
    they never read its body (Go's distribution client parses error bodies of 4xx answers
    only), and a HEAD has none. So a proxy's "not cached and the upstream failed" must be in
    the status line to reach the user. One line of printable ASCII, bounded."""
    if error.status < 500:
        return None
    try:
        phrase = HTTPStatus(error.status).phrase
    except ValueError:
        phrase = "Error"
    message = "".join(c if " " <= c <= "~" else "?" for c in " ".join(error.message.split()))
    reason = f"{phrase}: {message}" if message else phrase
    return reason if len(reason) <= MAX_REASON else reason[: MAX_REASON - 3] + "..."


def error_response(error: RegistryError) -> web.Response:
    return web.Response(
        status=error.status,
        reason=status_reason(error),
        body=error_body(error),
        content_type="application/json",
        headers=error.headers,
    )


def _from_http_exception(request: web.Request, error: web.HTTPException) -> RegistryError:
    if error.status == 405:
        return RegistryError(
            ErrorCode.UNSUPPORTED,
            f"{request.method} is not supported on {request.path}",
            status=405,
        )
    if error.status == 404:
        return RegistryError(ErrorCode.NAME_UNKNOWN, f"no registry endpoint at {request.path}")
    return RegistryError(ErrorCode.UNSUPPORTED, error.reason, status=error.status)


@web.middleware
async def registry_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except RegistryError as error:
        return error_response(error)
    except AccessDenied as error:
        return error_response(denied(request, error))
    except TooManyAttempts as error:
        return error_response(throttled(error))
    except web.HTTPException as error:
        if not request.path.startswith("/v2/") or error.status < 400:
            raise
        return error_response(_from_http_exception(request, error))
    except (ConnectionError, web.RequestPayloadError):
        raise
    except Exception as error:
        if is_unavailable(error):
            log_database_unavailable(request, error)
            unavailable = RegistryError(
                ErrorCode.UNAVAILABLE,
                DATABASE_UNAVAILABLE,
                headers={"Retry-After": DATABASE_RETRY_AFTER},
            )
            return error_response(unavailable)
        log.exception("unexpected error on %s %s", request.method, request.path)
        body = {"errors": [{"code": "UNKNOWN", "message": "internal server error"}]}
        return web.Response(status=500, text=json.dumps(body), content_type="application/json")
