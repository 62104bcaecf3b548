"""Pure statistics of the serving and saturation benchmarks (bench/serving_bench.py,
bench/saturation_bench.py). No clock, no processes, no files: the benchmarks measure, this module
summarises and decides.

    percentile(values, q)                       re-exported from replication.lag (the one percentile)
    summarize(latencies_ms, wall_s=)            -> LatencyStats (count, p50, p99, mean, max, requests/s)
    ratio(numerator, denominator)               end-to-end / floor
    cpu_ms_per_request(ticks=, clock_ticks_per_s=, requests=)
    calibration_from(costs, machine=, measured_at=, cores=, saturation_qps=)   -> capacity Calibration
    LoadStep / saturation_of(steps, slo_ms=)    the throughput plateau of an open-loop load ramp
    error_pct(measured, predicted)              signed relative error in %
    rss_of_status(text) / overhead_ms(via, direct) / cpu_ns_of_schedstat(text)   memory, proxy overhead, CPU ns
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping, Sequence

from capacity.model import Calibration, TierCost, require_number
from contracts.tiers import TIER_NAMES
from regions.errors import InputError
from replication.lag import percentile


@dataclass(frozen=True)
class LatencyStats:
    """One phase of closed-loop requests: latency percentiles and throughput."""

    count: int
    p50_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float
    rps: float
    """Requests per second over the phase's wall time (sequential: about 1000 / mean_ms)."""

    def to_dict(self) -> dict[str, float]:
        return {"count": self.count, "p50_ms": round(self.p50_ms, 4), "p99_ms": round(self.p99_ms, 4),
                "mean_ms": round(self.mean_ms, 4), "max_ms": round(self.max_ms, 4), "rps": round(self.rps, 2)}


def summarize(latencies_ms: Sequence[float], *, wall_s: float) -> LatencyStats:
    """Summarise a phase; `wall_s` is the time the whole phase took (for requests per second)."""
    require_number("wall_s", wall_s, inclusive=False)
    return LatencyStats(
        count=len(latencies_ms), p50_ms=percentile(latencies_ms, 50), p99_ms=percentile(latencies_ms, 99),
        mean_ms=sum(latencies_ms) / len(latencies_ms), max_ms=max(latencies_ms), rps=len(latencies_ms) / wall_s,
    )


def ratio(numerator: float, denominator: float) -> float:
    """numerator / denominator, for end-to-end over floor; the denominator must be > 0."""
    require_number("numerator", numerator)
    require_number("denominator", denominator, inclusive=False)
    return numerator / denominator


def core_ticks_of_stat(text: str, cpu: int) -> tuple[int, int]:
    """(busy, total) clock ticks of one CPU since boot, from the text of /proc/stat (line `cpu<N>`).

    busy counts user, nice, system, irq, softirq and steal; idle and iowait are not busy. guest time
    is already inside user, so it is not added again.
    """
    prefix = f"cpu{cpu} "
    line = next((ln for ln in text.splitlines() if ln.startswith(prefix)), None)
    if line is None:
        raise InputError("cpu", f"no line for CPU {cpu} in /proc/stat")
    try:
        values = [int(v) for v in line.split()[1:9]]
    except ValueError as exc:
        raise InputError("stat", f"CPU {cpu}'s counters are not integers: {line!r}") from exc
    if len(values) < 4:
        raise InputError("stat", f"CPU {cpu}'s line has fewer than 4 counters: {line!r}")
    values += [0] * (8 - len(values))
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


def others_share(*, core_busy_ticks: int, core_total_ticks: int, own_ticks: int) -> float:
    """Share of a core's time that other processes took while ours ran on it (0..1)."""
    if core_total_ticks <= 0:
        raise InputError("core_total_ticks", f"must be > 0, got {core_total_ticks}")
    return min(max((core_busy_ticks - own_ticks) / core_total_ticks, 0.0), 1.0)


