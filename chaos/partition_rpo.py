"""Replication across a partition of two regions of one geography (chaos.net_actions.partition_regions):
the live RPO while they cannot reach each other, and after healing, whether every acknowledged
event reached its peer exactly once. Pure; chaos.gameday reads the evidence.

    live RPO       the sampler's `rpo` ({"a->b": seconds}, replication.metrics.replication_status read
                   from the host every 0.5 s); its peak during the fault is what a region loss at that
                   moment would have cost
    after healing  the game day waits for both directions to catch up, then reads each peer's
                   `log:replica:<source>` since the load started and counts every acknowledged event
                   (the load's answers, by the region that stored it) by id: missing = lost, held
                   more than once = duplicated

Verdicts: lost = 0 and duplicated = 0 are requirements (the RPO requirement, and replication's
exactly-once promise); a live RPO that never rose above RISE_S while the regions were cut off means
the partition was not observed: the game day is invalid.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Iterable, Mapping, Sequence

from chaos.measurement import AckedEvent
from chaos.verdicts import FAIL, PASS, Verdict, overall

RISE_S = 3.0
"""Replication ships within about a second; a pair that never lagged 3 s while cut off was not cut."""
SHOWN = 10


@dataclass(frozen=True)
class PartitionReplication:
    pair: tuple[str, str]
    live_rpo_before_s: float | None
    """The peak live RPO of either direction before the fault (the steady state)."""
    live_rpo_peak_s: float | None
    """The peak live RPO of either direction while the regions were cut off."""
    drained_after_s: float | None
    """Seconds from healing until both directions had caught up (None: not within the wait)."""
    acknowledged: int
    lost: int
    duplicated: int
    lost_ids: tuple[str, ...] = ()
    duplicated_ids: tuple[str, ...] = ()

    @property
    def observed(self) -> bool:
        return self.live_rpo_peak_s is not None and self.live_rpo_peak_s >= RISE_S


def live_rpo(samples: Sequence[Mapping[str, Any]], pair: tuple[str, str], *, start: float, end: float) -> float | None:
    """The largest sampled live RPO of either direction of `pair` in [start, end)."""
    a, b = pair
    values = [float(v) for s in samples if start <= float(s.get("t", 0.0)) < end
              for k, v in (s.get("rpo") or {}).items() if k in (f"{a}->{b}", f"{b}->{a}") and v is not None]
    return max(values) if values else None


def drained_after(samples: Sequence[Mapping[str, Any]], pair: tuple[str, str], *, healed_at: float) -> float | None:
    """Seconds from healing to the first sample with both directions caught up (None: no such sample)."""
    a, b = pair
    for s in sorted(samples, key=lambda s: float(s.get("t", 0.0))):
        lags = s.get("rpo") or {}
        if float(s.get("t", 0.0)) >= healed_at and lags.get(f"{a}->{b}") == 0.0 and lags.get(f"{b}->{a}") == 0.0:
            return float(s["t"]) - healed_at
    return None


def measure(*, pair: tuple[str, str], samples: Sequence[Mapping[str, Any]], acked: Iterable[AckedEvent],
            replica_counts: Mapping[str, Mapping[str, int]], fault_at: float, healed_at: float,
            drained_after_s: float | None, load_started: float) -> PartitionReplication:
    """`replica_counts[source]` = {event_id: times held} in the peer's log:replica:<source>;
    `drained_after_s` is the game day's own wait, used when no sample after healing shows both
    directions caught up."""
    a, b = pair
    sampled = drained_after(samples, pair, healed_at=healed_at)
    mine = [e for e in acked if e.region in pair]
    lost = [e.event_id for e in mine if replica_counts.get(e.region, {}).get(e.event_id, 0) == 0]
    dup = sorted(i for counts in replica_counts.values() for i, n in counts.items() if n > 1)
    return PartitionReplication(
        pair=(a, b), live_rpo_before_s=live_rpo(samples, pair, start=load_started, end=fault_at),
        live_rpo_peak_s=live_rpo(samples, pair, start=fault_at, end=healed_at),
        drained_after_s=sampled if sampled is not None else drained_after_s,
        acknowledged=len(mine), lost=len(lost), duplicated=len(dup), lost_ids=tuple(lost[:SHOWN]),
        duplicated_ids=tuple(dup[:SHOWN]))


def not_observed(found: PartitionReplication) -> list[str]:
    """Why the partition was not observed ([] when it was)."""
    if found.observed:
        return []
    peak = "never read" if found.live_rpo_peak_s is None else f"peaked at {found.live_rpo_peak_s:.1f} s"
    return [f"the partition was not observed: the live RPO of {found.pair[0]}<->{found.pair[1]} {peak} while they were "
            f"cut off (a real cut makes it grow past {RISE_S:g} s)"]


def verdicts(found: PartitionReplication) -> list[Verdict]:
    note = f"of {found.acknowledged} acknowledged events of {found.pair[0]} and {found.pair[1]}"
    return [
        Verdict("live RPO during the partition", "target", "reported", found.live_rpo_peak_s,
                PASS if found.live_rpo_peak_s is not None else FAIL, "peak of either direction, sampled every 0.5 s"),
        Verdict("events lost after healing", "requirement", "0", float(found.lost), PASS if found.lost == 0 else FAIL,
                f"{found.lost} {note}" + (f": {', '.join(found.lost_ids)}" if found.lost_ids else "")),
        Verdict("events duplicated after healing", "requirement", "0", float(found.duplicated),
                PASS if found.duplicated == 0 else FAIL, f"{found.duplicated} {note}"),
        Verdict("backlog drained after healing", "target", "caught up", found.drained_after_s,
                PASS if found.drained_after_s is not None else FAIL, "seconds from healing until both directions caught up"),
    ]


def with_replication(report: dict[str, Any], found: PartitionReplication) -> dict[str, Any]:
    """The report with `replication` and its verdicts added, the overall verdict redone (the caller
    put `not_observed(found)` in the report's invalid reasons)."""
    invalid = list(report.get("invalid_reasons") or [])
    rows = [*report["verdicts"], *(asdict(v) for v in verdicts(found))]
    return {**report, "replication": {**asdict(found), "observed": found.observed}, "verdicts": rows,
            "invalid_reasons": invalid, "verdict": overall([Verdict(**v) for v in rows], invalid=invalid)}


__all__ = ["PartitionReplication", "RISE_S", "drained_after", "live_rpo", "measure", "not_observed", "verdicts", "with_replication"]
