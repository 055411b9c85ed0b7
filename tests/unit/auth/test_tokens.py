"""RS256 bearer tokens: issuing, checking, the RFC 7638 `kid`, and the forgeries a verifier
must refuse."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from cargohold.auth import tokens
from cargohold.auth.tokens import (
    ExpiredToken,
    InvalidToken,
    TokenClaims,
    TokenIssuer,
    public_jwk,
    thumbprint,
)
from cargohold.oci.auth import Scope

ISSUER = "cargohold-test"
SERVICE = "registry.test"
TTL = 300
ACCESS = (Scope("repository", "p/r/img", ("pull", "push")),)
ACCESS_CLAIM = [{"type": "repository", "name": "p/r/img", "actions": ["pull", "push"]}]

# RFC 7638, section 3.1: an RSA key and its thumbprint.
RFC7638_N = (
    "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJ"
    "ECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2"
    "QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh"
    "6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
)
RFC7638_E = "AQAB"
RFC7638_THUMBPRINT = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def _pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64url_decode(value: str) -> bytes:
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def other_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def issuer(key: rsa.RSAPrivateKey) -> TokenIssuer:
    return TokenIssuer(_pem(key), issuer=ISSUER, ttl_seconds=TTL)


Forge = Callable[..., str]


@pytest.fixture
def forge(key: rsa.RSAPrivateKey, issuer: TokenIssuer) -> Forge:
    """A token signed with the issuer's key, with claims overridden (None removes one)."""

    def make(
        signing_key: rsa.RSAPrivateKey | None = None,
        headers: dict[str, Any] | None = None,
        **overrides: Any,
    ) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": ISSUER,
            "sub": "alice",
            "aud": SERVICE,
            "exp": now + 60,
            "nbf": now,
            "iat": now,
            "jti": uuid.uuid4().hex,
            "access": ACCESS_CLAIM,
        }
        claims.update(overrides)
        claims = {name: value for name, value in claims.items() if value is not None}
        return jwt.encode(
            claims,
            signing_key or key,
            algorithm="RS256",
            headers={"kid": issuer.kid, **(headers or {})},
        )

    return make


