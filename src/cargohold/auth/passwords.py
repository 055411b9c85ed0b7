"""Passwords and API keys: argon2 hashes, generated secrets, constant-time checks.

Hashing runs in a worker thread: argon2 is deliberately slow and must not stall the loop.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import threading

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

# OWASP's argon2id recommendation: 19 MiB, two passes, one lane.
_HASHER = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)

# At most this many hashes at once: each takes 19 MiB and a core for tens of milliseconds.
_CONCURRENT_HASHES = threading.BoundedSemaphore(2)

# Verifying against this when an account does not exist costs the same as a real check, so
# response times do not tell which account names exist.
_DUMMY_HASH = _HASHER.hash(secrets.token_urlsafe(16))


def generate_secret() -> str:
    """A password or API key to show once: 256 bits, URL-safe."""
    return secrets.token_urlsafe(32)


def _hash(secret: str) -> str:
    with _CONCURRENT_HASHES:
        return _HASHER.hash(secret)


async def hash_secret(secret: str) -> str:
    return await asyncio.to_thread(_hash, secret)


def _verify(stored_hash: str | None, secret: str) -> bool:
    try:
        with _CONCURRENT_HASHES:
            return _HASHER.verify(stored_hash or _DUMMY_HASH, secret) and stored_hash is not None
    except (VerificationError, InvalidHashError):
        return False


async def verify_secret(stored_hash: str | None, secret: str) -> bool:
    """Whether `secret` matches; with no stored hash, False after the same work."""
    return await asyncio.to_thread(_verify, stored_hash, secret)


def fingerprint(secret: str) -> str:
    """A lookup key for a high-entropy secret (refresh tokens); never for passwords."""
    return hashlib.sha256(secret.encode()).hexdigest()
