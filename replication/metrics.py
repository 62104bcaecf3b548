"""Collecting replication positions from the regions' Redis, and the Prometheus metrics.

The math is in replication.lag (pure); this module only reads positions (stream last ids, the first
pending entry) and publishes gauges and counters on a registry handed in.

`replication_status(topology, clients, now)` is what `regionctl replication status`, /readyz and
the controller read. A geography with a single region has no pair at all: its logs have no copy
in another region, so its RPO under the loss of that region is unbounded
(`unreplicated_geographies`).
"""
from __future__ import annotations

from typing import Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge

from regions import redis_keys
from regions.errors import TemporaryError
from regions.geo import replication_peers
from regions.topology import Topology
from replication.interaction_log import stream_last_id
from replication.lag import PairLag, PairStatus, StreamId, pair_lag, parse_stream_id
from replication.redis_io import Redis, RedisError, text

PENDING_COUNT_CAP = 1000
"""Pending entries are counted up to this many (one bounded XRANGE); beyond it the count is a lower bound."""


class ReplicationMetrics:
    """Prometheus metrics of replication and the feature updater, on the registry given."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.lag_seconds = Gauge(
            "shopnow_replication_lag_seconds", "Live RPO: age of the oldest source event not yet at the destination.",
            ["source", "destination"], registry=registry)
        self.lag_events = Gauge(
            "shopnow_replication_lag_events", "Source events not yet at the destination (capped count).",
            ["source", "destination"], registry=registry)
        self.replicated = Counter(
            "shopnow_replication_events", "Events copied into a destination's replica stream.",
            ["source", "destination"], registry=registry)
        self.dead_letters = Counter(
            "shopnow_dead_letters", "Poison events moved to log:dead.", ["region", "consumer"], registry=registry)
        self.updater_lag_seconds = Gauge(
            "shopnow_feature_updater_lag_seconds", "Age of the oldest log entry the feature updater has not applied.",
            ["region", "stream"], registry=registry)
        self.updater_lag_events = Gauge(
            "shopnow_feature_updater_lag_events", "Log entries the feature updater has not applied (capped count).",
            ["region", "stream"], registry=registry)
        self.updater_applied = Counter(
            "shopnow_feature_updater_events", "Events applied to user features.", ["region", "stream"], registry=registry)
        self.updater_skipped = Counter(
            "shopnow_feature_updater_skipped", "Events not applied, by reason.", ["region", "reason"], registry=registry)

    def observe(self, pairs: Iterable[PairStatus]) -> None:
        for pair in pairs:
            if pair.lag_seconds is not None and pair.lag_events is not None:
                self.lag_seconds.labels(source=pair.source, destination=pair.destination).set(pair.lag_seconds)
                self.lag_events.labels(source=pair.source, destination=pair.destination).set(pair.lag_events)


def stream_lag(
    client: Redis, *, stream: str, position: StreamId, now: float, cap: int = PENDING_COUNT_CAP,
) -> tuple[str, PairLag]:
    """Lag of a consumer at `position` of `stream` (in `client`): (the stream's last id, the lag)."""
    last = stream_last_id(client, stream)
    source_last = parse_stream_id(last)
    if position >= source_last:
        return last, pair_lag(source_last=source_last, destination_position=position, first_pending=None,
                              pending_count=0, count_cap=cap, now=now)
    try:
        pending = client.xrange(stream, min=f"({position}", count=cap)
    except RedisError as exc:
        raise TemporaryError(f"could not read {stream}: {exc}", delay=0.5) from exc
    first = parse_stream_id(text(pending[0][0])) if pending else None
    return last, pair_lag(source_last=source_last, destination_position=position, first_pending=first,
                          pending_count=len(pending), count_cap=cap, now=now)


def collect_pairs(
    topology: Topology, clients: Mapping[str, Redis], *, sources: Iterable[str], now: float,
    cap: int = PENDING_COUNT_CAP,
) -> list[PairStatus]:
    """PairStatus of every (source, same-geography peer) pair for the given sources."""
    out: list[PairStatus] = []
    for source in sources:
        geography = topology.region(source).geography
        for destination in replication_peers(topology, source):
            dest_last: str | None = None
            src_last: str | None = None
            try:
                dest_last = stream_last_id(clients[destination], redis_keys.replica_log(source))
            except (TemporaryError, RedisError) as exc:
                out.append(PairStatus(source=source, destination=destination, geography=geography, source_last_id=None,
                                      destination_last_id=None, lag_seconds=None, lag_events=None,
                                      error=f"destination {destination} unreachable: {exc}"))
                continue
            try:
                src_last, lag = stream_lag(clients[source], stream=redis_keys.EVENT_LOG,
                                           position=parse_stream_id(dest_last), now=now, cap=cap)
            except (TemporaryError, RedisError) as exc:
                out.append(PairStatus(source=source, destination=destination, geography=geography, source_last_id=None,
                                      destination_last_id=dest_last, lag_seconds=None, lag_events=None,
                                      error=f"source {source} unreachable: {exc}"))
                continue
            out.append(PairStatus(source=source, destination=destination, geography=geography, source_last_id=src_last,
                                  destination_last_id=dest_last, lag_seconds=lag.lag_seconds, lag_events=lag.lag_events,
                                  events_capped=lag.events_capped))
    return out


def replication_status(topology: Topology, clients: Mapping[str, Redis], now: float) -> list[PairStatus]:
    """Every replication pair of the topology, with its live RPO (seconds) and lag (events)."""
    return collect_pairs(topology, clients, sources=sorted(topology.regions), now=now)


def unreplicated_geographies(topology: Topology) -> tuple[str, ...]:
    """Geographies whose interaction logs have no copy in another region (RPO under region loss: unbounded)."""
    return topology.single_region_geographies()
