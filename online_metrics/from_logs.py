"""Per-variant totals of one region, from its Redis: its impressions and its geography's outcomes.

The region's impressions (replication.impression_log) are matched with the outcome events of its
own log and of the replica streams it holds of its geography's peers (`log:replica:<peer>`; a
click may have been stored by the peer when the edge sent the user's events there). Only these
streams are read: no other geography's data is touched, and what leaves the function is the
per-variant totals (counts and sums, no user id), which callers may add up across regions
(online_metrics.attribution.merge_totals) and across geographies.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from contracts.events import Event
from online_metrics.attribution import AttributionSettings, VariantTotals, attribute
from regions import redis_keys
from regions.topology import Topology
from replication.impression_log import read_impressions
from replication.interaction_log import read_events
from replication.redis_io import Redis

__all__ = ["RegionTotals", "measure_region", "outcome_streams"]

READ_BATCH = 2000


@dataclass(frozen=True)
class RegionTotals:
    region: str
    totals: Mapping[str, VariantTotals]
    impressions_read: int
    events_read: int
    malformed: int
    """Impression or event entries that could not be decoded (skipped)."""


def outcome_streams(topology: Topology, region: str) -> tuple[str, ...]:
    """The streams of `region`'s Redis that hold its geography's events: its log and its peers' replicas."""
    geo = topology.region(region).geography
    peers = sorted(n for n, r in topology.regions.items() if r.geography == geo and n != region)
    return (redis_keys.EVENT_LOG, *(redis_keys.replica_log(p) for p in peers))


def _events(client: Redis, *, topology: Topology, region: str, stream: str, since_ts: float,
            until_ts: float | None) -> tuple[list[Event], int]:
    after = f"{max(int(since_ts * 1000) - 1, 0)}-18446744073709551615" if since_ts > 0 else "0-0"
    stop_ms = None if until_ts is None else int(until_ts * 1000)
    out: list[Event] = []
    bad = 0
    while True:
        entries = read_events(client, topology=topology, region=region, stream=stream, after=after, count=READ_BATCH)
        for entry in entries:
            if stop_ms is not None and int(entry.entry_id.split("-", 1)[0]) > stop_ms:
                return out, bad
            if entry.event is None:
                bad += 1
            else:
                out.append(entry.event)
        if len(entries) < READ_BATCH:
            return out, bad
        after = entries[-1].entry_id


def measure_region(client: Redis, *, topology: Topology, region: str, since_ts: float = 0.0, until_ts: float | None = None,
                   by: str = "bundle_version", experiment: str | None = None, outcomes_until_ts: float | None = None,
                   settings: AttributionSettings = AttributionSettings()) -> RegionTotals:
    """Totals per variant of the impressions `region` recorded in [since_ts, until_ts], with the
    outcomes stored up to `outcomes_until_ts` (default: `window_s` after `until_ts`, or all)
    attributed to them; `outcomes_until_ts = until_ts` is what a look at time until_ts saw. Raises
    TemporaryError when the region's Redis cannot be read."""
    impressions, bad = read_impressions(client, region=region, since_ts=since_ts, until_ts=until_ts)
    events: list[Event] = []
    events_until = outcomes_until_ts if outcomes_until_ts is not None else (
        None if until_ts is None else until_ts + settings.window_s)
    for stream in outcome_streams(topology, region):
        got, bad_events = _events(client, topology=topology, region=region, stream=stream,
                                  since_ts=max(since_ts - settings.skew_s, 0.0), until_ts=events_until)
        events.extend(got)
        bad += bad_events
    return RegionTotals(region=region, totals=attribute(impressions, events, by=by, experiment=experiment, settings=settings),
                        impressions_read=len(impressions), events_read=len(events), malformed=bad)
