from __future__ import annotations

from cargohold.registry.cache import ContentCache


def test_returns_what_was_put() -> None:
    cache = ContentCache(max_bytes=100)
    cache.put("a", b"x" * 10)
    assert cache.get("a") == b"x" * 10
    assert cache.get("b") is None


def test_evicts_least_recently_used_beyond_the_budget() -> None:
    cache = ContentCache(max_bytes=30)
    cache.put("a", b"a" * 10)
    cache.put("b", b"b" * 10)
    cache.put("c", b"c" * 10)
    assert cache.get("a") is not None  # a is now the most recently used
    cache.put("d", b"d" * 10)
    assert cache.get("b") is None
    assert [cache.get(key) is not None for key in "acd"] == [True, True, True]


def test_ignores_entries_larger_than_the_budget() -> None:
    cache = ContentCache(max_bytes=5)
    cache.put("big", b"x" * 6)
    assert cache.get("big") is None
