"""Passwords and API keys: argon2id hashes, generated secrets, refresh-token fingerprints."""

from __future__ import annotations

import asyncio
import hashlib
import re

import pytest
from argon2 import PasswordHasher

from cargohold.auth import passwords
from cargohold.auth.passwords import fingerprint, generate_secret, hash_secret, verify_secret


def test_generated_secrets_are_long_url_safe_and_unique() -> None:
    secrets = {generate_secret() for _ in range(50)}
    assert len(secrets) == 50
    for secret in secrets:
        assert re.fullmatch(r"[A-Za-z0-9_-]{43}", secret), secret  # 256 bits


def test_hash_then_verify() -> None:
    async def run() -> None:
        stored = await hash_secret("correct horse battery staple")
        assert await verify_secret(stored, "correct horse battery staple")
        assert not await verify_secret(stored, "correct horse battery stapl")
        assert not await verify_secret(stored, "")
        assert not await verify_secret(stored, "Correct horse battery staple")

    asyncio.run(run())


def test_hashes_are_salted_argon2id_with_the_owasp_parameters() -> None:
    async def run() -> tuple[str, str]:
        return await hash_secret("pässwörd"), await hash_secret("pässwörd")

    first, second = asyncio.run(run())
    assert first != second
    assert "pässwörd" not in first
    assert first.startswith("$argon2id$v=19$m=19456,t=2,p=1$"), first
    assert PasswordHasher().verify(first, "pässwörd")


@pytest.mark.parametrize("stored", [None, "", "not-a-hash", "$argon2id$v=19$m=1,t=1,p=1$x$y"])
def test_no_or_unusable_stored_hash_never_verifies(stored: str | None) -> None:
    assert not asyncio.run(verify_secret(stored, "anything"))


def test_a_missing_account_costs_a_real_verification(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a stored hash the dummy one is checked, so timing does not reveal names."""
    checked: list[str] = []
    real = passwords._HASHER

    class Recording:
        def verify(self, stored: str, secret: str) -> bool:
            checked.append(stored)
            return real.verify(stored, secret)

    monkeypatch.setattr(passwords, "_HASHER", Recording())
    assert not asyncio.run(verify_secret(None, "guess"))
    assert checked == [passwords._DUMMY_HASH]
    assert checked[0].startswith("$argon2id$")


def test_fingerprint_is_sha256_hex() -> None:
    secret = generate_secret()
    assert fingerprint(secret) == hashlib.sha256(secret.encode()).hexdigest()
    assert re.fullmatch(r"[0-9a-f]{64}", fingerprint(secret))
    assert fingerprint(secret) == fingerprint(secret)
    assert fingerprint(secret) != fingerprint(secret + "x")