def _parts(token: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    header, payload, signature = token.split(".")
    return (
        json.loads(_b64url_decode(header)),
        json.loads(_b64url_decode(payload)),
        signature,
    )


# Issuing and verifying


def test_issue_then_verify_round_trip(issuer: TokenIssuer) -> None:
    before = time.time()
    issued = issuer.issue("alice", SERVICE, ACCESS)
    claims = issuer.verify(issued.token, SERVICE)
    assert claims.subject == "alice"
    assert claims.access == ACCESS
    assert issued.expires_in == TTL
    assert before - 1 <= issued.issued_at <= time.time()
    assert claims.expires_at == int(issued.issued_at) + TTL


def test_issued_token_header_and_claims(issuer: TokenIssuer) -> None:
    issued = issuer.issue("sa$ci", SERVICE, ACCESS)
    header, payload, _ = _parts(issued.token)
    assert header == {"alg": "RS256", "typ": "JWT", "kid": issuer.kid}
    assert set(payload) == {"iss", "sub", "aud", "exp", "nbf", "iat", "jti", "access"}
    assert payload["iss"] == ISSUER
    assert payload["sub"] == "sa$ci"
    assert payload["aud"] == SERVICE
    assert payload["nbf"] == payload["iat"] == int(issued.issued_at)
    assert payload["exp"] == payload["iat"] + TTL
    assert payload["access"] == ACCESS_CLAIM
    assert payload["jti"] != _parts(issuer.issue("sa$ci", SERVICE, ACCESS).token)[1]["jti"]


def test_anonymous_token_with_no_access(issuer: TokenIssuer) -> None:
    issued = issuer.issue("", SERVICE, [])
    assert _parts(issued.token)[1]["access"] == []
    claims = issuer.verify(issued.token, SERVICE)
    assert claims.subject == ""
    assert claims.access == ()


def test_issued_at_is_rfc3339_utc(issuer: TokenIssuer) -> None:
    issued = tokens.IssuedToken("t", 1_415_387_015.7, TTL)
    assert issued.issued_at_rfc3339 == "2014-11-07T19:03:35Z"
    assert issuer.issue("a", SERVICE, []).issued_at_rfc3339.endswith("Z")


def test_actions_on() -> None:
    claims = TokenClaims(
        "alice",
        (
            Scope("repository", "a/b/c", ("pull",)),
            Scope("repository", "a/b/c", ("push",)),
            Scope("repository", "a/b/d", ("delete",)),
            Scope("registry", "a/b/c", ("*",)),
        ),
        0.0,
    )
    assert claims.actions_on("repository", "a/b/c") == {"pull", "push"}
    assert claims.actions_on("repository", "a/b/d") == {"delete"}
    assert claims.actions_on("repository", "a/b/e") == set()
    assert claims.actions_on("registry", "a/b/c") == {"*"}


def test_a_non_rsa_key_is_refused() -> None:
    with pytest.raises(ValueError, match="RSA"):
        TokenIssuer(_pem(ec.generate_private_key(ec.SECP256R1())), issuer=ISSUER, ttl_seconds=60)


# The key id


def test_thumbprint_of_the_rfc7638_example() -> None:
    numbers = rsa.RSAPublicNumbers(
        int.from_bytes(_b64url_decode(RFC7638_E), "big"),
        int.from_bytes(_b64url_decode(RFC7638_N), "big"),
    )
    assert thumbprint(numbers.public_key()) == RFC7638_THUMBPRINT
    # The same computed here from the RFC's canonical JSON, not through the code under test.
    canonical = '{"e":"' + RFC7638_E + '","kty":"RSA","n":"' + RFC7638_N + '"}'
    assert _b64url(hashlib.sha256(canonical.encode()).digest()) == RFC7638_THUMBPRINT
    assert public_jwk(numbers.public_key()) == {"e": RFC7638_E, "kty": "RSA", "n": RFC7638_N}


def test_kid_is_the_thumbprint_of_the_published_key(
    issuer: TokenIssuer, key: rsa.RSAPrivateKey
) -> None:
    (jwk,) = issuer.jwks()["keys"]
    assert jwk["kid"] == issuer.kid
    assert jwk["kty"] == "RSA"
    assert jwk["alg"] == "RS256"
    assert jwk["use"] == "sig"
    numbers = key.public_key().public_numbers()
    assert int.from_bytes(_b64url_decode(jwk["n"]), "big") == numbers.n
    assert int.from_bytes(_b64url_decode(jwk["e"]), "big") == numbers.e
    canonical = json.dumps({m: jwk[m] for m in ("e", "kty", "n")}, separators=(",", ":"))
    assert _b64url(hashlib.sha256(canonical.encode()).digest()) == issuer.kid
    assert "d" not in jwk and "p" not in jwk  # nothing private


def test_another_service_verifies_with_the_jwks(issuer: TokenIssuer) -> None:
    token = issuer.issue("alice", SERVICE, ACCESS).token
    (jwk,) = issuer.jwks()["keys"]
    public = jwt.PyJWK(jwk).key
    payload = jwt.decode(token, public, algorithms=["RS256"], audience=SERVICE, issuer=ISSUER)
    assert payload["sub"] == "alice"


# What is refused


def test_expired(issuer: TokenIssuer, forge: Forge) -> None:
    now = int(time.time())
    token = forge(iat=now - 400, nbf=now - 400, exp=now - 60)
    with pytest.raises(ExpiredToken):
        issuer.verify(token, SERVICE)
    # ... except where an expired token is allowed (finishing an upload): all else holds.
    claims = issuer.verify(token, SERVICE, allow_expired=True)
    assert claims.subject == "alice"
    assert claims.access == ACCESS


def test_expiry_leeway_is_a_few_seconds(issuer: TokenIssuer, forge: Forge) -> None:
    now = int(time.time())
    assert issuer.verify(forge(exp=now - 2), SERVICE).subject == "alice"
    with pytest.raises(ExpiredToken):
        issuer.verify(forge(exp=now - tokens.LEEWAY_SECONDS - 5), SERVICE)


def test_a_verified_token_expires_although_remembered(
    issuer: TokenIssuer, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = issuer.issue("alice", SERVICE, ACCESS).token
    assert issuer.verify(token, SERVICE).subject == "alice"

    class Later:
        @staticmethod
        def time() -> float:
            return time.time() + TTL + tokens.LEEWAY_SECONDS + 1

    monkeypatch.setattr(tokens, "time", Later)
    with pytest.raises(ExpiredToken):
        issuer.verify(token, SERVICE)


def test_not_yet_valid(issuer: TokenIssuer, forge: Forge) -> None:
    now = int(time.time())
    token = forge(nbf=now + 120, iat=now + 120, exp=now + 400)
    for allow_expired in (False, True):
        with pytest.raises(InvalidToken, match="not valid yet") as raised:
            issuer.verify(token, SERVICE, allow_expired=allow_expired)
        assert not isinstance(raised.value, ExpiredToken)


def test_wrong_audience(issuer: TokenIssuer, forge: Forge) -> None:
    with pytest.raises(InvalidToken, match="service"):
        issuer.verify(forge(aud="another-registry"), SERVICE)
    with pytest.raises(InvalidToken):
        issuer.verify(issuer.issue("alice", "another-registry", ACCESS).token, SERVICE)


def test_expired_and_wrong_audience_is_refused_even_where_expiry_is_allowed(
    issuer: TokenIssuer, forge: Forge
) -> None:
    now = int(time.time())
    for overrides in ({"aud": "another-registry"}, {"iss": "someone-else"}):
        token = forge(exp=now - 60, **overrides)
        with pytest.raises(InvalidToken) as raised:
            issuer.verify(token, SERVICE, allow_expired=True)
        assert not isinstance(raised.value, ExpiredToken)


def test_wrong_issuer(issuer: TokenIssuer, forge: Forge) -> None:
    with pytest.raises(InvalidToken):
        issuer.verify(forge(iss="someone-else"), SERVICE)


def test_wrong_key_with_our_kid(
    issuer: TokenIssuer, forge: Forge, other_key: rsa.RSAPrivateKey
) -> None:
    with pytest.raises(InvalidToken):
        issuer.verify(forge(signing_key=other_key), SERVICE)


def test_wrong_key_with_its_own_kid(issuer: TokenIssuer, other_key: rsa.RSAPrivateKey) -> None:
    other = TokenIssuer(_pem(other_key), issuer=ISSUER, ttl_seconds=TTL)
    assert other.kid != issuer.kid
    with pytest.raises(InvalidToken, match="key"):
        issuer.verify(other.issue("alice", SERVICE, ACCESS).token, SERVICE)


@pytest.mark.parametrize("kid", [None, "", "some-other-kid"])
def test_missing_or_unknown_kid(
    issuer: TokenIssuer, key: rsa.RSAPrivateKey, kid: str | None
) -> None:
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "sub": "alice",
        "aud": SERVICE,
        "exp": now + 60,
        "nbf": now,
        "iat": now,
        "jti": "j",
        "access": ACCESS_CLAIM,
    }
    headers = {} if kid is None else {"kid": kid}
    token = jwt.encode(claims, key, algorithm="RS256", headers=headers)
    with pytest.raises(InvalidToken):
        issuer.verify(token, SERVICE)


def test_alg_none(issuer: TokenIssuer, forge: Forge) -> None:
    _, payload, _ = _parts(forge())
    header = {"alg": "none", "typ": "JWT", "kid": issuer.kid}
    for signature in ("", "AAAA"):
        token = ".".join(
            [
                _b64url(json.dumps(header).encode()),
                _b64url(json.dumps(payload).encode()),
                signature,
            ]
        )
        with pytest.raises(InvalidToken):
            issuer.verify(token, SERVICE)


def test_hs256_signed_with_the_public_key(
    issuer: TokenIssuer, forge: Forge, key: rsa.RSAPrivateKey
) -> None:
    """Key confusion: an HMAC over the token keyed with the (public) PEM must not pass."""
    _, payload, _ = _parts(forge())
    header = {"alg": "HS256", "typ": "JWT", "kid": issuer.kid}
    signing_input = (
        _b64url(json.dumps(header).encode()) + "." + _b64url(json.dumps(payload).encode())
    )
    for public in (
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.PKCS1),
    ):
        mac = hmac.new(public, signing_input.encode(), hashlib.sha256).digest()
        with pytest.raises(InvalidToken):
            issuer.verify(signing_input + "." + _b64url(mac), SERVICE)


