"""Cleanup policies and proxy cache eviction decide from records and a clock alone: fixtures
of tags and cached manifests with given ages and pull times, and exactly what goes, why."""

from __future__ import annotations

import pytest

from cargohold.db.metadata import TagRecord
from cargohold.registry.errors import InvalidInput
from cargohold.registry.policies import (
    DAY,
    CachedManifest,
    CleanupPolicy,
    manifests_to_evict,
    tags_to_delete,
)

NOW = 1_800_000_000.0


def tag(
    name: str,
    pushed_days_ago: float,
    pulled_days_ago: float | None = None,
    image: str = "app",
) -> TagRecord:
    pulled = None if pulled_days_ago is None else NOW - pulled_days_ago * DAY
    return TagRecord(
        image,
        name,
        f"sha256:{image}-{name}",
        NOW - pushed_days_ago * DAY,
        pulled,
        0 if pulled is None else 1,
    )


# Tags of `app`, newest first: v5 (1 day), v4 (10), v3 (20), v2 (40), v1 (90), and two others.
TAGS = [
    tag("v1", 90, pulled_days_ago=2),
    tag("v2", 40),
    tag("v3", 20, pulled_days_ago=15),
    tag("v4", 10),
    tag("v5", 1),
    tag("latest", 100),
    tag("stable", 60, image="base"),
]


def deleted(policy: CleanupPolicy, tags: list[TagRecord] = TAGS) -> list[str]:
    return [f"{d.tag.image}:{d.tag.name}" for d in tags_to_delete(policy, tags, NOW)]


def test_a_policy_without_rules_deletes_nothing() -> None:
    assert deleted(CleanupPolicy()) == []
    assert deleted(CleanupPolicy(match_patterns=(".*",))) == []


def test_keep_last_keeps_the_newest_of_each_image() -> None:
    assert deleted(CleanupPolicy(keep_last=3)) == ["app:latest", "app:v1", "app:v2"]
    assert deleted(CleanupPolicy(keep_last=0)) == [
        "app:latest",
        "app:v1",
        "app:v2",
        "app:v3",
        "app:v4",
        "app:v5",
        "base:stable",
    ]
    assert deleted(CleanupPolicy(keep_last=10)) == []


def test_older_than_counts_from_the_push() -> None:
    assert deleted(CleanupPolicy(older_than_days=30)) == [
        "app:latest",
        "app:v1",
        "app:v2",
        "base:stable",
    ]
    # Exactly the limit is not older than it.
    assert deleted(CleanupPolicy(older_than_days=40)) == ["app:latest", "app:v1", "base:stable"]


def test_unpulled_counts_from_the_last_pull_or_else_the_push() -> None:
    # v1 is old but was pulled 2 days ago; v3 was pulled 15 days ago; v2 never, pushed 40.
    assert deleted(CleanupPolicy(unpulled_days=14)) == [
        "app:latest",
        "app:v2",
        "app:v3",
        "base:stable",
    ]
    assert deleted(CleanupPolicy(unpulled_days=30)) == ["app:latest", "app:v2", "base:stable"]


def test_every_rule_set_must_hold() -> None:
    policy = CleanupPolicy(keep_last=2, older_than_days=15, unpulled_days=14)
    # v3 and v2 and v1 are beyond the newest 2 and older than 15 days; v1 was pulled lately.
    assert deleted(policy) == ["app:latest", "app:v2", "app:v3"]


def test_keep_patterns_protect_and_do_not_count_towards_keep_last() -> None:
    policy = CleanupPolicy(keep_last=2, keep_patterns=("latest", r"v[45]"))
    assert deleted(policy) == ["app:v1"]


def test_match_patterns_limit_what_is_considered_and_match_whole_tags() -> None:
    policy = CleanupPolicy(older_than_days=5, match_patterns=(r"v\d",))
    assert deleted(policy) == ["app:v1", "app:v2", "app:v3", "app:v4"]
    assert deleted(CleanupPolicy(older_than_days=5, match_patterns=("v",))) == []
    assert deleted(CleanupPolicy(keep_last=1, match_patterns=("v.*",), keep_patterns=("v1",))) == [
        "app:v2",
        "app:v3",
        "app:v4",
    ]


def test_ties_in_push_time_are_broken_by_name() -> None:
    same = [tag("a", 5), tag("b", 5), tag("c", 5)]
    assert deleted(CleanupPolicy(keep_last=1), same) == ["app:a", "app:b"]


