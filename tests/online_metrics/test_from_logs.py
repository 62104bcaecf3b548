"""Per-variant totals read from a real region Redis: impressions recorded in the region, outcomes
from its log and its peer's replica stream; residency, the cap and deletion of the impressions."""
from __future__ import annotations

import time

import pytest
import redis

from contracts.events import Event
from contracts.impressions import Impression
from online_metrics.from_logs import measure_region, outcome_streams
from regions import redis_keys
from regions.errors import InputError
from replication.deletion import delete_user
from replication.impression_log import append_impressions, read_impressions
from replication.interaction_log import append_events
from tests.contracts.topologies import make_topology

TOPOLOGY = make_topology({"us": ["us-east", "us-west"], "eu": ["eu-west"]})


def _imp(user: str, items: tuple[str, ...], ts: float, bundle: str) -> Impression:
    return Impression.new(user_id=user, items=items, ts=ts, region="us-east", bundle_version=bundle, tier="full")


def _ev(user: str, item: str, kind: str, ts: float, price: float = 0.0) -> Event:
    return Event(event_id=f"{user}-{item}-{kind}-{ts}", user_id=user, item_id=item, type=kind, ts=ts, geo="us", price=price)


def test_totals_from_the_regions_impressions_log_and_peer_replica(redis_client: redis.Redis) -> None:
    now = time.time()
    append_impressions(redis_client, [_imp("us-1", ("a", "b"), now, "good"), _imp("us-2", ("a", "b"), now, "weak")],
                       topology=TOPOLOGY, region="us-east")
    append_events(redis_client, [_ev("us-1", "a", "view", now + 1), _ev("us-1", "a", "purchase", now + 2, 9.0)],
                  topology=TOPOLOGY, region="us-east")
    peer = _ev("us-2", "b", "view", now + 1)  # stored by us-west, replicated here
    redis_client.xadd(redis_keys.replica_log("us-west"), peer.to_fields())  # type: ignore[arg-type]
    redis_client.xadd(redis_keys.replica_log("eu-west"), _ev("us-2", "a", "view", now + 1).to_fields())  # type: ignore[arg-type]
    got = measure_region(redis_client, topology=TOPOLOGY, region="us-east", since_ts=now - 10)
    assert got.impressions_read == 2 and got.events_read == 3 and got.malformed == 0
    assert (got.totals["good"].clicked, got.totals["good"].purchased, got.totals["good"].revenue) == (1, 1, 9.0)
    assert got.totals["weak"].clicked == 1
    assert outcome_streams(TOPOLOGY, "us-east") == (redis_keys.EVENT_LOG, redis_keys.replica_log("us-west"))
    later = measure_region(redis_client, topology=TOPOLOGY, region="us-east", since_ts=now + 60)
    assert later.impressions_read == 0 and later.totals == {}


def test_impressions_of_another_geographys_user_are_refused_whole(redis_client: redis.Redis) -> None:
    with pytest.raises(InputError, match="^user_id:"):
        append_impressions(redis_client, [_imp("us-1", ("a",), time.time(), "good"), _imp("eu-1", ("a",), time.time(), "good")],
                           topology=TOPOLOGY, region="us-east")
    assert redis_client.xlen(redis_keys.IMPRESSIONS) == 0


def test_the_stream_is_capped(redis_client: redis.Redis) -> None:
    now = time.time()
    for _ in range(30):
        append_impressions(redis_client, [_imp("us-1", ("a",), now, "good") for _ in range(100)], topology=TOPOLOGY,
                           region="us-east", cap=500)
    assert redis_client.xlen(redis_keys.IMPRESSIONS) < 1000  # MAXLEN ~ trims by whole nodes: about the cap


def test_deleting_the_user_removes_their_impressions(redis_client: redis.Redis) -> None:
    now = time.time()
    append_impressions(redis_client, [_imp("us-1", ("a",), now, "good"), _imp("us-2", ("a",), now, "good")],
                       topology=TOPOLOGY, region="us-east")
    report = delete_user(make_topology({"us": ["us-east"], "eu": ["eu-west"]}), {"us-east": redis_client}, "us-1", now)
    assert report.complete
    left, _ = read_impressions(redis_client, region="us-east")
    assert [i.user_id for i in left] == ["us-2"]


def test_times_beyond_what_a_stream_id_holds_are_refused_naming_the_field(redis_client: redis.Redis) -> None:
    with pytest.raises(InputError, match="^until_ts:"):
        measure_region(redis_client, topology=TOPOLOGY, region="us-east", until_ts=1.2e159)
    with pytest.raises(InputError, match="^since_ts:"):
        measure_region(redis_client, topology=TOPOLOGY, region="us-east", since_ts=-1.0)


def test_a_deleted_users_impression_recorded_after_the_deletion_is_dropped(redis_client: redis.Redis) -> None:
    """The cell records impressions off the request path: one answered just before a deletion and
    written just after it must not bring the user back (the append script checks the tombstone)."""
    now = time.time()
    assert delete_user(make_topology({"us": ["us-east"], "eu": ["eu-west"]}), {"us-east": redis_client}, "us-1", now).complete
    ids = append_impressions(redis_client, [_imp("us-1", ("a",), now, "good"), _imp("us-2", ("b",), now, "good")],
                             topology=TOPOLOGY, region="us-east")
    got, bad = read_impressions(redis_client, region="us-east")
    assert len(ids) == 1 and bad == 0
    assert [i.user_id for i in got] == ["us-2"]
