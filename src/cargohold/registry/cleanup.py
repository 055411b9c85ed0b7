"""Cleanup runs: each repository's cleanup policy deletes tags, and each proxy's cache limits
evict cached manifests (registry/policies.py decides what goes).

Deleting a tag removes only the tag: its manifest, untagged, and the blobs it uses are left
for garbage collection. Evicting from a proxy cache removes the cached manifest, its tags,
and the image's links to blobs nothing else there uses, so that garbage collection frees the
bytes; the next pull fetches them from the upstream again.

A dry run reports what a real run at the same moment would remove, and removes nothing; a
real run reports what it removed (a tag that moved since the decision is left alone).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from cargohold.db.metadata import MetadataStore, RepositoryRecord
from cargohold.registry.content import StoredContent
from cargohold.registry.errors import NotFound
from cargohold.registry.integrity import human_size
from cargohold.registry.leases import Lease
from cargohold.registry.policies import CleanupPolicy, manifests_to_evict, tags_to_delete
from cargohold.registry.pulls import PullRecorder

log = logging.getLogger(__name__)

LEASE = "cleanup"
# Not renewed while a run goes on: a run longer than this may overlap the next node's, which
# is harmless (a tag deleted twice is deleted once); a holder that died delays runs this long.
LEASE_SECONDS = 600.0


@dataclass(frozen=True, slots=True)
class DeletedTag:
    repository: str
    image: str
    tag: str
    digest: str
    reasons: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class EvictedManifest:
    repository: str
    image: str
    digest: str
    size: int
    reasons: tuple[str, ...]


@dataclass(slots=True)
class CleanupReport:
    dry_run: bool
    started_at: float
    repositories: list[str] = field(default_factory=list)
    deleted_tags: list[DeletedTag] = field(default_factory=list)
    evicted_manifests: list[EvictedManifest] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        verb = "would delete" if self.dry_run else "deleted"
        return (
            f"cleanup of {len(self.repositories)} repositories {verb}"
            f" {len(self.deleted_tags)} tags and {'would evict' if self.dry_run else 'evicted'}"
            f" {len(self.evicted_manifests)} cached manifests"
        )

    def lines(self) -> list[str]:
        """The report for people: one removal a line, then the summary."""
        verb = "would delete" if self.dry_run else "deleted"
        lines = [
            f"{verb} {deleted.repository}/{deleted.image}:{deleted.tag} ({deleted.digest}):"
            f" {'; '.join(deleted.reasons)}"
            for deleted in self.deleted_tags
        ]
        verb = "would evict" if self.dry_run else "evicted"
        lines += [
            f"{verb} {evicted.repository}/{evicted.image}@{evicted.digest}"
            f" ({human_size(evicted.size)}): {'; '.join(evicted.reasons)}"
            for evicted in self.evicted_manifests
        ]
        lines.append(self.summary())
        return lines


class CleanupService:
    def __init__(
        self,
        metadata: MetadataStore,
        pulls: PullRecorder,
        content: StoredContent,
        lease: Lease,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._metadata = metadata
        self._pulls = pulls
        self._content = content
        self._lease = lease
        self._clock = clock

    async def run(
        self, project: str | None = None, repository: str | None = None, *, dry_run: bool
    ) -> CleanupReport:
        """Apply the policies and cache limits of every repository, of a project's, or of
        one repository."""
        chosen = [
            candidate
            for candidate in await self._metadata.list_repositories()
            if project in (None, candidate.project) and repository in (None, candidate.name)
        ]
        if project is not None and not chosen:
            where = project if repository is None else f"{project}/{repository}"
            raise NotFound(f"no repository matches {where!r}")
        # Decide on the pull statistics this process has counted too.
        await self._pulls.flush()
        report = CleanupReport(dry_run, self._clock())
        for chosen_repository in chosen:
            if chosen_repository.is_proxy:
                await self._evict(chosen_repository, report)
            else:
                await self._delete_tags(chosen_repository, report)
        return report

    async def _delete_tags(self, repository: RepositoryRecord, report: CleanupReport) -> None:
        policy = CleanupPolicy.from_json(repository.cleanup_policy)
        if policy is None:
            return
        name = repository.prefix.rstrip("/")
        report.repositories.append(name)
        records = await self._metadata.tag_records(repository.id)
        deletions = tags_to_delete(policy, records, report.started_at)
        doomed = [(d.tag.image, d.tag.name, d.tag.digest) for d in deletions]
        deleted = set(
            doomed if report.dry_run else await self._metadata.delete_tags(repository.id, doomed)
        )
        report.deleted_tags.extend(
            DeletedTag(name, d.tag.image, d.tag.name, d.tag.digest, d.reasons)
            for d in deletions
            if (d.tag.image, d.tag.name, d.tag.digest) in deleted
        )

    async def _evict(self, repository: RepositoryRecord, report: CleanupReport) -> None:
        if (repository.cache_max_age_days, repository.cache_max_bytes) == (None, None):
            return
        name = repository.prefix.rstrip("/")
        report.repositories.append(name)
        evictions = manifests_to_evict(
            await self._metadata.cached_manifests(repository.id),
            max_age_days=repository.cache_max_age_days,
            max_bytes=repository.cache_max_bytes,
            now=report.started_at,
        )
        for eviction in evictions:
            manifest = eviction.manifest
            if not report.dry_run:
                if not await self._metadata.evict_manifest(
                    repository.id, manifest.image, manifest.digest
                ):
                    continue
                # Its bytes go with it, unless another image holds the same manifest; the
                # blobs it used are garbage collection's.
                await self._content.remove_unless_described([manifest.digest])
            report.evicted_manifests.append(
                EvictedManifest(
                    name, manifest.image, manifest.digest, manifest.size, eviction.reasons
                )
            )

    async def run_if_due(self, interval_seconds: float) -> CleanupReport | None:
        """The scheduled run over every repository (see `Lease.run_if_due`), logged a
        removal a line; None when it did not run."""
        return await self._lease.run_if_due(self._logged_run, interval_seconds)

    async def _logged_run(self) -> CleanupReport:
        report = await self.run(dry_run=False)
        for line in report.lines():
            log.info("%s", line)
        return report
