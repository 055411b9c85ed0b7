"""Every error under /v2/ leaves as the OCI error JSON with its status and code."""

from __future__ import annotations

import json
import logging

from aiohttp import web
from aiohttp.typedefs import Handler

from cargohold.auth.service import AccessDenied, TooManyAttempts
from cargohold.http.auth import denied, throttled
from cargohold.oci.errors import ErrorCode, RegistryError, error_body

log = logging.getLogger(__name__)


def error_response(error: RegistryError) -> web.Response:
    return web.Response(
        status=error.status,
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
    except Exception:
        log.exception("unexpected error on %s %s", request.method, request.path)
        body = {"errors": [{"code": "UNKNOWN", "message": "internal server error"}]}
        return web.Response(status=500, text=json.dumps(body), content_type="application/json")