def test_tampered_payload(issuer: TokenIssuer) -> None:
    token = issuer.issue("alice", SERVICE, ACCESS).token
    header, payload, signature = token.split(".")
    claims = json.loads(_b64url_decode(payload))
    for change in (
        {"access": [{**ACCESS_CLAIM[0], "actions": ["pull", "push", "delete"]}]},
        {"sub": "admin"},
        {"exp": claims["exp"] + 3600},
    ):
        tampered = _b64url(json.dumps({**claims, **change}, separators=(",", ":")).encode())
        with pytest.raises(InvalidToken):
            issuer.verify(f"{header}.{tampered}.{signature}", SERVICE)
    assert issuer.verify(token, SERVICE).subject == "alice"


def test_tampered_signature(issuer: TokenIssuer) -> None:
    token = issuer.issue("alice", SERVICE, ACCESS).token
    header, payload, signature = token.split(".")
    flipped = signature[:-2] + ("AA" if signature[-2:] != "AA" else "BB")
    with pytest.raises(InvalidToken):
        issuer.verify(f"{header}.{payload}.{flipped}", SERVICE)


@pytest.mark.parametrize("claim", ["iss", "sub", "aud", "exp", "nbf", "iat", "jti", "access"])
def test_missing_claims(issuer: TokenIssuer, forge: Forge, claim: str) -> None:
    with pytest.raises(InvalidToken):
        issuer.verify(forge(**{claim: None}), SERVICE)


@pytest.mark.parametrize(
    "access",
    [
        {"type": "repository", "name": "a", "actions": ["pull"]},
        ["repository:a:pull"],
        [{"type": "repository", "name": "a"}],
        [{"type": "repository", "name": "a", "actions": "pull"}],
        [{"type": "repository", "name": 1, "actions": ["pull"]}],
        [{"name": "a", "actions": ["pull"]}],
        [{"type": "repository", "name": "a", "actions": [1]}],
    ],
)
def test_malformed_access_claim(issuer: TokenIssuer, forge: Forge, access: object) -> None:
    with pytest.raises(InvalidToken):
        issuer.verify(forge(access=access), SERVICE)


@pytest.mark.parametrize("garbage", ["", "a", "a.b", "a.b.c", "a.b.c.d", "é.é.é"])
def test_garbage(issuer: TokenIssuer, garbage: str) -> None:
    with pytest.raises(InvalidToken):
        issuer.verify(garbage, SERVICE)
