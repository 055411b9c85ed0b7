"""JWT bearer tokens: RS256, signed with one key shared by every process through the
database, `kid` = the key's RFC 7638 thumbprint, published as a JWKS for other verifiers."""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from cargohold.db.accounts import AccountStore
from cargohold.oci.auth import Scope

ALGORITHM = "RS256"
LEEWAY_SECONDS = 5
VERIFIED_CACHE_SIZE = 10_000


class InvalidToken(Exception):
    """The token is not one of ours, or not valid now; the message says why."""


class ExpiredToken(InvalidToken):
    """A token of ours that was valid and has expired (an upload it opened may still finish)."""


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token: str
    issued_at: float
    expires_in: int

    @property
    def issued_at_rfc3339(self) -> str:
        return datetime.fromtimestamp(self.issued_at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, slots=True)
class TokenClaims:
    subject: str
    access: tuple[Scope, ...]
    expires_at: float

    def actions_on(self, resource_type: str, name: str) -> set[str]:
        return {
            action
            for scope in self.access
            if scope.type == resource_type and scope.name == name
            for action in scope.actions
        }


def _b64url_uint(value: int) -> str:
    data = value.to_bytes((value.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def public_jwk(key: rsa.RSAPublicKey) -> dict[str, str]:
    numbers = key.public_numbers()
    return {"e": _b64url_uint(numbers.e), "kty": "RSA", "n": _b64url_uint(numbers.n)}


def thumbprint(key: rsa.RSAPublicKey) -> str:
    """RFC 7638: SHA-256 of the required members, sorted, without white space."""
    canonical = json.dumps(public_jwk(key), separators=(",", ":"), sort_keys=True)
    return (
        base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()).rstrip(b"=").decode()
    )


def _new_key_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


class TokenIssuer:
    def __init__(self, private_key_pem: str, *, issuer: str, ttl_seconds: int) -> None:
        key = serialization.load_pem_private_key(private_key_pem.encode(), password=None)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ValueError("the token signing key must be an RSA key")
        self._private_key = key
        self._public_key = key.public_key()
        self.kid = thumbprint(self._public_key)
        self.issuer = issuer
        self.ttl_seconds = ttl_seconds
        self._verified: dict[tuple[str, str, bool], TokenClaims] = {}

    @classmethod
    async def load(cls, accounts: AccountStore, *, issuer: str, ttl_seconds: int) -> TokenIssuer:
        """The shared key from the database; the first process to start creates it."""
        pem = await accounts.signing_key()
        if pem is None:
            new_pem = _new_key_pem()
            kid = cls(new_pem, issuer=issuer, ttl_seconds=ttl_seconds).kid
            pem = await accounts.add_signing_key(kid, new_pem)
        return cls(pem, issuer=issuer, ttl_seconds=ttl_seconds)

    def issue(self, subject: str, audience: str, access: Sequence[Scope]) -> IssuedToken:
        now = time.time()
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": subject,
            "aud": audience,
            "exp": int(now) + self.ttl_seconds,
            "nbf": int(now),
            "iat": int(now),
            "jti": uuid.uuid4().hex,
            "access": [
                {"type": scope.type, "name": scope.name, "actions": list(scope.actions)}
                for scope in access
            ],
        }
        token = jwt.encode(
            claims, self._private_key, algorithm=ALGORITHM, headers={"kid": self.kid}
        )
        return IssuedToken(token, now, self.ttl_seconds)

    def verify(self, token: str, audience: str, *, allow_expired: bool = False) -> TokenClaims:
        """The claims of a token we signed for `audience`, valid now (or expired, if allowed)."""
        key = (token, audience, allow_expired)
        claims = self._verified.get(key)
        if claims is None:
            claims = self._decode(token, audience, allow_expired)
            if len(self._verified) >= VERIFIED_CACHE_SIZE:
                self._verified.clear()
            self._verified[key] = claims
        if not allow_expired and claims.expires_at + LEEWAY_SECONDS < time.time():
            raise ExpiredToken("the token has expired")
        return claims

    def _decode(self, token: str, audience: str, allow_expired: bool) -> TokenClaims:
        try:
            header = jwt.get_unverified_header(token)
            if header.get("kid") != self.kid:
                raise InvalidToken("the token was not signed by this registry's key")
            payload = jwt.decode(
                token,
                self._public_key,
                algorithms=[ALGORITHM],
                audience=audience,
                issuer=self.issuer,
                leeway=LEEWAY_SECONDS,
                options={
                    "require": ["iss", "sub", "aud", "exp", "nbf", "iat", "jti"],
                    "verify_exp": not allow_expired,
                },
            )
        except jwt.ExpiredSignatureError:
            raise ExpiredToken("the token has expired") from None
        except jwt.ImmatureSignatureError:
            raise InvalidToken("the token is not valid yet") from None
        except jwt.InvalidAudienceError:
            raise InvalidToken(f"the token is not for service {audience!r}") from None
        except jwt.PyJWTError as error:
            raise InvalidToken(f"the token is invalid: {error}") from None
        return TokenClaims(
            subject=str(payload["sub"]),
            access=_access(payload.get("access")),
            expires_at=float(payload["exp"]),
        )

    def jwks(self) -> dict[str, Any]:
        return {
            "keys": [
                {**public_jwk(self._public_key), "kid": self.kid, "alg": ALGORITHM, "use": "sig"}
            ]
        }


def _access(value: object) -> tuple[Scope, ...]:
    if not isinstance(value, list):
        raise InvalidToken("the token's access claim is not a list")
    entries = []
    for entry in value:
        if not isinstance(entry, dict):
            raise InvalidToken("an access entry is not an object")
        resource_type, name, actions = entry.get("type"), entry.get("name"), entry.get("actions")
        if not (
            isinstance(resource_type, str)
            and isinstance(name, str)
            and isinstance(actions, list)
            and all(isinstance(action, str) for action in actions)
        ):
            raise InvalidToken("an access entry lacks type, name or actions")
        entries.append(Scope(resource_type, name, tuple(actions)))
    return tuple(entries)