def cpu_ms_per_request(*, ticks: int, clock_ticks_per_s: int, requests: int) -> float:
    """CPU milliseconds one request cost: `ticks` of CPU spent over `requests` requests."""
    if ticks < 0:
        raise InputError("ticks", f"CPU time cannot go backwards, got {ticks} ticks")
    if clock_ticks_per_s <= 0:
        raise InputError("clock_ticks_per_s", f"must be > 0 (os.sysconf('SC_CLK_TCK')), got {clock_ticks_per_s}")
    if requests <= 0:
        raise InputError("requests", f"must be > 0 to divide CPU time among them, got {requests}")
    return ticks * 1000.0 / clock_ticks_per_s / requests


@dataclass(frozen=True)
class MeasuredCost:
    """What the serving benchmark measured for one tier."""

    cpu_ms: float
    """CPU of the cell process per request (all its threads: server, tier work, Redis client)."""
    p99_ms: float
    """p99 latency of the tier seen by the client over loopback (closed loop, one request at a time)."""


def calibration_from(costs: Mapping[str, MeasuredCost], *, machine: str, measured_at: float, cores: float = 1.0,
                     saturation_qps: float | None = None) -> Calibration:
    """A capacity Calibration from measured tier costs; source says 'measured on <machine>'.

    Without a measured `saturation_qps` it is what the costs predict for `cores` busy cores of full
    ranking (1000 * cores / cpu_ms(full)); the saturation benchmark replaces it with a measurement.
    """
    missing = [t for t in TIER_NAMES if t not in costs]
    if missing:
        raise InputError(f"tiers.{missing[0]}", f"not measured; the calibration needs every tier: {', '.join(TIER_NAMES)}")
    tiers = {t: TierCost(cpu_ms=costs[t].cpu_ms, p99_ms=costs[t].p99_ms) for t in TIER_NAMES}
    require_number("cores", cores, inclusive=False)
    if saturation_qps is None:
        full = require_number("tiers.full.cpu_ms", costs["full"].cpu_ms, inclusive=False)
        saturation_qps = cores * 1000.0 / full
    return Calibration(machine=machine, measured_at=measured_at, tiers=tiers, saturation_qps=saturation_qps,
                       source=f"measured on {machine}")


@dataclass(frozen=True)
class LoadStep:
    """One step of an open-loop ramp: what was offered and what the cell delivered."""

    offered_qps: float
    achieved_qps: float
    """Successful answers per second completed inside the step's window, whatever tier served them."""
    as_asked_qps: float
    """Those of them served by the tier the request asked for (the ladder degrades under overload)."""
    p99_ms: float
    errors: int
    """Failed, timed-out, or shed by the client because too many requests were in flight."""
    requests: int
    cpu_utilisation: float
    """Busy share of the cell's one core during the step (CPU seconds / wall seconds)."""
    tiers: Mapping[str, int] = field(default_factory=dict)
    """Answers per serving tier (the ladder may degrade under overload)."""
    others_share: float = 0.0
    """Share of the cell's core that OTHER processes used during the step (a shared machine's noise)."""
    error_kinds: Mapping[str, int] = field(default_factory=dict)
    """Errors by kind: 'shed' (client backlog bound), 'timeout', 'http <status>', 'connection'."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "tiers", MappingProxyType(dict(self.tiers)))
        object.__setattr__(self, "error_kinds", MappingProxyType(dict(self.error_kinds)))

    @property
    def cpu_ms_per_answer(self) -> float:
        """The cell's CPU per answer under this load (inf when nothing was answered)."""
        return self.cpu_utilisation * 1000.0 / self.achieved_qps if self.achieved_qps > 0 else math.inf

    @property
    def implied_capacity_qps(self) -> float:
        """Answers per second one whole core would give at this step's CPU per answer."""
        return self.achieved_qps / self.cpu_utilisation if self.cpu_utilisation > 0 else 0.0

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    def within_slo(self, slo_ms: float) -> bool:
        return self.errors == 0 and self.p99_ms <= slo_ms

    def to_dict(self) -> dict[str, object]:
        return {"offered_qps": round(self.offered_qps, 2), "achieved_qps": round(self.achieved_qps, 2),
                "as_asked_qps": round(self.as_asked_qps, 2),
                "p99_ms": round(self.p99_ms, 2), "errors": self.errors, "requests": self.requests,
                "cpu_utilisation": round(self.cpu_utilisation, 3), "others_share": round(self.others_share, 3),
                "cpu_ms_per_answer": round(self.cpu_ms_per_answer, 3), "implied_capacity_qps": round(self.implied_capacity_qps, 2),
                "tiers": dict(self.tiers), "error_kinds": dict(self.error_kinds)}