def test_each_deletion_says_why() -> None:
    [v2] = [d for d in tags_to_delete(CleanupPolicy(2, 30, 30), TAGS, NOW) if d.tag.name == "v2"]
    assert v2.reasons == (
        "not among the 2 newest tags of app",
        "pushed 40.0 days ago (limit 30)",
        "never pulled since pushed 40.0 days ago (limit 30)",
    )
    [v3] = [
        d for d in tags_to_delete(CleanupPolicy(unpulled_days=10), TAGS, NOW) if d.tag.name == "v3"
    ]
    assert v3.reasons == ("last pulled 15.0 days ago (limit 10)",)


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        (CleanupPolicy(keep_last=-1), "keep_last"),
        (CleanupPolicy(older_than_days=-0.5), "older_than_days"),
        (CleanupPolicy(keep_patterns=("v[",)), "not a regular expression"),
        (CleanupPolicy(match_patterns=("(",)), "not a regular expression"),
    ],
)
def test_nonsense_policies_are_refused(policy: CleanupPolicy, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        policy.checked()


def test_a_policy_survives_its_json() -> None:
    policy = CleanupPolicy(3, 30.0, None, ("latest",), (r"v\d+",))
    assert CleanupPolicy.from_json(policy.to_json()) == policy
    assert CleanupPolicy.from_json(None) is None


# Proxy caches


def cached(
    digest: str,
    used_days_ago: float,
    *,
    pulled: bool = True,
    size: int = 100,
    blobs: dict[str, int] | None = None,
    children: frozenset[str] = frozenset(),
    image: str = "library/nginx",
) -> CachedManifest:
    moment = NOW - used_days_ago * DAY
    return CachedManifest(
        image,
        digest,
        size,
        cached_at=moment if not pulled else NOW - 365 * DAY,
        last_pulled_at=moment if pulled else None,
        blobs=blobs or {},
        children=children,
    )


def evicted(manifests: list[CachedManifest], **limits: float | None) -> list[str]:
    options = {"max_age_days": None, "max_bytes": None, **limits}
    return [
        e.manifest.digest
        for e in manifests_to_evict(
            manifests,
            max_age_days=options["max_age_days"],
            max_bytes=None if options["max_bytes"] is None else int(options["max_bytes"]),
            now=NOW,
        )
    ]


CACHE = [
    cached("m-old", 40, blobs={"l-shared": 1000, "l-old": 500}),
    cached("m-never", 20, pulled=False, blobs={"l-never": 300}),
    cached("m-mid", 10, blobs={"l-shared": 1000, "l-mid": 200}),
    cached("m-new", 1, blobs={"l-new": 400}),
]


def test_no_limits_evict_nothing() -> None:
    assert evicted(CACHE) == []


def test_age_counts_from_the_last_pull_or_else_from_caching() -> None:
    assert evicted(CACHE, max_age_days=30) == ["m-old"]
    assert evicted(CACHE, max_age_days=15) == ["m-old", "m-never"]
    assert evicted(CACHE, max_age_days=0.5) == ["m-old", "m-never", "m-mid", "m-new"]


def test_size_evicts_least_recently_pulled_until_under_the_limit() -> None:
    # Everything: 4 manifests (400) + blobs 1000 + 500 + 300 + 200 + 400 = 2800 bytes.
    assert evicted(CACHE, max_bytes=2800) == []
    # m-old frees only 600: its shared layer stays with m-mid.
    assert evicted(CACHE, max_bytes=2799) == ["m-old"]
    assert evicted(CACHE, max_bytes=2200) == ["m-old"]
    assert evicted(CACHE, max_bytes=2199) == ["m-old", "m-never"]
    assert evicted(CACHE, max_bytes=500) == ["m-old", "m-never", "m-mid"]
    assert evicted(CACHE, max_bytes=0) == ["m-old", "m-never", "m-mid", "m-new"]


def test_age_then_size() -> None:
    assert evicted(CACHE, max_age_days=30, max_bytes=1000) == ["m-old", "m-never", "m-mid"]


def test_an_index_goes_with_its_children_and_its_latest_use() -> None:
    manifests = [
        cached("index", 50, children=frozenset({"child-a", "child-b"})),
        cached("child-a", 2),  # pulled lately through the index
        cached("child-b", 50),
        cached("alone", 10),
    ]
    assert evicted(manifests, max_age_days=30) == []
    assert evicted(manifests, max_age_days=5) == ["alone"]
    assert evicted(manifests, max_age_days=1) == ["alone", "index", "child-a", "child-b"]
    assert evicted(manifests, max_bytes=300) == ["alone"]
    assert evicted(manifests, max_bytes=0) == ["alone", "index", "child-a", "child-b"]


def test_each_eviction_says_why() -> None:
    [by_age, by_size] = manifests_to_evict(CACHE[:2], max_age_days=30, max_bytes=0, now=NOW)
    assert by_age.reasons == ("not pulled for 40.0 days (limit 30)",)
    assert by_size.reasons == (
        "the cache holds 400 bytes, more than 0: least recently pulled (20.0 days ago)",
    )
