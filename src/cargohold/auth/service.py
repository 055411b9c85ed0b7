"""Authentication and authorization of every request, and the token grants.

Per-request checks stay cheap: a verified Basic sign-in is remembered (argon2 runs once),
a verified token is remembered until it expires, and what the database says of a principal
(active or not, roles, grants) is re-read at most every few seconds, so that a disabled or
revoked account loses access within that time, tokens issued before included.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cargohold.auth.passwords import fingerprint, generate_secret, verify_secret
from cargohold.auth.principals import (
    ANONYMOUS,
    ANONYMOUS_STANDING,
    ROBOT_PREFIX,
    Principal,
    Standing,
    repository_actions,
)
from cargohold.auth.tokens import (
    ExpiredToken,
    InvalidToken,
    IssuedToken,
    TokenClaims,
    TokenIssuer,
)
from cargohold.db.accounts import AccountStore
from cargohold.oci.auth import (
    PULL,
    PUSH,
    BasicCredentials,
    BearerToken,
    MalformedAuthorization,
    Scope,
    parse_authorization,
)
from cargohold.oci.errors import RegistryError
from cargohold.registry.router import NameRouter, Target

log = logging.getLogger(__name__)

STANDING_SECONDS = 3.0
SIGN_IN_CACHE_SECONDS = 600.0
SIGN_IN_CACHE_SIZE = 10_000
LAST_USED_RESOLUTION_SECONDS = 60.0
CATALOG_SCOPE = Scope("registry", "catalog", ("*",))


class BadCredentials(Exception):
    """The name, password, API key or refresh token is wrong, or the account is not active."""


class TooManyAttempts(Exception):
    def __init__(self, retry_after: int) -> None:
        super().__init__(f"too many failed sign-ins; try again in {retry_after} seconds")
        self.retry_after = retry_after


class AccessDenied(Exception):
    """The request may not proceed; `reason` picks the answer:

    - `unauthenticated`: no credentials where some are needed (401 with a challenge);
    - `invalid_token`: a bearer token that is not valid (401, error="invalid_token");
    - `insufficient_scope`: a valid token without the needed access (401, that error);
    - `forbidden`: valid credentials without the needed permission (403 DENIED).
    """

    def __init__(self, reason: str, message: str, scopes: Sequence[Scope] = ()) -> None:
        super().__init__(message)
        self.reason = reason
        self.scopes = tuple(scopes)


@dataclass(frozen=True, slots=True)
class Caller:
    principal: Principal
    # The token's claims when the caller sent one; None for Basic credentials or nothing.
    claims: TokenClaims | None = None
    # A token past its expiry, accepted only to finish an upload its subject started.
    expired: bool = False

    @property
    def authenticated(self) -> bool:
        return self.principal is not ANONYMOUS or self.claims is not None


@dataclass(frozen=True, slots=True)
class TokenGrant:
    token: IssuedToken
    refresh_token: str | None


def challenge_actions(needed: Iterable[str]) -> tuple[str, ...]:
    """The actions a challenge asks for: what is needed, and pull and push besides, so that a
    client which keeps its first token (oras) can push with it when the account may."""
    wanted = {PULL, PUSH, *needed}
    return tuple(a for a in ("pull", "push", "delete") if a in wanted)


class AuthService:
    def __init__(
        self,
        accounts: AccountStore,
        router: NameRouter,
        issuer: TokenIssuer,
        *,
        service: str,
        failure_limit: int,
        failure_window_seconds: int,
    ) -> None:
        self._accounts = accounts
        self._router = router
        self.issuer = issuer
        self.service = service
        self._failure_limit = failure_limit
        self._failure_window = failure_window_seconds
        self._standings: dict[str, tuple[float, Standing | None]] = {}
        self._sign_ins: dict[str, tuple[float, str, str]] = {}
        self._last_used: dict[int, float] = {}
        # Throttled sign-in keys (`account:<name>`, `address:<ip>`) and until when.
        self._throttled: dict[str, float] = {}

    # What the database says of a principal

    async def standing(self, subject: str) -> Standing | None:
        if not subject:
            return ANONYMOUS_STANDING
        cached = self._standings.get(subject)
        if cached is not None and time.monotonic() - cached[0] < STANDING_SECONDS:
            return cached[1]
        standing = await self._load_standing(subject)
        if len(self._standings) >= SIGN_IN_CACHE_SIZE:
            self._standings.clear()
        self._standings[subject] = (time.monotonic(), standing)
        return standing

    async def _load_standing(self, subject: str) -> Standing | None:
        if subject.startswith(ROBOT_PREFIX):
            robot = await self._accounts.get_robot(subject[len(ROBOT_PREFIX) :])
            if robot is None:
                return None
            expired = robot.expires_at is not None and robot.expires_at <= time.time()
            return Standing(
                Principal("robot", robot.id, subject),
                active=not robot.disabled and not expired,
                credential_hash=robot.secret_hash,
                grants=robot.grants,
            )
        user = await self._accounts.get_user(subject)
        if user is None:
            return None
        return Standing(
            Principal("user", user.id, user.name, is_admin=user.is_admin),
            active=not user.disabled,
            credential_hash=user.password_hash,
            roles=await self._accounts.roles(user.id) if not user.is_admin else {},
        )

    def forget(self, subject: str) -> None:
        """Drop what this process remembers of a principal it just changed."""
        self._standings.pop(subject, None)

    # Signing in

    async def login(self, username: str, password: str, address: str) -> Principal:
        sign_in_key = hashlib.sha256(f"{username}\0{password}".encode()).hexdigest()
        standing = await self.standing(username)
        remembered = self._sign_ins.get(sign_in_key)
        keys = (f"account:{username}", f"address:{address}")
        if (
            remembered is not None
            and standing is not None
            and standing.active
            and time.monotonic() - remembered[0] < SIGN_IN_CACHE_SECONDS
            and remembered[1:] == (username, standing.credential_hash)
        ):
            # A remembered sign-in is throttled like any other, or the difference between
            # 429 (wrong guess) and 200 (right one, remembered) would let guessing go on.
            self._refuse_if_known_throttled(keys)
            await self._note_use(standing.principal)
            return standing.principal
        await self._refuse_if_throttled(keys)
        valid = await verify_secret(standing.credential_hash if standing else None, password)
        if standing is None or not valid or not standing.active:
            for key in keys:
                await self._accounts.record_failure(key, time.time(), self._window_start())
                await self._throttled_until(key)
            raise BadCredentials(f"invalid credentials for {username!r}")
        await self._accounts.clear_failures(keys[0])
        self._throttled.pop(keys[0], None)
        if len(self._sign_ins) >= SIGN_IN_CACHE_SIZE:
            self._sign_ins.clear()
        self._sign_ins[sign_in_key] = (time.monotonic(), username, standing.credential_hash)
        await self._note_use(standing.principal)
        return standing.principal

    async def forget_old_failures(self) -> None:
        await self._accounts.prune_failures(self._window_start())

    def _window_start(self) -> float:
        return time.time() - self._failure_window

    async def _throttled_until(self, key: str) -> float | None:
        """When the key's throttling ends, if it is throttled; remembered in this process."""
        failures, window_start = await self._accounts.failures(key, self._window_start())
        if failures < self._failure_limit:
            return None
        until = window_start + self._failure_window
        if len(self._throttled) >= SIGN_IN_CACHE_SIZE:
            self._throttled.clear()
        self._throttled[key] = until
        return until

    async def _refuse_if_throttled(self, keys: Iterable[str]) -> None:
        for key in keys:
            until = await self._throttled_until(key)
            if until is not None:
                raise TooManyAttempts(max(1, int(until - time.time()) + 1))

    def _refuse_if_known_throttled(self, keys: Iterable[str]) -> None:
        """Like `_refuse_if_throttled` from what this process saw, with no I/O."""
        now = time.time()
        for key in keys:
            until = self._throttled.get(key)
            if until is not None and until > now:
                raise TooManyAttempts(max(1, int(until - now) + 1))

    async def _note_use(self, principal: Principal) -> None:
        if principal.kind != "robot" or principal.id is None:
            return
        now = time.time()
        if now - self._last_used.get(principal.id, 0.0) >= LAST_USED_RESOLUTION_SECONDS:
            self._last_used[principal.id] = now
            await self._accounts.record_robot_use(principal.id, now)

    # Authenticating a request

    async def authenticate(
        self, authorization: str | None, address: str, *, allow_expired: bool = False
    ) -> Caller:
        try:
            credentials = parse_authorization(authorization)
        except MalformedAuthorization as error:
            raise AccessDenied(
                "invalid_token", f"malformed Authorization header: {error}"
            ) from None
        if credentials is None:
            return Caller(ANONYMOUS)
        if isinstance(credentials, BasicCredentials):
            try:
                principal = await self.login(credentials.username, credentials.password, address)
            except BadCredentials as error:
                raise AccessDenied("unauthenticated", str(error)) from None
            return Caller(principal)
        return await self._token_caller(credentials, allow_expired)

    async def _token_caller(self, credentials: BearerToken, allow_expired: bool) -> Caller:
        try:
            try:
                claims = self.issuer.verify(credentials.token, self.service)
                expired = False
            except ExpiredToken:
                if not allow_expired:
                    raise
                # Still checked for everything but its expiry: audience, issuer, signature.
                claims = self.issuer.verify(credentials.token, self.service, allow_expired=True)
                expired = True
        except InvalidToken as error:
            raise AccessDenied("invalid_token", str(error)) from None
        standing = await self.standing(claims.subject)
        if standing is None or not standing.active:
            raise AccessDenied("invalid_token", "the token's account is disabled, expired or gone")
        await self._note_use(standing.principal)
        return Caller(standing.principal, claims, expired)

    # Authorizing

    async def allowed(self, caller: Caller, target: Target) -> frozenset[str]:
        standing = await self.standing(caller.principal.subject)
        live = repository_actions(standing, target.repository) if standing else frozenset()
        if caller.claims is None:
            return live
        return live & caller.claims.actions_on("repository", target.name)

    async def authorize(self, caller: Caller, target: Target, needed: Iterable[str]) -> None:
        needed = frozenset(needed)
        allowed = await self.allowed(caller, target)
        if needed <= allowed:
            return
        scopes = [Scope("repository", target.name, challenge_actions(needed))]
        wanted = ",".join(sorted(needed - allowed))
        if caller.claims is not None:
            raise AccessDenied(
                "insufficient_scope", f"the token does not grant {wanted} on {target.name}", scopes
            )
        if caller.principal is ANONYMOUS:
            raise AccessDenied("unauthenticated", "authentication required", scopes)
        raise AccessDenied(
            "forbidden",
            f"{caller.principal.subject} may not {wanted} {target.name}",
            scopes,
        )

    async def readable_repository_ids(self, caller: Caller) -> set[int] | None:
        """The repositories whose names the caller may see in the catalog; None for all."""
        standing = await self.standing(caller.principal.subject)
        if standing is not None and standing.active and standing.principal.is_admin:
            return None
        repositories = await self._router.repositories()
        return {
            repository.id
            for repository in repositories
            if standing is not None and PULL in repository_actions(standing, repository)
        }

    # Tokens

    async def _granted(self, principal: Principal, scope: Scope, host: str | None) -> Scope | None:
        if scope.type == CATALOG_SCOPE.type and scope.name == CATALOG_SCOPE.name:
            return scope if principal is not ANONYMOUS else None
        if scope.type != "repository":
            return None
        try:
            target = await self._router.resolve(scope.name, host)
        except RegistryError:
            return None
        caller = Caller(principal)
        live = await self.allowed(caller, target)
        requested = set(live) if "*" in scope.actions else set(scope.actions)
        actions = tuple(a for a in ("pull", "push", "delete") if a in requested & live)
        return Scope("repository", scope.name, actions) if actions else None

    async def grant(
        self,
        principal: Principal,
        scopes: Sequence[Scope],
        *,
        offline: bool,
        host: str | None = None,
    ) -> TokenGrant:
        """A token holding what was asked for and is permitted; never an error for the rest.
        Scope names are resolved as asked of `host` (repositories bound to a host name)."""
        granted = [g for g in [await self._granted(principal, s, host) for s in scopes] if g]
        token = self.issuer.issue(principal.subject, self.service, granted)
        refresh = None
        if offline and principal is not ANONYMOUS:
            refresh = generate_secret()
            await self._accounts.add_refresh_token(
                fingerprint(refresh),
                self.service,
                principal.id if principal.kind == "user" else None,
                principal.id if principal.kind == "robot" else None,
            )
        return TokenGrant(token, refresh)

    async def redeem_refresh_token(self, refresh_token: str, service: str) -> Principal:
        record = await self._accounts.find_refresh_token(fingerprint(refresh_token))
        if record is None or record.service != service:
            raise BadCredentials("unknown refresh token")
        for principal_id, kind in ((record.user_id, "user"), (record.robot_id, "robot")):
            if principal_id is None:
                continue
            subject = await self._accounts.subject_of(kind, principal_id)
            standing = await self.standing(subject) if subject else None
            if standing is not None and standing.active:
                return standing.principal
        raise BadCredentials("the refresh token's account is disabled or gone")
