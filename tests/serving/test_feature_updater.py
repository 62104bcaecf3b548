"""The nearline feature updater: own and replica streams -> uf:<user>, exactly once, tombstones honoured."""
from __future__ import annotations

import time
from typing import Callable

import pytest
from prometheus_client import CollectorRegistry

from regions import redis_keys
from contracts.events import Event
from replication.interaction_log import append_events
from replication.metrics import ReplicationMetrics
from replication.replicating import Replicator, ReplicatorSettings
from serving.feature_updater import CONSUMER, FeatureUpdater, UpdaterSettings
from serving.user_state import UserState, apply_event
from tests.replication.helpers import US_EU, Stack, event, stack_factory  # noqa: F401

FAST = UpdaterSettings(block_ms=0)
CATEGORIES = {f"item-{i}": ("shoes" if i % 2 else "books") for i in range(6)}


def _events(user: str, n: int, *, offset: int = 0) -> list[Event]:
    types = ("view", "cart", "purchase", "impression")
    return [event(user, f"item-{i % 6}", etype=types[i % 4], ts=1_700_000_000.0 + i, seq=offset + i, price=10.0 + i % 3)
            for i in range(offset, offset + n)]


def _replay(events: list[Event]) -> UserState:
    state = UserState()
    for e in events:
        state = apply_event(state, event_type=e.type, item_id=e.item_id, ts=e.ts, category_of=CATEGORIES.get, price=e.price)
    return state


def _state(stack: Stack, region: str, user: str) -> UserState:
    return UserState.from_hash(stack.clients[region].hgetall(redis_keys.user_features(user)))


def _run(updater: FeatureUpdater) -> int:
    applied = 0
    while (result := updater.step()).read:
        applied += result.applied
    return applied


@pytest.mark.parametrize("categories_from", ["mapping", "item_hash"])
def test_own_and_replica_streams_update_features_like_a_replay(stack_factory: Callable[..., Stack], categories_from: str) -> None:
    stack = stack_factory(US_EU)
    c, topo = stack.clients, stack.topology
    local = _events("us-1", 30)
    remote = _events("us-1", 20, offset=30)
    append_events(c["us-west"], local, topology=topo, region="us-west")
    append_events(c["us-east"], remote, topology=topo, region="us-east")
    Replicator(topology=topo, source="us-east", clients=c, settings=ReplicatorSettings(block_ms=0)).step()
    if categories_from == "item_hash":
        for item, category in CATEGORIES.items():
            c["us-west"].hset(redis_keys.item_features(item), mapping={"category": category, "price": "1"})
    mapping = CATEGORIES if categories_from == "mapping" else None
    updater = FeatureUpdater(topology=topo, region="us-west", client=c["us-west"], category_of=mapping,
                             settings=UpdaterSettings(block_ms=0, batch_size=7))
    assert updater.streams == (redis_keys.EVENT_LOG, redis_keys.replica_log("us-east"))
    assert _run(updater) == 50
    got = _state(stack, "us-west", "us-1")
    want = _replay(local + remote)  # local events were acknowledged first: ids order them before the remote ones
    assert got.events_seen == 50
    assert got.recent_items == want.recent_items and got.cart == want.cart and got.purchase_prices == want.purchase_prices
    assert got.category_affinity == pytest.approx(want.category_affinity)
    for stream in updater.streams:
        assert c["us-west"].get(redis_keys.consumer_checkpoint(CONSUMER, stream)) is not None


