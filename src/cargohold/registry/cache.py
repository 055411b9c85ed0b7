"""A size-bounded LRU of immutable content by digest (manifest bytes)."""

from __future__ import annotations

from collections import OrderedDict


class ContentCache:
    def __init__(self, max_bytes: int) -> None:
        self._max_bytes = max_bytes
        self._bytes = 0
        self._entries: OrderedDict[str, bytes] = OrderedDict()

    def get(self, digest: str) -> bytes | None:
        data = self._entries.get(digest)
        if data is not None:
            self._entries.move_to_end(digest)
        return data

    def put(self, digest: str, data: bytes) -> None:
        if len(data) > self._max_bytes or digest in self._entries:
            return
        self._entries[digest] = data
        self._bytes += len(data)
        while self._bytes > self._max_bytes:
            _, evicted = self._entries.popitem(last=False)
            self._bytes -= len(evicted)
