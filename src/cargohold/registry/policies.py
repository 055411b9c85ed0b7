"""What a cleanup run removes, decided without I/O: from tag and cache records and a clock.

Cleanup policies (hosted repositories) choose tags to delete. Among the tags an image has,
those that match the policy's match patterns (all tags when it has none) and none of its
keep patterns are considered; a considered tag is deleted when every rule the policy sets
holds for it:

- `keep_last`: it is not among the N most recently pushed considered tags of its image;
- `older_than_days`: it was pushed (or last moved) more than that many days ago;
- `unpulled_days`: it was not pulled for that many days (a tag never pulled counts from
  when it was pushed).

A policy without any of these rules deletes nothing. Patterns are regular expressions that
must match the whole tag.

Proxy caches are evicted by age (`max_age_days` without a pull, or since cached when never
pulled) and then by size (least recently pulled first while the cache holds more than
`max_bytes`). An index is evicted together with the child manifests it lists, and a child
listed by an index is never evicted apart from it.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cargohold.db.metadata import CachedManifest, TagRecord
from cargohold.registry.errors import InvalidInput

DAY = 86400.0


def _days(seconds: float) -> str:
    return f"{seconds / DAY:.1f} days"


@dataclass(frozen=True, slots=True)
class CleanupPolicy:
    keep_last: int | None = None
    older_than_days: float | None = None
    unpulled_days: float | None = None
    keep_patterns: tuple[str, ...] = ()
    match_patterns: tuple[str, ...] = ()

    def checked(self) -> CleanupPolicy:
        """The policy, once its numbers and patterns make sense."""
        for name in ("keep_last", "older_than_days", "unpulled_days"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise InvalidInput(f"cleanup {name} must be zero or more")
        for pattern in (*self.keep_patterns, *self.match_patterns):
            try:
                re.compile(pattern)
            except re.error as error:
                raise InvalidInput(
                    f"cleanup pattern {pattern!r} is not a regular expression: {error}"
                ) from None
        return self

    @property
    def has_rules(self) -> bool:
        return (self.keep_last, self.older_than_days, self.unpulled_days) != (None, None, None)

    def to_json(self) -> dict[str, Any]:
        return {
            "keep_last": self.keep_last,
            "older_than_days": self.older_than_days,
            "unpulled_days": self.unpulled_days,
            "keep_patterns": list(self.keep_patterns),
            "match_patterns": list(self.match_patterns),
        }

    @classmethod
    def from_json(cls, stored: Mapping[str, Any] | None) -> CleanupPolicy | None:
        if stored is None:
            return None
        return cls(
            keep_last=stored.get("keep_last"),
            older_than_days=stored.get("older_than_days"),
            unpulled_days=stored.get("unpulled_days"),
            keep_patterns=tuple(stored.get("keep_patterns") or ()),
            match_patterns=tuple(stored.get("match_patterns") or ()),
        )


@dataclass(frozen=True, slots=True)
class TagDeletion:
    tag: TagRecord
    reasons: tuple[str, ...]


def _matches_any(patterns: Sequence[re.Pattern[str]], name: str) -> bool:
    return any(pattern.fullmatch(name) for pattern in patterns)


def _why_deleted(
    policy: CleanupPolicy, tag: TagRecord, rank: int, now: float
) -> tuple[str, ...] | None:
    """Why the considered tag goes, one reason a rule; None when a rule keeps it."""
    reasons = []
    if policy.keep_last is not None:
        if rank < policy.keep_last:
            return None
        reasons.append(f"not among the {policy.keep_last} newest tags of {tag.image}")
    if policy.older_than_days is not None:
        age = now - tag.updated_at
        if age <= policy.older_than_days * DAY:
            return None
        reasons.append(f"pushed {_days(age)} ago (limit {policy.older_than_days:g})")
    if policy.unpulled_days is not None:
        idle = now - (tag.updated_at if tag.last_pulled_at is None else tag.last_pulled_at)
        if idle <= policy.unpulled_days * DAY:
            return None
        pulled = "never pulled since pushed" if tag.last_pulled_at is None else "last pulled"
        reasons.append(f"{pulled} {_days(idle)} ago (limit {policy.unpulled_days:g})")
    return tuple(reasons)


def tags_to_delete(
    policy: CleanupPolicy, tags: Iterable[TagRecord], now: float
) -> list[TagDeletion]:
    """The tags the policy deletes at `now`, by image and tag name."""
    if not policy.has_rules:
        return []
    keep = [re.compile(pattern) for pattern in policy.keep_patterns]
    match = [re.compile(pattern) for pattern in policy.match_patterns]
    by_image: dict[str, list[TagRecord]] = {}
    for tag in tags:
        if (not match or _matches_any(match, tag.name)) and not _matches_any(keep, tag.name):
            by_image.setdefault(tag.image, []).append(tag)
    deletions = []
    for image in sorted(by_image):
        newest_first = sorted(
            by_image[image], key=lambda tag: (tag.updated_at, tag.name), reverse=True
        )
        for rank, tag in enumerate(newest_first):
            reasons = _why_deleted(policy, tag, rank, now)
            if reasons is not None:
                deletions.append(TagDeletion(tag, reasons))
    return sorted(deletions, key=lambda deletion: (deletion.tag.image, deletion.tag.name))


@dataclass(frozen=True, slots=True)
class Eviction:
    manifest: CachedManifest
    reasons: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _Unit:
    """A manifest and the child manifests it lists: evicted together."""

    members: tuple[CachedManifest, ...]

    @property
    def last_used(self) -> float:
        return max(member.last_used for member in self.members)

    @property
    def contents(self) -> dict[str, int]:
        """The digests of what it holds in the cache (manifests and blobs), with sizes."""
        held: dict[str, int] = {}
        for member in self.members:
            held[member.digest] = member.size
            held.update(member.blobs)
        return held


def _units(manifests: Sequence[CachedManifest]) -> list[_Unit]:
    """Each manifest no index lists, with the manifests it lists; least recently used
    first."""
    by_key = {(manifest.image, manifest.digest): manifest for manifest in manifests}
    children: dict[tuple[str, str], list[CachedManifest]] = {}
    listed: set[tuple[str, str]] = set()
    for manifest in manifests:
        for child in sorted(manifest.children):
            key = (manifest.image, child)
            if key in by_key and key not in listed:
                listed.add(key)
                children.setdefault((manifest.image, manifest.digest), []).append(by_key[key])
    units = [
        _Unit((manifest, *children.get(key, ())))
        for key, manifest in by_key.items()
        if key not in listed
    ]
    return sorted(
        units, key=lambda unit: (unit.last_used, unit.members[0].image, unit.members[0].digest)
    )


def manifests_to_evict(
    manifests: Sequence[CachedManifest],
    *,
    max_age_days: float | None,
    max_bytes: int | None,
    now: float,
) -> list[Eviction]:
    """The cached manifests to evict at `now`, least recently used first, each index
    before the children it lists."""
    units = _units(manifests)
    holders: Counter[str] = Counter()
    sizes: dict[str, int] = {}
    for unit in units:
        contents = unit.contents
        holders.update(contents.keys())
        sizes.update(contents)
    cached_bytes = sum(sizes.values())
    evictions: list[Eviction] = []
    for unit in units:  # least recently used first
        idle = now - unit.last_used
        if max_age_days is not None and idle > max_age_days * DAY:
            reason = f"not pulled for {_days(idle)} (limit {max_age_days:g})"
        elif max_bytes is not None and cached_bytes > max_bytes:
            reason = (
                f"the cache holds {cached_bytes} bytes, more than {max_bytes}:"
                f" least recently pulled ({_days(idle)} ago)"
            )
        else:
            break
        for key in unit.contents:
            holders[key] -= 1
            if holders[key] == 0:
                cached_bytes -= sizes[key]
        evictions.extend(Eviction(member, (reason,)) for member in unit.members)
    return evictions
