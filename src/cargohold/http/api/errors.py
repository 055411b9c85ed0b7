"""Every error of the management API leaves as `{"message": "..."}` with its status."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from aiohttp import web
from aiohttp.typedefs import Handler
from pydantic import ValidationError

from cargohold.auth.service import AccessDenied, TooManyAttempts
from cargohold.db.engine import is_unavailable
from cargohold.http.errors import (
    DATABASE_RETRY_AFTER,
    DATABASE_UNAVAILABLE,
    log_database_unavailable,
)
from cargohold.registry.errors import ManagementError
from cargohold.storage import StoreRefused, StoreUnavailable

log = logging.getLogger(__name__)

CHALLENGE = 'Basic realm="cargohold"'
MAX_LISTED_PROBLEMS = 5


class ApiError(Exception):
    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.headers = dict(headers or {})


def unauthorized(message: str) -> ApiError:
    return ApiError(401, message, {"WWW-Authenticate": CHALLENGE})


def forbidden(message: str) -> ApiError:
    return ApiError(403, message)


def error_response(
    status: int, message: str, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.json_response({"message": message}, status=status, headers=headers)


def describe_validation_error(error: ValidationError) -> str:
    """One line naming each problem of a request body and where it is."""
    problems = error.errors(include_url=False, include_context=False, include_input=False)
    if any(problem["type"] == "json_invalid" for problem in problems):
        return f"the request body is not valid JSON: {problems[0]['msg']}"
    described = []
    for problem in problems[:MAX_LISTED_PROBLEMS]:
        location = ".".join(str(part) for part in problem["loc"])
        message = "unknown field" if problem["type"] == "extra_forbidden" else problem["msg"]
        described.append(f"{location}: {message}" if location else message)
    more = len(problems) - MAX_LISTED_PROBLEMS
    if more > 0:
        described.append(f"and {more} more")
    return "invalid request body: " + "; ".join(described)


def _from_http_exception(request: web.Request, error: web.HTTPException) -> web.Response:
    headers: dict[str, str] = {}
    if isinstance(error, web.HTTPMethodNotAllowed):
        headers["Allow"] = ", ".join(sorted(error.allowed_methods))
        message = f"{request.method} is not supported on {request.path}"
    elif error.status == 404:
        message = f"no API endpoint at {request.path}; see /api/v1/openapi.json"
    else:
        message = error.reason
    return error_response(error.status, message, headers)


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as error:
        return error_response(error.status, str(error), error.headers)
    except ManagementError as error:
        return error_response(error.status, str(error))
    except (StoreUnavailable, StoreRefused) as error:
        return error_response(error.status, error.message, error.headers)
    except AccessDenied as error:
        if error.reason == "forbidden":
            return error_response(403, str(error))
        return error_response(401, str(error), {"WWW-Authenticate": CHALLENGE})
    except TooManyAttempts as error:
        return error_response(429, str(error), {"Retry-After": str(error.retry_after)})
    except web.HTTPException as error:
        if error.status < 400:
            raise
        return _from_http_exception(request, error)
    except (ConnectionError, web.RequestPayloadError):
        raise
    except Exception as error:
        if is_unavailable(error):
            log_database_unavailable(request, error)
            return error_response(503, DATABASE_UNAVAILABLE, {"Retry-After": DATABASE_RETRY_AFTER})
        log.exception("unexpected error on %s %s", request.method, request.path)
        return error_response(500, "internal server error")
