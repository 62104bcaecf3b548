"""RTO and RPO from load records. Pure: records and times in, numbers out.

Definitions (the game-day contract):
- RTO: from fault injection to the START of the first window of `window_s` (30 s) in which the SLO
  holds again: success rate >= 99.9 %, p99 latency <= 180 ms, no empty homepage slate. A window
  must lie wholly inside the load's span, so an RTO is only "measured" when the load ran at least
  `window_s` past recovery; otherwise it is reported as not measured (never guessed).
- RPO: for the lost region, the acknowledged events it took before the fault that no surviving
  region of its geography holds are LOST. When none are lost, RPO = 0 s (every acknowledged event
  survived). When some are lost, RPO = fault time - ack time of the newest event that survived with
  every earlier one (the window of acknowledged data that is gone), and `lost` counts them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

SLO_SUCCESS = 0.999
"""Requirement: 99.9 % of requests succeed within a window (availability 99.99 % over a quarter)."""
SLO_P99_MS = 180.0
"""Requirement: end-to-end p99 of 180 ms, also during failover."""
RTO_WINDOW_S = 30.0
"""A recovery counts once the SLO has held for a whole 30 s window."""
GRID_S = 0.25
"""Candidate window starts are tried every 250 ms: finer than any RTO we report."""


@dataclass(frozen=True)
class Request:
    """One load request's outcome (the fields the measurement needs)."""

    t: float
    """Send time, epoch seconds."""
    ok: bool
    latency_ms: float
    kind: str = "homepage"
    slate_len: int = -1
    """Items returned for a recommendation request; -1 when not a recommendation."""


@dataclass(frozen=True)
class WindowVerdict:
    start: float
    requests: int
    success_rate: float
    p99_ms: float
    empty_slates: int

    @property
    def holds(self) -> bool:
        return self.requests > 0 and self.success_rate >= SLO_SUCCESS and self.p99_ms <= SLO_P99_MS and self.empty_slates == 0


@dataclass(frozen=True)
class Rto:
    measured: bool
    seconds: float | None
    recovered_at: float | None
    reason: str


def window_verdict(requests: Sequence[Request], *, start: float, length: float = RTO_WINDOW_S) -> WindowVerdict:
    chosen = [r for r in requests if start <= r.t < start + length]
    return _verdict(start, chosen)


def _verdict(start: float, chosen: Sequence[Request]) -> WindowVerdict:
    if not chosen:
        return WindowVerdict(start=start, requests=0, success_rate=0.0, p99_ms=math.inf, empty_slates=0)
    ok = sum(1 for r in chosen if r.ok)
    lat = np.array([r.latency_ms for r in chosen], dtype=float)
    empty = sum(1 for r in chosen if r.kind == "homepage" and r.ok and r.slate_len == 0)
    return WindowVerdict(
        start=start, requests=len(chosen), success_rate=ok / len(chosen),
        p99_ms=float(np.percentile(lat, 99)), empty_slates=empty,
    )


def compute_rto(requests: Sequence[Request], *, fault_at: float, window_s: float = RTO_WINDOW_S, grid_s: float = GRID_S) -> Rto:
    """Time from `fault_at` to the start of the first window in which the SLO holds."""
    reqs = sorted(requests, key=lambda r: r.t)
    if not reqs:
        return Rto(measured=False, seconds=None, recovered_at=None, reason="no load records")
    times = np.array([r.t for r in reqs])
    load_end = times[-1]
    start = fault_at
    while start + window_s <= load_end + 1e-9:
        lo, hi = np.searchsorted(times, [start, start + window_s], side="left")
        verdict = _verdict(start, reqs[lo:hi])
        if verdict.holds:
            return Rto(measured=True, seconds=start - fault_at, recovered_at=start, reason="SLO held for a whole window")
        start += grid_s
    return Rto(
        measured=False, seconds=None, recovered_at=None,
        reason=f"the SLO did not hold for a whole {window_s:.0f}s window before the load ended "
               f"({load_end - fault_at:.1f}s after the fault); run the load longer",
    )


@dataclass(frozen=True)
class AckedEvent:
    seq: int
    acked_at: float
    region: str


@dataclass(frozen=True)
class Rpo:
    seconds: float
    lost: int
    acknowledged: int
    """Acknowledged events of the lost region before the fault."""
    newest_durable_at: float | None


def compute_rpo(acked: Iterable[AckedEvent], *, lost_region: str, fault_at: float, durable_seqs: set[int]) -> Rpo:
    """RPO of `lost_region`: which of its acknowledged events survive elsewhere (`durable_seqs`)."""
    mine = sorted((e for e in acked if e.region == lost_region and e.acked_at <= fault_at), key=lambda e: (e.acked_at, e.seq))
    lost = [e for e in mine if e.seq not in durable_seqs]
    newest_durable: float | None = None
    for event in mine:
        if event.seq not in durable_seqs:
            break
        newest_durable = event.acked_at
    if not lost:
        return Rpo(seconds=0.0, lost=0, acknowledged=len(mine), newest_durable_at=newest_durable)
    anchor = newest_durable if newest_durable is not None else min(e.acked_at for e in mine)
    return Rpo(seconds=max(fault_at - anchor, 0.0), lost=len(lost), acknowledged=len(mine), newest_durable_at=newest_durable)


def tier_mix(requests: Iterable[Mapping[str, object]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for rec in requests:
        tier = str(rec.get("tier") or "error")
        counts[tier] = counts.get(tier, 0) + 1
    return dict(sorted(counts.items()))


def first_rollback_at(journal: Mapping[str, Any]) -> float | None:
    """`at` of the first rollback that reported one (the end of the fault window)."""
    for run in journal.get("rollbacks", []) or []:
        if isinstance(run.get("output"), dict) and isinstance(run["output"].get("at"), (int, float)):
            return float(run["output"]["at"])
    return None
