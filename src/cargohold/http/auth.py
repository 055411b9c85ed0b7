"""Who may do what under /v2/: each handler names the actions it needs, and this module
authenticates the caller, resolves the name and checks the permission, or answers with the
challenge or error the token-auth spec prescribes."""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

from aiohttp import web

from cargohold.auth.principals import ANONYMOUS
from cargohold.auth.service import AccessDenied, Caller, TooManyAttempts, challenge_actions
from cargohold.http.client_address import client_address
from cargohold.http.context import services
from cargohold.oci.auth import Scope, bearer_challenge
from cargohold.oci.errors import ErrorCode, RegistryError
from cargohold.registry.router import Target


def realm(request: web.Request) -> str:
    registry = services(request)
    public = registry.settings.public_url
    if public is None:
        base = f"{request.scheme}://{request.host}"
    elif registry.router.is_bound_host(request.host):
        # Scope names resolve to a host's bound repository only when asked of that host: a
        # token asked of the public URL would grant nothing there.
        parts = urlsplit(public)
        base = f"{parts.scheme}://{request.host}{parts.path}"
    else:
        base = public
    return base.rstrip("/") + "/v2/token"


def _detail(scopes: Iterable[Scope]) -> list[dict[str, str]]:
    return [
        {"Type": scope.type, "Name": scope.name, "Action": action}
        for scope in scopes
        for action in scope.actions
    ]


def denied(request: web.Request, error: AccessDenied) -> RegistryError:
    """The answer to a refused request: 403 for a known caller without permission, else 401
    with a Bearer challenge naming what to ask the token endpoint for."""
    if error.reason == "forbidden":
        return RegistryError(ErrorCode.DENIED, str(error), detail=_detail(error.scopes))
    challenge = bearer_challenge(
        realm(request),
        services(request).auth.service,
        error.scopes,
        error.reason if error.reason in ("invalid_token", "insufficient_scope") else None,
    )
    return RegistryError(
        ErrorCode.UNAUTHORIZED,
        str(error),
        detail=_detail(error.scopes) or None,
        headers={"WWW-Authenticate": challenge},
    )


def throttled(error: TooManyAttempts) -> RegistryError:
    return RegistryError(
        ErrorCode.TOOMANYREQUESTS, str(error), headers={"Retry-After": str(error.retry_after)}
    )


async def caller(request: web.Request, *, allow_expired: bool = False) -> Caller:
    return await services(request).auth.authenticate(
        request.headers.get("Authorization"), client_address(request), allow_expired=allow_expired
    )


async def authorized(
    request: web.Request, needed: Iterable[str], *, upload_id: str | None = None
) -> tuple[Target, Caller]:
    """The request's target once the caller may do `needed` there.

    On an upload session's URL an expired token is still honoured when its subject opened
    the session, so that a long push outlives its token.
    """
    registry = services(request)
    needed = tuple(needed)
    name = request.match_info["name"]
    scopes = [Scope("repository", name, challenge_actions(needed))]
    try:
        who = await caller(request, allow_expired=upload_id is not None)
    except AccessDenied as error:
        raise AccessDenied(error.reason, str(error), error.scopes or scopes) from None
    try:
        target = await registry.router.resolve(name, request.host)
    except RegistryError as error:
        if error.code is ErrorCode.NAME_UNKNOWN and who.principal is ANONYMOUS:
            # Say nothing of which names exist to who has not signed in, with an anonymous
            # token or without: the answer a name that exists would get.
            if who.claims is None:
                raise AccessDenied("unauthenticated", "authentication required", scopes) from None
            wanted = ",".join(sorted(needed))
            raise AccessDenied(
                "insufficient_scope", f"the token does not grant {wanted} on {name}", scopes
            ) from None
        raise
    if who.expired:
        assert upload_id is not None
        if await registry.uploads.owner(target, upload_id) != who.principal.subject:
            raise AccessDenied("invalid_token", "the token has expired", scopes)
    await registry.auth.authorize(who, target, needed)
    return target, who
