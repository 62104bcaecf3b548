"""The edge's view of the routing table: a thread following `routing/table` in the control store
(failover.control_store.wait_for_change: the store's watch where it has one, etcd; else a poll
every interval).

A malformed table or an unreachable store keeps the last good table (fail-static at the edge).
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, replace
from typing import Callable

from contracts.routing_table import RoutingTable, default_table, parse_table
from contracts.store_keys import TABLE_KEY
from failover.control_store import POLL, WATCH_TIMEOUT_S, ControlStore, log_mode_change, wait_for_change
from regions.errors import ShopNowError
from regions.following_thread import FollowingThread
from regions.topology import Topology

log = logging.getLogger("shopnow.edge")


@dataclass(frozen=True, kw_only=True)
class WatchState:
    """What the edge routes by now, and since when (wall clock, for the steering-time measurement)."""

    table: RoutingTable
    source: str
    """"store" (read from the control store) or "default" (none there yet, or none given)."""
    first_seen_at: float | None
    """When this edge first saw this table version; None for the default table."""
    store_version: int = 0
    polls: int = 0
    error: str = ""
    """The last problem reading or parsing the table ("" when the last poll was fine)."""
    follow: str = POLL
    """How the watcher waits for the next table: "watch" (the store's watch, etcd) or "poll"
    (every interval_s: a store without a watch, or while the watch is broken)."""


class TableWatcher(FollowingThread):
    """Reads `routing/table` in a daemon thread after each change (the store's watch where it has
    one, else every `interval_s`); `state` is swapped atomically.

    A malformed table or an unreachable store keeps the last good table (fail-static at the edge).
    """

    def __init__(self, store: ControlStore | None, topology: Topology, *, interval_s: float,
                 clock: Callable[[], float] = time.time,
                 on_change: Callable[[WatchState], None] | None = None,
                 watch_timeout_s: float = WATCH_TIMEOUT_S) -> None:
        self._store, self._topology, self._interval = store, topology, interval_s
        self._clock, self._on_change = clock, on_change
        self._watch_timeout = watch_timeout_s
        self._read_version = 0
        """The version last read, parsed or not: the watch waits for the next one."""
        self.state = WatchState(table=default_table(topology), source="default", first_seen_at=None)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._thread_name = "routing-table-watcher"

    def poll_once(self) -> WatchState:
        state = self.state
        if self._store is None:
            self.state = state = replace(state, polls=state.polls + 1)
            return state
        try:
            found = self._store.get(TABLE_KEY)
            self._read_version = found.version if found else 0
            if found is None or found.version == state.store_version:
                new = replace(state, polls=state.polls + 1, error="")
            else:
                table = parse_table(found.value, self._topology)
                new = WatchState(table=table, source="store", first_seen_at=self._clock(),
                                 store_version=found.version, polls=state.polls + 1, follow=state.follow)
        except ShopNowError as exc:
            log.warning("routing table not updated, keeping version %s: %s", state.table.version, exc)
            new = replace(state, polls=state.polls + 1, error=str(exc))
        self.state = new
        if new.table is not state.table and self._on_change is not None:
            self._on_change(new)
        return new

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll_once()
            except Exception:  # a bug must not stop the watcher: log it and keep the last table
                log.exception("routing table watcher failed; keeping the last table")
            follow, why = wait_for_change(self._store, TABLE_KEY, after_version=self._read_version,
                                          watch_timeout_s=self._watch_timeout, poll_interval_s=self._interval,
                                          stop=self._stop)
            log_mode_change(TABLE_KEY, self.state.follow, follow, why)
            if follow != self.state.follow:
                self.state = replace(self.state, follow=follow)