def test_a_restarted_updater_applies_each_event_exactly_once(stack_factory: Callable[..., Stack]) -> None:
    stack = stack_factory(US_EU)
    c, topo = stack.clients, stack.topology
    events = _events("us-1", 40) + _events("us-2", 40)
    append_events(c["us-east"], events, topology=topo, region="us-east")
    first = FeatureUpdater(topology=topo, region="us-east", client=c["us-east"], category_of=CATEGORIES,
                           settings=UpdaterSettings(block_ms=0, batch_size=25))
    first.step()
    first.step()  # 50 of 80 applied, then the process "dies"
    second = FeatureUpdater(topology=topo, region="us-east", client=c["us-east"], category_of=CATEGORIES, settings=FAST)
    assert _run(second) == 30
    for user in ("us-1", "us-2"):
        assert _state(stack, "us-east", user).events_seen == 40
        assert _state(stack, "us-east", user).recent_items == _replay([e for e in events if e.user_id == user]).recent_items


def test_two_updaters_racing_on_the_same_batch_count_it_once(stack_factory: Callable[..., Stack]) -> None:
    stack = stack_factory(US_EU)
    c, topo = stack.clients, stack.topology
    append_events(c["us-east"], _events("us-1", 10), topology=topo, region="us-east")
    a = FeatureUpdater(topology=topo, region="us-east", client=c["us-east"], category_of=CATEGORIES, settings=FAST)
    b = FeatureUpdater(topology=topo, region="us-east", client=c["us-east"], category_of=CATEGORIES, settings=FAST)
    b._load_positions()  # b read its checkpoints before a committed
    assert a.step().applied == 10
    assert b.step().conflict
    assert b.step().read == 0
    assert _state(stack, "us-east", "us-1").events_seen == 10


def test_tombstoned_users_are_skipped_and_poison_is_dead_lettered(stack_factory: Callable[..., Stack]) -> None:
    stack = stack_factory(US_EU)
    c, topo = stack.clients, stack.topology
    append_events(c["us-east"], _events("us-gone", 4) + _events("us-stay", 3), topology=topo, region="us-east")
    c["us-east"].hset(redis_keys.TOMBSTONES, "us-gone", "1.0")  # deleted after acknowledging, before applying
    bad = c["us-east"].xadd(redis_keys.EVENT_LOG, {"user_id": "us-x"}).decode()
    registry = CollectorRegistry()
    updater = FeatureUpdater(topology=topo, region="us-east", client=c["us-east"], category_of=CATEGORIES,
                             settings=FAST, metrics=ReplicationMetrics(registry))
    result = updater.step()
    assert (result.applied, result.skipped_tombstoned, result.poison) == (3, 4, 1)
    assert c["us-east"].exists(redis_keys.user_features("us-gone")) == 0
    assert _state(stack, "us-east", "us-stay").events_seen == 3
    (dead,) = c["us-east"].xrange(redis_keys.DEAD_LETTER)
    assert dead[1][b"entry_id"].decode() == bad and dead[1][b"consumer"] == b"feature-updater:us-east"
    assert registry.get_sample_value("shopnow_feature_updater_skipped_total", {"region": "us-east", "reason": "tombstoned"}) == 4
    assert registry.get_sample_value("shopnow_dead_letters_total", {"region": "us-east", "consumer": CONSUMER}) == 1


def test_updater_lag_is_reported_and_exported(stack_factory: Callable[..., Stack]) -> None:
    stack = stack_factory(US_EU)
    c, topo = stack.clients, stack.topology
    append_events(c["us-east"], _events("us-1", 12), topology=topo, region="us-east")
    registry = CollectorRegistry()
    updater = FeatureUpdater(topology=topo, region="us-east", client=c["us-east"], category_of=CATEGORIES,
                             settings=FAST, metrics=ReplicationMetrics(registry))
    seconds, count = updater.lag(time.time())[redis_keys.EVENT_LOG]
    assert count == 12 and seconds >= 0.0
    updater.step()  # the gauges are refreshed at the start of a step, before the batch
    labels = {"region": "us-east", "stream": redis_keys.EVENT_LOG}
    assert registry.get_sample_value("shopnow_feature_updater_lag_events", labels) == 12
    assert updater.lag(time.time())[redis_keys.EVENT_LOG] == (0.0, 0)
    assert registry.get_sample_value("shopnow_feature_updater_events_total", labels) == 12