@dataclass(frozen=True)
class Saturation:
    """Where a ramp saturated."""

    plateau_qps: float
    """Highest throughput served as asked at any step: the measured saturation QPS of the mix."""
    plateau_step: int
    """Index of the step that delivered it (the first such step on a tie)."""
    slo_qps: float
    """Highest throughput (as asked) of a step that still met the SLO with no errors (0 when none did)."""
    first_breach: int | None
    """Index of the first step whose p99 exceeded the SLO or that had errors; None when none did."""
    saturated: bool
    """True when the ramp went past the plateau: a step breached, or offered exceeded served-as-asked by > 5 %."""


def saturation_of(steps: Sequence[LoadStep], *, slo_ms: float) -> Saturation:
    """The throughput plateau of a ramp (steps in increasing offered load)."""
    if not steps:
        raise InputError("steps", "need at least one load step")
    require_number("slo_ms", slo_ms, inclusive=False)
    breach = next((n for n, s in enumerate(steps) if not s.within_slo(slo_ms)), None)
    ok = [s.as_asked_qps for s in steps if s.within_slo(slo_ms)]
    overloaded = any(s.as_asked_qps < 0.95 * s.offered_qps for s in steps)
    best = max(range(len(steps)), key=lambda n: (steps[n].as_asked_qps, -n))
    return Saturation(plateau_qps=steps[best].as_asked_qps, plateau_step=best, slo_qps=max(ok, default=0.0),
                      first_breach=breach, saturated=breach is not None or overloaded)


def error_pct(measured: float, predicted: float) -> float:
    """(measured - predicted) / predicted in %: positive when the cell did better than predicted."""
    require_number("predicted", predicted, inclusive=False)
    require_number("measured", measured)
    return (measured - predicted) / predicted * 100.0


def ramp(predicted_qps: float, fractions: Sequence[float]) -> tuple[float, ...]:
    """Offered rates of a ramp around a prediction, in increasing order."""
    require_number("predicted_qps", predicted_qps, inclusive=False)
    if not fractions:
        raise InputError("fractions", "need at least one step")
    for f in fractions:
        require_number("fractions", f, inclusive=False)
    return tuple(predicted_qps * f for f in sorted(fractions))


__all__ = [
    "LatencyStats", "LoadStep", "MeasuredCost", "Saturation", "calibration_from", "cpu_ms_per_request",
    "core_ticks_of_stat", "error_pct", "others_share", "percentile", "ramp", "ratio", "saturation_of", "summarize",
]


def rss_of_status(text: str) -> float:
    """VmRSS of a /proc/<pid>/status text, in MiB; InputError when the line is missing."""
    for line in text.splitlines():
        if line.startswith("VmRSS:"):
            parts = line.split()
            if len(parts) >= 2 and parts[1].isdigit():
                return int(parts[1]) / 1024.0
    raise InputError("VmRSS", "not found in the process status text")


def overhead_ms(via: LatencyStats, direct: LatencyStats) -> tuple[float, float]:
    """(p50, p99) a proxy adds: latency through it minus the direct call it wraps, same run."""
    return via.p50_ms - direct.p50_ms, via.p99_ms - direct.p99_ms


def cpu_ns_of_schedstat(text: str) -> int:
    """Time on CPU in ns from a /proc/<pid>/task/<tid>/schedstat line ("run_ns wait_ns slices"):
    nanosecond resolution, where /proc/<pid>/stat counts 10 ms ticks."""
    parts = text.split()
    if len(parts) < 3 or not all(p.isdigit() for p in parts[:3]):
        raise InputError("schedstat", f"expected three integers, got {text.strip()[:80]!r}")
    return int(parts[0])
