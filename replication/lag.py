"""Replication lag and live RPO: pure math over stream positions and timestamps.

A Redis stream id is `<ms>-<seq>`: the millisecond (source clock) at which the source Redis
acknowledged the entry, and a sequence number within that millisecond. Replica streams keep the
source's ids, so "how far behind is the destination" is a comparison of ids, and "how old is the
oldest event the destination does not have yet" is `now - ms(first pending id)`.

The live RPO of a (source, destination) pair is the age of the oldest acknowledged event at the
source that is not yet durable at the destination; 0 when caught up. Nothing here reads a clock
or a network: positions and `now` are handed in (replication.metrics collects them).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

from regions.errors import InputError


@dataclass(frozen=True, order=True)
class StreamId:
    """A Redis stream entry id, ordered as Redis orders them."""

    ms: int
    seq: int = 0

    def __str__(self) -> str:
        return f"{self.ms}-{self.seq}"

    @property
    def seconds(self) -> float:
        """Acknowledgement time at the source, epoch seconds."""
        return self.ms / 1000.0


ZERO = StreamId(0, 0)
"""The position before any entry: nothing has been copied or processed yet."""


def parse_stream_id(raw: str | bytes | StreamId | None) -> StreamId:
    """Parse `ms-seq` (or a bare `ms`); None and empty mean ZERO. Raises InputError on anything else."""
    if raw is None:
        return ZERO
    if isinstance(raw, StreamId):
        return raw
    text = raw.decode() if isinstance(raw, bytes) else raw
    if text == "":
        return ZERO
    ms_text, sep, seq_text = text.partition("-")
    try:
        ms = int(ms_text)
        seq = int(seq_text) if sep else 0
    except ValueError as exc:
        raise InputError("stream_id", f"must look like '<ms>-<seq>' with two integers, got {text!r}") from exc
    if ms < 0 or seq < 0:
        raise InputError("stream_id", f"must not be negative, got {text!r}")
    return StreamId(ms, seq)


def stream_id_for_time(epoch_s: float) -> StreamId:
    """The smallest id acknowledged at or after `epoch_s` (for XTRIM MINID and XRANGE by time)."""
    if not math.isfinite(epoch_s) or epoch_s < 0:
        raise InputError("time", f"must be non-negative finite epoch seconds, got {epoch_s!r}")
    return StreamId(int(epoch_s * 1000), 0)


@dataclass(frozen=True)
class PairLag:
    """How far a destination is behind a source."""

    lag_seconds: float
    """Live RPO: age of the oldest source event not yet at the destination; 0 when caught up."""
    lag_events: int
    """Source events not yet at the destination (a lower bound when `events_capped`)."""
    events_capped: bool
    caught_up: bool


def pair_lag(
    *, source_last: StreamId, destination_position: StreamId, first_pending: StreamId | None,
    pending_count: int, count_cap: int | None, now: float,
) -> PairLag:
    """Lag of one pair.

    `source_last` is the id of the newest entry the source has acknowledged (its last generated id),
    `destination_position` what the destination holds up to (its replica stream's last id),
    `first_pending` the first source id after that position still present in the source log (None
    when there is none, e.g. it was trimmed or deleted), `pending_count` how many such entries were
    counted, stopping at `count_cap` (None: counted them all).
    """
    if pending_count < 0:
        raise InputError("pending_count", f"must be >= 0, got {pending_count}")
    if destination_position >= source_last or first_pending is None or pending_count == 0:
        return PairLag(lag_seconds=0.0, lag_events=0, events_capped=False, caught_up=True)
    capped = count_cap is not None and pending_count >= count_cap
    age = max(0.0, now - first_pending.seconds)
    return PairLag(lag_seconds=age, lag_events=pending_count, events_capped=capped, caught_up=False)


@dataclass(frozen=True)
class PairStatus:
    """One (source, destination) replication pair as seen at `now`."""

    source: str
    destination: str
    geography: str
    source_last_id: str | None
    destination_last_id: str | None
    lag_seconds: float | None
    """Live RPO of the pair; None when a side could not be read (see `error`)."""
    lag_events: int | None
    events_capped: bool = False
    error: str | None = None

    @property
    def reachable(self) -> bool:
        return self.error is None

    @property
    def caught_up(self) -> bool:
        return self.error is None and self.lag_events == 0


def worst_rpo(pairs: Iterable[PairStatus]) -> float | None:
    """The largest live RPO over readable pairs (seconds); None when there is no readable pair."""
    values = [p.lag_seconds for p in pairs if p.lag_seconds is not None]
    return max(values) if values else None


def within_budget(pairs: Sequence[PairStatus], *, budget_s: float) -> bool:
    """True when every pair is readable and its live RPO is under the budget."""
    return all(p.lag_seconds is not None and p.lag_seconds <= budget_s for p in pairs)


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) by linear interpolation between closest ranks (numpy's default).
    The one percentile of the project: lag reports and the serving benchmarks both use it."""
    if not values:
        raise InputError("values", "must not be empty: need at least one sample to take a percentile")
    if isinstance(q, bool) or not isinstance(q, (int, float)) or not 0.0 <= q <= 100.0:
        raise InputError("q", f"must be a number between 0 and 100, got {q!r}")
    ordered = sorted(float(v) for v in values)
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)
