"""Pull statistics: how often each tag and manifest was pulled, and when last.

A pull is a manifest GET that succeeded (a HEAD is not a pull, as on Docker Hub and in
Harbor). Pulls are counted in memory and written in one transaction every few seconds, when
enough distinct keys wait, and at shutdown, so that a pull never waits on a database write.
Memory is bounded: at most `max_pending` distinct keys wait; pulls of further keys before
the next write are not counted (and are counted as `dropped`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from cargohold.db.metadata import MetadataStore, PullCount
from cargohold.oci.digest import Digest
from cargohold.oci.names import parse_reference
from cargohold.registry.router import NameRouter, Target

log = logging.getLogger(__name__)

# (image id, tag or None for a pull by digest, manifest digest)
PullKey = tuple[int, str | None, str]


class PullRecorder:
    def __init__(
        self,
        metadata: MetadataStore,
        router: NameRouter,
        *,
        flush_seconds: float,
        max_pending: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._metadata = metadata
        self._router = router
        self._flush_seconds = flush_seconds
        self._max_pending = max_pending
        self._clock = clock
        self._pending: dict[PullKey, PullCount] = {}
        self._full = asyncio.Event()
        self.dropped = 0
        self._dropped_reported = 0

    async def record(self, target: Target, reference: str, digest: str) -> None:
        """Count a pull of `target` by `reference` (a tag or a digest) that got `digest`."""
        image_id = await self._router.image_id(target)  # cached: the pull just resolved it
        if image_id is None:
            return
        tag = None if isinstance(parse_reference(reference), Digest) else reference
        self.add(PullCount(image_id, tag, digest, 1, self._clock()))

    def add(self, pulls: PullCount) -> None:
        key = (pulls.image_id, pulls.tag, pulls.digest)
        known = self._pending.get(key)
        if known is not None:
            self._pending[key] = known.merged(pulls)
            return
        if len(self._pending) >= self._max_pending:
            self.dropped += pulls.count
            return
        self._pending[key] = pulls
        if len(self._pending) >= self._max_pending:
            self._full.set()

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def flush(self) -> int:
        """Write what waits; on failure (or when cancelled) it waits for the next flush."""
        if self.dropped > self._dropped_reported:
            log.warning(
                "%d pulls were not counted: more than %d tags and manifests were pulled"
                " between two writes (pull_stats_max_pending)",
                self.dropped - self._dropped_reported,
                self._max_pending,
            )
            self._dropped_reported = self.dropped
        batch, self._pending = list(self._pending.values()), {}
        self._full.clear()
        if not batch:
            return 0
        try:
            await self._metadata.record_pulls(batch)
        except BaseException:  # also cancelled at shutdown: the final flush writes them
            for pulls in batch:
                self.add(pulls)
            raise
        return len(batch)

    async def run(self) -> None:
        """Flush every `flush_seconds`, or as soon as the batch is full, until cancelled."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._full.wait(), self._flush_seconds)
            try:
                await self.flush()
            except Exception:
                log.exception("writing pull statistics failed; trying again later")
                await asyncio.sleep(self._flush_seconds)
