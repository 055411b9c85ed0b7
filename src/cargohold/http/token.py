"""The token endpoint (`GET /v2/token`, Docker token spec; `POST /v2/token`, its OAuth2 form)
and the JWKS that lets other services verify the tokens."""

from __future__ import annotations

from aiohttp import web

from cargohold.auth.principals import ANONYMOUS, Principal
from cargohold.auth.service import AccessDenied, BadCredentials, TokenGrant
from cargohold.http.client_address import client_address
from cargohold.http.context import services
from cargohold.oci.auth import (
    BasicCredentials,
    MalformedAuthorization,
    parse_authorization,
    parse_scopes,
)
from cargohold.oci.errors import ErrorCode, RegistryError


def _grant_response(grant: TokenGrant) -> web.Response:
    body: dict[str, object] = {
        "token": grant.token.token,
        "access_token": grant.token.token,
        "expires_in": grant.token.expires_in,
        "issued_at": grant.token.issued_at_rfc3339,
    }
    if grant.refresh_token is not None:
        body["refresh_token"] = grant.refresh_token
    return web.json_response(body, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})


def _bad_request(message: str) -> RegistryError:
    return RegistryError(ErrorCode.UNSUPPORTED, message, status=400)


def _check_service(request: web.Request, service: str | None) -> str:
    expected = services(request).auth.service
    if service not in (None, expected):
        raise _bad_request(f"this registry issues tokens for service {expected!r}, not {service!r}")
    return expected


async def _sign_in(request: web.Request, username: str, password: str) -> Principal:
    try:
        return await services(request).auth.login(username, password, client_address(request))
    except BadCredentials as error:
        raise AccessDenied("unauthenticated", str(error)) from None


async def get_token(request: web.Request) -> web.Response:
    query = request.query
    _check_service(request, query.get("service"))
    try:
        credentials = parse_authorization(request.headers.get("Authorization"))
    except MalformedAuthorization as error:
        raise AccessDenied("unauthenticated", str(error)) from None
    principal = ANONYMOUS
    if isinstance(credentials, BasicCredentials):
        account = query.get("account")
        if account is not None and account != credentials.username:
            raise _bad_request(f"account {account!r} does not match the credentials")
        principal = await _sign_in(request, credentials.username, credentials.password)
    elif credentials is not None:
        raise AccessDenied("unauthenticated", "the token endpoint takes Basic credentials")
    grant = await services(request).auth.grant(
        principal,
        parse_scopes(query.getall("scope", [])),
        offline=query.get("offline_token") == "true",
        host=request.host,
    )
    return _grant_response(grant)


async def post_token(request: web.Request) -> web.Response:
    """The OAuth2 form: `grant_type=password` or `refresh_token`."""
    form = await request.post()

    def field(name: str) -> str | None:
        value = form.get(name)
        return value if isinstance(value, str) else None

    service = _check_service(request, field("service"))
    grant_type = field("grant_type")
    auth = services(request).auth
    refresh_token = field("refresh_token")
    if grant_type == "password":
        username, password = field("username"), field("password")
        if not username or password is None:
            raise _bad_request("grant_type=password needs username and password")
        principal = await _sign_in(request, username, password)
        offline = field("access_type") == "offline"
    elif grant_type == "refresh_token" and refresh_token:
        try:
            principal = await auth.redeem_refresh_token(refresh_token, service)
        except BadCredentials as error:
            raise AccessDenied("unauthenticated", str(error)) from None
        offline = False
    else:
        raise _bad_request("grant_type must be password, or refresh_token with a refresh_token")
    grant = await auth.grant(
        principal, parse_scopes([field("scope") or ""]), offline=offline, host=request.host
    )
    if grant_type == "refresh_token":
        grant = TokenGrant(grant.token, refresh_token)
    return _grant_response(grant)


async def jwks(request: web.Request) -> web.Response:
    return web.json_response(services(request).auth.issuer.jwks())


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v2/token", get_token)
    app.router.add_post("/v2/token", post_token)
    app.router.add_get("/.well-known/jwks.json", jwks)
