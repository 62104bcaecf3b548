"""What users saw, from load records: RTOs, degradation, the edge's retries, RPO. Pure: records
and times in, figures out (chaos.load writes the records, chaos.gameday reads the stores).

Time: every request is assigned to a 1 s bucket by its COMPLETION time, counted from the fault
(bucket k holds requests done in [fault + k, fault + k + 1)), so requests in flight at the fault
count after it. The fault time is stamped by the action immediately before its first signal or call.

- availability RTO: fault -> start of the first 30 s window (30 buckets, each with requests) with
  success >= 99.9 %, p99 <= 180 ms and no empty homepage slate. "met" with its seconds; "not met"
  when the load covered at least one whole window after the fault and none held; "not measured"
  when the load ended before one whole window fit.
- quality RTO: fault -> start of the first 30 s window in which the affected geographies' share
  of personalised homepage answers (chaos.load_records: full or cached, for a known user; a failed
  request is not personalised) is back within 5 points of its share before the fault.
- degradation: per tier, the seconds of the affected geographies' homepage traffic answered by
  it after the fault (the tier's share of each bucket, summed over buckets); degraded requests and
  degraded request-seconds (the same sum for every answer that was not personalised).
- the edge: first-attempt failure rate (reads whose first attempt did not answer: what users
  would have seen without the edge's retry) and retry rate, after the fault.
- RPO: the lost region's events acknowledged before the fault, matched by event id against what
  its geography's surviving regions hold in their replica streams of that region. RPO = fault -
  ack time of the newest event that survived with every earlier one; `lost` counts the missing.
  0 acknowledged events: "not measured", which never passes.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

SLO_SUCCESS = 0.999
"""Requirement: 99.9 % of requests succeed within a window (availability 99.99 % over a quarter)."""
SLO_P99_MS = 180.0
"""Requirement: end-to-end p99 of 180 ms, also during failover."""
RTO_WINDOW_S = 30
"""A recovery counts once the SLO has held for a whole 30 s window (30 one-second buckets)."""
QUALITY_TOLERANCE = 0.05
"""Personalisation is back when its share is within 5 points of the share before the fault."""
MET, NOT_MET, NOT_MEASURED = "met", "not met", "not measured"
LOST_IDS_SHOWN = 50
"""Reports list at most this many lost event ids (the count is always exact)."""


@dataclass(frozen=True)
class Request:
    """One load record, reduced to what the measurement needs."""

    t: float
    """Scheduled send time, epoch seconds."""
    done: float
    """Completion time, epoch seconds (bucketing is by this)."""
    ok: bool
    latency_ms: float
    kind: str = "homepage"
    empty: bool = False
    geo: str = ""
    tier: str | None = None
    personalised: bool | None = None
    first_ok: bool | None = None
    retries: int = 0


def to_requests(records: Iterable[Mapping[str, Any]]) -> list[Request]:
    """chaos.load records -> Request (records of the old format without `done` use t + latency)."""
    out = []
    for r in records:
        if "t" not in r:
            continue
        t = float(r["t"])
        latency = float(r.get("latency_ms") or 0.0)
        out.append(Request(t=t, done=float(r.get("done", t + latency / 1000.0)), ok=bool(r.get("ok")), latency_ms=latency,
                           kind=str(r.get("kind", "homepage")), empty=bool(r.get("empty", r.get("slate_len") == 0 and r.get("kind") == "homepage")),
                           geo=str(r.get("geo") or ""), tier=r.get("tier") if r.get("ok") else None,
                           personalised=r.get("personalised"), first_ok=r.get("first_ok"), retries=int(r.get("retries") or 0)))
    return out


def bucketed(requests: Sequence[Request], *, fault_at: float, bucket_s: float = 1.0) -> dict[int, list[Request]]:
    """Requests by completion bucket, k = floor((done - fault) / bucket_s)."""
    groups: dict[int, list[Request]] = {}
    for r in requests:
        groups.setdefault(int(math.floor((r.done - fault_at) / bucket_s)), []).append(r)
    return groups


@dataclass(frozen=True)
class WindowVerdict:
    start: float
    requests: int
    success_rate: float
    p99_ms: float
    empty_slates: int
    silent_buckets: int = 0
    """One-second buckets of the window in which no request completed (a stalled load proves nothing)."""

    @property
    def holds(self) -> bool:
        return (self.requests > 0 and self.silent_buckets == 0 and self.success_rate >= SLO_SUCCESS
                and self.p99_ms <= SLO_P99_MS and self.empty_slates == 0)


def window_verdict(requests: Sequence[Request], *, start: float, buckets: int = RTO_WINDOW_S) -> WindowVerdict:
    """The SLO over the requests completed in [start, start + buckets s)."""
    chosen = [r for r in requests if start <= r.done < start + buckets]
    seen = {int(math.floor(r.done - start)) for r in chosen}
    return _verdict(start, chosen, silent=buckets - len(seen))


def _verdict(start: float, chosen: Sequence[Request], *, silent: int = 0) -> WindowVerdict:
    if not chosen:
        return WindowVerdict(start=start, requests=0, success_rate=0.0, p99_ms=math.inf, empty_slates=0, silent_buckets=silent)
    ok = sum(1 for r in chosen if r.ok)
    lat = np.array([r.latency_ms for r in chosen], dtype=float)
    return WindowVerdict(start=start, requests=len(chosen), success_rate=ok / len(chosen),
                         p99_ms=float(np.percentile(lat, 99)), empty_slates=sum(1 for r in chosen if r.empty),
                         silent_buckets=silent)


@dataclass(frozen=True)
class Rto:
    status: str
    """met | not met | not measured"""
    seconds: float | None
    recovered_at: float | None
    reason: str
    covered_s: float = 0.0
    """How long after the fault the load ran (a "not met" says nothing about recovery after that)."""

    @property
    def measured(self) -> bool:
        return self.status == MET


def _first_window(groups: Mapping[int, Sequence[Request]], *, fault_at: float, last_bucket: int, window: int,
                  holds: Any) -> tuple[int | None, int]:
    """(k of the first window [k, k + window) of buckets that `holds`, windows tried)."""
    tried = 0
    for k in range(0, last_bucket - window + 2):
        tried += 1
        chosen = [r for b in range(k, k + window) for r in groups.get(b, ())]
        if holds(k, chosen, sum(1 for b in range(k, k + window) if not groups.get(b))):
            return k, tried
    return None, tried


def _last_bucket(groups: Mapping[int, Sequence[Request]]) -> int:
    """The last whole bucket: the final one is cut short by the end of the load."""
    return max(groups) - 1 if groups else -1


def compute_rto(requests: Sequence[Request], *, fault_at: float, window_s: int = RTO_WINDOW_S) -> Rto:
    """Availability RTO (see the module docstring)."""
    if not requests:
        return Rto(status=NOT_MEASURED, seconds=None, recovered_at=None, reason="no load records")
    groups = bucketed(requests, fault_at=fault_at)
    last = _last_bucket(groups)
    covered = float(last + 1)
    if last + 1 < window_s:
        return Rto(status=NOT_MEASURED, seconds=None, recovered_at=None, covered_s=max(covered, 0.0),
                   reason=f"the load ended {max(covered, 0):.0f} s after the fault, before one whole {window_s} s window; run it longer")
    worst: list[WindowVerdict] = []

    def holds(k: int, chosen: Sequence[Request], silent: int) -> bool:
        verdict = _verdict(fault_at + k, chosen, silent=silent)
        worst.append(verdict)
        return verdict.holds

    k, _ = _first_window(groups, fault_at=fault_at, last_bucket=last, window=window_s, holds=holds)
    if k is not None:
        return Rto(status=MET, seconds=float(k), recovered_at=fault_at + k, covered_s=covered,
                   reason=f"the SLO held for the whole {window_s} s window from {k} s after the fault")
    best = max(worst, key=lambda v: (v.success_rate, -v.p99_ms))
    return Rto(status=NOT_MET, seconds=None, recovered_at=None, covered_s=covered,
               reason=f"no {window_s} s window in the {covered:.0f} s after the fault held the SLO (success >= "
                      f"{SLO_SUCCESS:.1%}, p99 <= {SLO_P99_MS:g} ms, no empty slate); the best had success "
                      f"{best.success_rate:.2%}, p99 {best.p99_ms:.0f} ms, {best.empty_slates} empty slates, "
                      f"{best.silent_buckets} silent seconds")


def _homepages(requests: Iterable[Request], geos: set[str] | None) -> list[Request]:
    return [r for r in requests if r.kind == "homepage" and (geos is None or r.geo in geos)]


def personalised_share(requests: Sequence[Request]) -> float | None:
    """Share of homepage requests answered personalised (failed ones count as not), None if none."""
    pages = [r for r in requests if r.kind == "homepage"]
    return sum(1 for r in pages if r.personalised) / len(pages) if pages else None


@dataclass(frozen=True)
class QualityRto:
    status: str
    seconds: float | None
    baseline_share: float | None
    """Personalised share of the affected geographies' homepages before the fault."""
    reason: str
    geographies: tuple[str, ...] = ()
    covered_s: float = 0.0

    @property
    def measured(self) -> bool:
        return self.status == MET


