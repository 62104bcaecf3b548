"""Caching full slates for the cached tier (and recording impressions), off the request path and in batches.

A request only appends (user, slate) to a bounded queue: no thread is woken, no lock is taken
(deque appends are atomic), no JSON is encoded on the request's thread. The cell's background
thread calls `flush()` every few tens of milliseconds, which writes everything pending in ONE
pipelined round trip (`write_many`). When the queue is full, new slates are dropped: it is a
cache, and the user's next full answer refreshes it. With `latest_only=False` every queued entry
is written (the cell's impressions: serving.recommender), not only each user's latest; a full
queue drops them the same way (counted in `dropped`).
"""
from __future__ import annotations

import logging
from collections import deque
from typing import Any, Callable, Sequence

log = logging.getLogger(__name__)

MAX_PENDING = 1000
"""Bounded queue: memory stays flat when Redis is slow or down."""

WriteMany = Callable[[Sequence[tuple[str, Any]]], None]


class SlateWriter:
    def __init__(self, write_many: WriteMany, *, max_pending: int = MAX_PENDING, latest_only: bool = True) -> None:
        self._write_many = write_many
        self._pending: deque[tuple[str, Any]] = deque()
        self.max_pending = max_pending
        self.latest_only = latest_only
        self.dropped = 0
        """Slates not cached: the queue was full, or their write failed."""

    def offer(self, user_id: str, slate: Any) -> bool:
        """Queue a slate; False (dropped) when `max_pending` are already waiting."""
        if len(self._pending) >= self.max_pending:
            self.dropped += 1
            return False
        self._pending.append((user_id, slate))
        return True

    def pending(self) -> int:
        return len(self._pending)

    def flush(self) -> int:
        """Write what is pending in one batch; returns how many were written (0 on failure: the
        batch is dropped, never retried into a growing backlog)."""
        batch: list[tuple[str, Any]] = []
        pending = self._pending
        while pending and len(batch) < self.max_pending:
            batch.append(pending.popleft())
        if not batch:
            return 0
        latest = list({user: (user, slate) for user, slate in batch}.values()) if self.latest_only else batch  # a user's latest slate wins
        try:
            self._write_many(latest)
        except Exception as exc:  # a cache write must never take the background thread down
            self.dropped += len(latest)
            log.debug("could not cache %d slates: %s", len(latest), exc)
            return 0
        return len(latest)
