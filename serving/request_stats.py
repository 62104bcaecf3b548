"""Recent requests of a cell (the last 60 s): error rate, p99, QPS and tier mix for /readyz.

The window is bounded in time and in count (at most `max_records`), so memory stays flat at any
load. `summary(now)` is computed from a snapshot; time is passed in.
"""
from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass

import numpy as np

WINDOW_S = 60.0
"""The controller probes every second; a minute smooths noise and still reacts within one."""
MAX_RECORDS = 50_000
"""Enough for ~800 QPS over the window; beyond it the oldest are dropped."""


@dataclass(frozen=True)
class Summary:
    requests: int
    error_rate: float
    p99_ms: float
    qps: float
    tier_mix: dict[str, float]
    p50_ms: float = 0.0


class RequestStats:
    def __init__(self, *, window_s: float = WINDOW_S, max_records: int = MAX_RECORDS) -> None:
        self.window_s = window_s
        self._records: deque[tuple[float, float, bool, str]] = deque(maxlen=max_records)
        self._lock = threading.Lock()

    def record(self, *, at: float, latency_ms: float, ok: bool, tier: str) -> None:
        with self._lock:
            self._records.append((at, latency_ms, ok, tier))

    def summary(self, now: float) -> Summary:
        with self._lock:
            while self._records and self._records[0][0] < now - self.window_s:
                self._records.popleft()
            records = list(self._records)
        return summarize(records, window_s=self.window_s, now=now)


def summarize(records: list[tuple[float, float, bool, str]], *, window_s: float, now: float) -> Summary:
    """Pure: the summary of (at, latency_ms, ok, tier) records within `window_s` before `now`."""
    recent = [r for r in records if now - window_s <= r[0] <= now]
    if not recent:
        return Summary(requests=0, error_rate=0.0, p99_ms=0.0, qps=0.0, tier_mix={})
    errors = sum(1 for r in recent if not r[2])
    span = max(min(window_s, now - recent[0][0]), 1.0)
    mix: dict[str, float] = {}
    for r in recent:
        mix[r[3]] = mix.get(r[3], 0.0) + 1.0
    return Summary(
        requests=len(recent), error_rate=errors / len(recent),
        p99_ms=float(np.percentile(np.array([r[1] for r in recent]), 99)),
        p50_ms=float(np.percentile(np.array([r[1] for r in recent]), 50)),
        qps=len(recent) / span, tier_mix={t: n / len(recent) for t, n in sorted(mix.items())},
    )