def compute_quality_rto(requests: Sequence[Request], *, fault_at: float, geographies: Iterable[str] | None = None,
                        baseline_from: float | None = None, window_s: int = RTO_WINDOW_S,
                        tolerance: float = QUALITY_TOLERANCE) -> QualityRto:
    """Quality RTO (see the module docstring). `geographies` None: every geography is affected;
    the baseline is the share of homepages completed in [baseline_from, fault)."""
    geos = set(geographies) if geographies is not None else None
    named = tuple(sorted(geos)) if geos is not None else ("all",)
    pages = _homepages(requests, geos)
    before = [r for r in pages if (baseline_from is None or r.done >= baseline_from) and r.done < fault_at]
    baseline = personalised_share(before)
    if baseline is None:
        return QualityRto(status=NOT_MEASURED, seconds=None, baseline_share=None, geographies=named,
                          reason="no homepage of the affected geographies completed before the fault: no baseline")
    groups = bucketed([r for r in pages if r.done >= fault_at], fault_at=fault_at)
    last = _last_bucket(groups)
    covered = float(max(last + 1, 0))
    if last + 1 < window_s:
        return QualityRto(status=NOT_MEASURED, seconds=None, baseline_share=baseline, geographies=named, covered_s=covered,
                          reason=f"the load ended {covered:.0f} s after the fault, before one whole {window_s} s window")
    shares: list[float] = []

    def holds(_k: int, chosen: Sequence[Request], silent: int) -> bool:
        share = personalised_share(chosen)
        shares.append(share if share is not None else 0.0)
        return share is not None and silent == 0 and share >= baseline - tolerance

    k, _ = _first_window(groups, fault_at=fault_at, last_bucket=last, window=window_s, holds=holds)
    if k is not None:
        return QualityRto(status=MET, seconds=float(k), baseline_share=baseline, geographies=named, covered_s=covered,
                          reason=f"personalised share back within {tolerance:.0%} points of {baseline:.1%} from {k} s after the fault")
    return QualityRto(status=NOT_MET, seconds=None, baseline_share=baseline, geographies=named, covered_s=covered,
                      reason=f"the personalised share never came back within {tolerance:.0%} points of {baseline:.1%} for a "
                             f"{window_s} s window in the {covered:.0f} s after the fault (best window {max(shares):.1%})")


