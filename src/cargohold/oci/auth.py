"""The Docker token authentication protocol, with no I/O: scopes, challenges, credentials.

Scope grammar (docker-token-auth-scope.md): `type[(class)]:name:action[,action]*`. A name may
hold one `:` (a registry host's port), so the type ends at the first `:` and the actions
start after the last one.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

PULL = "pull"
PUSH = "push"
DELETE = "delete"
REPOSITORY_ACTIONS = (PULL, PUSH, DELETE)

_RESOURCE_TYPE = re.compile(r"[a-z0-9]+(?:\([a-z0-9]+\))?")
_ACTION = re.compile(r"[a-z]*|\*")
_COMPONENT = r"[a-z0-9]+(?:(?:[_.]|__|-+)[a-z0-9]+)*"
_HOST_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_HOSTNAME = rf"{_HOST_COMPONENT}(?:\.{_HOST_COMPONENT})*(?::[0-9]+)?"
_RESOURCE_NAME = re.compile(rf"(?:{_HOSTNAME}/)?{_COMPONENT}(?:/{_COMPONENT})*")


@dataclass(frozen=True, slots=True)
class Scope:
    type: str
    name: str
    actions: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.type}:{self.name}:{','.join(self.actions)}"


def parse_scope(value: str) -> Scope | None:
    """One resource scope, or None when it is not of the grammar (it then grants nothing)."""
    resource_type, colon, rest = value.partition(":")
    name, colon2, actions = rest.rpartition(":")
    if not colon or not colon2 or not _RESOURCE_TYPE.fullmatch(resource_type):
        return None
    if not _RESOURCE_NAME.fullmatch(name):
        return None
    action_list = tuple(dict.fromkeys(a for a in actions.split(",") if a))
    if not all(_ACTION.fullmatch(action) for action in action_list):
        return None
    # The resource class is deprecated and ignored: `repository(plugin)` is `repository`.
    return Scope(resource_type.split("(")[0], name, action_list)


def parse_scopes(values: Iterable[str]) -> list[Scope]:
    """Scopes from repeated `scope` parameters, each possibly space-separated."""
    parsed = (parse_scope(part) for value in values for part in value.split())
    return [scope for scope in parsed if scope is not None]


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def bearer_challenge(
    realm: str, service: str, scopes: Sequence[Scope] = (), error: str | None = None
) -> str:
    """A `WWW-Authenticate` value (RFC 6750 section 3)."""
    parts = [f"realm={_quote(realm)}", f"service={_quote(service)}"]
    if scopes:
        parts.append(f"scope={_quote(' '.join(str(scope) for scope in scopes))}")
    if error:
        parts.append(f"error={_quote(error)}")
    return "Bearer " + ",".join(parts)


@dataclass(frozen=True, slots=True)
class BasicCredentials:
    username: str
    password: str


@dataclass(frozen=True, slots=True)
class BearerToken:
    token: str


class MalformedAuthorization(ValueError):
    """An Authorization header that is neither well-formed Basic nor Bearer."""


_TOKEN68 = re.compile(r"[A-Za-z0-9\-._~+/]+=*")


def parse_authorization(header: str | None) -> BasicCredentials | BearerToken | None:
    if header is None:
        return None
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise MalformedAuthorization("Basic credentials are not base64 of UTF-8") from None
        username, colon, password = decoded.partition(":")
        if not colon or not username:
            raise MalformedAuthorization("Basic credentials need <username>:<password>")
        return BasicCredentials(username, password)
    if scheme.lower() == "bearer":
        if not _TOKEN68.fullmatch(value):
            raise MalformedAuthorization("a Bearer token must be one token68 value")
        return BearerToken(value)
    raise MalformedAuthorization(f"unsupported authorization scheme {scheme!r}")


@dataclass(frozen=True, slots=True)
class Challenge:
    """A `WWW-Authenticate` challenge from an upstream registry."""

    scheme: str  # lower case: "bearer" or "basic"
    params: dict[str, str]


_CHALLENGE_PARAM = re.compile(r'([A-Za-z_][\w-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))')


def parse_challenge(header: str) -> Challenge | None:
    """The first challenge of a `WWW-Authenticate` value, or None when there is none."""
    scheme, _, rest = header.strip().partition(" ")
    if not scheme:
        return None
    params = {
        match[1].lower(): re.sub(r"\\(.)", r"\1", match[2]) if match[2] is not None else match[3]
        for match in _CHALLENGE_PARAM.finditer(rest)
    }
    return Challenge(scheme.lower(), params)
