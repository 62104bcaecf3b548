"""Routing-table propagation: how long from a table written to the store until an edge's watcher
routes by it (or by a newer one). `bench/bench_watch.py` prints the figures.

    summarize(delays_s, missed)   pure: p50 / p99 / max over the per-write delays
    measure(store, topology, ...) writes `writes` tables to routing/table with random spacing while
                                  a real TableWatcher (the edge's) follows the key, and returns the
                                  delay of each write: the first time the watcher held that version
                                  or a newer one, minus the time the write was sent

A write the watcher never reached within `settle_s` counts as missed (its delay is unknown).
"""
from __future__ import annotations

import json
import random
import threading
import time
from dataclasses import dataclass

from contracts.store_keys import TABLE_KEY
from edge.table_watcher import TableWatcher, WatchState
from failover.control_store import WATCH_TIMEOUT_S, ControlStore
from regions.errors import InputError
from regions.topology import Topology
from replication.lag import percentile


@dataclass(frozen=True)
class Propagation:
    writes: int
    missed: int
    p50_s: float
    p99_s: float
    max_s: float
    follow: str
    """How the watcher waited at the end: "watch" or "poll"."""

    def line(self, label: str) -> str:
        return (f"{label}: {self.writes} writes, p50 {self.p50_s * 1000:.1f} ms, p99 {self.p99_s * 1000:.1f} ms, "
                f"max {self.max_s * 1000:.1f} ms, missed {self.missed}, watcher mode {self.follow}")


def summarize(delays_s: list[float], *, missed: int, follow: str) -> Propagation:
    if not delays_s:
        raise InputError("delays_s", "no write reached the watcher: nothing to summarize")
    return Propagation(writes=len(delays_s) + missed, missed=missed, p50_s=percentile(delays_s, 50),
                       p99_s=percentile(delays_s, 99), max_s=max(delays_s), follow=follow)


def measure(store: ControlStore, topology: Topology, *, writes: int = 100, spacing_s: tuple[float, float] = (0.02, 0.08),
            poll_interval_s: float = 0.15, watch_timeout_s: float = WATCH_TIMEOUT_S, settle_s: float = 3.0,
            seed: int = 7) -> Propagation:
    """See the module docstring. `spacing_s` is the (min, max) pause between writes."""
    if writes < 1:
        raise InputError("writes", f"must be at least 1, got {writes}")
    seen: list[tuple[int, float]] = []
    lock = threading.Lock()

    def on_change(state: WatchState) -> None:
        with lock:
            seen.append((state.table.version, state.first_seen_at or time.time()))

    found = store.get(TABLE_KEY)
    base = int(json.loads(found.value).get("version", 0)) if found else 0
    watcher = TableWatcher(store, topology, interval_s=poll_interval_s, on_change=on_change,
                           watch_timeout_s=watch_timeout_s)
    watcher.start()
    rng = random.Random(seed)
    written: dict[int, float] = {}
    try:
        deadline = time.monotonic() + 10
        while watcher.state.polls == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        for n in range(1, writes + 1):
            version = base + n
            written[version] = time.time()  # before the write: its own latency is part of the delay
            store.put(TABLE_KEY, json.dumps({"version": version, "updated_at": written[version],
                                             "fail_static": False, "geos": {}}))
            time.sleep(rng.uniform(*spacing_s))
        last = base + writes
        deadline = time.monotonic() + settle_s
        while time.monotonic() < deadline:
            with lock:
                if any(v >= last for v, _ in seen):
                    break
            time.sleep(0.01)
    finally:
        watcher.stop()
    delays, missed = [], 0
    with lock:
        observed = list(seen)
    for version, at in written.items():
        reached = [t for v, t in observed if v >= version]
        if reached:
            delays.append(max(0.0, min(reached) - at))
        else:
            missed += 1
    return summarize(delays, missed=missed, follow=watcher.state.follow)