@dataclass(frozen=True)
class Degradation:
    tier_seconds: Mapping[str, float]
    """Seconds of the affected geographies' homepage traffic answered by each tier after the fault
    ("error": failed requests)."""
    degraded_requests: int
    degraded_request_seconds: float
    personalised_over_time: Sequence[tuple[int, float]] = field(default_factory=tuple)
    """(bucket k, personalised share) from the first bucket of the load to its last."""


def degradation(requests: Sequence[Request], *, fault_at: float, geographies: Iterable[str] | None = None,
                until: float | None = None) -> Degradation:
    geos = set(geographies) if geographies is not None else None
    pages = _homepages(requests, geos)
    groups = bucketed(pages, fault_at=fault_at)
    tier_seconds: dict[str, float] = {}
    degraded_s = 0.0
    degraded_n = 0
    for k, chosen in groups.items():
        if k < 0 or (until is not None and fault_at + k >= until):
            continue
        for r in chosen:
            tier = r.tier if r.ok and r.tier else "error"
            tier_seconds[tier] = tier_seconds.get(tier, 0.0) + 1.0 / len(chosen)
            if not r.personalised:
                degraded_n += 1
                degraded_s += 1.0 / len(chosen)
    over_time = tuple((k, personalised_share(groups[k]) or 0.0) for k in sorted(groups))
    return Degradation(tier_seconds=dict(sorted(tier_seconds.items())), degraded_requests=degraded_n,
                       degraded_request_seconds=degraded_s, personalised_over_time=over_time)


@dataclass(frozen=True)
class EdgeRetries:
    reads: int
    """Reads through the edge after the fault whose answer listed its attempts."""
    first_attempt_failures: int
    retried: int

    @property
    def first_attempt_failure_rate(self) -> float | None:
        return self.first_attempt_failures / self.reads if self.reads else None

    @property
    def retry_rate(self) -> float | None:
        return self.retried / self.reads if self.reads else None


def edge_retries(requests: Sequence[Request], *, start: float, end: float | None = None) -> EdgeRetries:
    """First-attempt failures and retries of the reads completed in [start, end)."""
    chosen = [r for r in requests if r.kind != "events" and r.first_ok is not None and r.done >= start
              and (end is None or r.done < end)]
    return EdgeRetries(reads=len(chosen), first_attempt_failures=sum(1 for r in chosen if not r.first_ok),
                       retried=sum(1 for r in chosen if r.retries > 0))


@dataclass(frozen=True)
class AckedEvent:
    event_id: str
    acked_at: float
    region: str


@dataclass(frozen=True)
class Rpo:
    status: str
    """measured | not measured"""
    seconds: float | None
    lost: int
    acknowledged: int
    """Acknowledged events of the lost region before the fault."""
    newest_durable_at: float | None
    lost_ids: Sequence[str] = ()
    """The first LOST_IDS_SHOWN lost event ids, oldest first."""
    reason: str = ""


def compute_rpo(acked: Iterable[AckedEvent], *, lost_region: str, fault_at: float, durable_ids: set[str]) -> Rpo:
    """RPO of `lost_region`: which of its acknowledged events its geography's survivors hold."""
    mine = sorted((e for e in acked if e.region == lost_region and e.acked_at <= fault_at), key=lambda e: e.acked_at)  # stable: batch order
    if not mine:
        return Rpo(status=NOT_MEASURED, seconds=None, lost=0, acknowledged=0, newest_durable_at=None,
                   reason=f"no event was acknowledged by {lost_region} before the fault: nothing to measure an RPO on")
    lost = [e for e in mine if e.event_id not in durable_ids]
    newest_durable: float | None = None
    for event in mine:
        if event.event_id not in durable_ids:
            break
        newest_durable = event.acked_at
    shown = tuple(e.event_id for e in lost[:LOST_IDS_SHOWN])
    if not lost:
        return Rpo(status="measured", seconds=0.0, lost=0, acknowledged=len(mine), newest_durable_at=newest_durable,
                   reason=f"all {len(mine)} acknowledged events of {lost_region} are held by its geography's survivors")
    anchor = newest_durable if newest_durable is not None else min(e.acked_at for e in mine)
    return Rpo(status="measured", seconds=max(fault_at - anchor, 0.0), lost=len(lost), acknowledged=len(mine),
               newest_durable_at=newest_durable, lost_ids=shown,
               reason=f"{len(lost)} of {len(mine)} acknowledged events of {lost_region} are in no survivor's replica stream")


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
