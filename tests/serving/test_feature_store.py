"""The feature store against a real redis-server: round trips, residency, freshness, and a dead
or stuck Redis turning into FeatureStoreUnavailable."""
from __future__ import annotations

import math
import signal
from typing import Callable, Iterator

import numpy as np
import pytest
import redis
from hypothesis import given
from hypothesis import strategies as st

from regions import redis_keys
from regions.errors import InputError, PermanentError, TemporaryError
from regions.processes import ManagedProcess
from regions.topology import load_topology
from serving.features import ItemTable
from serving.feature_store import (
    CachedSlate, FeatureStore, FeatureStoreDataError, FeatureStoreSettings, FeatureStoreUnavailable, FreshnessBounds,
    ItemFeatures, assess_freshness, item_features_of,
)
from serving.user_state import UserState

TOPOLOGY = load_topology()
ROOMY = FeatureStoreSettings(connect_timeout_s=2.0, read_timeout_s=2.0)
"""Round-trip tests run on shared, noisy machines: generous timeouts so they never time out by chance."""


def _store(port: int, *, region: str = "us-east", settings: FeatureStoreSettings = ROOMY) -> FeatureStore:
    return FeatureStore.from_url(f"redis://127.0.0.1:{port}/0", region=region, topology=TOPOLOGY, settings=settings)


@pytest.fixture
def store(redis_server: tuple[ManagedProcess, int]) -> Iterator[FeatureStore]:
    fs = _store(redis_server[1])
    yield fs
    fs.close()


STATE = UserState(recent_items=("i2", "i1"), category_affinity={"dairy": 4.0}, cart=("i2",),
                  purchase_prices=(3.5,), updated_at=1_000.0, events_seen=3)


# -- user state ---------------------------------------------------------------------------------

def test_user_state_round_trip(store: FeatureStore) -> None:
    assert store.get_user_state("us-1") is None
    store.put_user_state("us-1", STATE)
    assert store.get_user_state("us-1") == STATE


def test_user_state_is_stored_under_the_shared_key(store: FeatureStore, redis_client: redis.Redis) -> None:
    store.put_user_state("us-1", STATE)
    assert UserState.from_hash(redis_client.hgetall(redis_keys.user_features("us-1"))) == STATE


@pytest.mark.parametrize(("region", "user_id", "allowed"), [
    ("us-east", "us-1", True), ("us-west", "us-1", True), ("eu-west", "eu-7", True),
    ("us-east", "eu-7", False), ("us-west", "eu-7", False), ("eu-west", "us-1", False),
])
def test_personal_writes_follow_the_geo_policy(redis_server: tuple[ManagedProcess, int], redis_client: redis.Redis,
                                               region: str, user_id: str, allowed: bool) -> None:
    fs = _store(redis_server[1], region=region)
    slate = CachedSlate(item_ids=("a",), scores=(1.0,), bundle_version="v1", tier="full", created_at=5.0)
    try:
        if allowed:
            fs.put_user_state(user_id, STATE)
            fs.put_cached_slate(user_id, slate)
            assert fs.get_user_state(user_id) == STATE
            assert fs.get_cached_slate(user_id) == slate
        else:
            with pytest.raises(InputError) as refused:
                fs.put_user_state(user_id, STATE)
            assert refused.value.field == "region"
            with pytest.raises(InputError):
                fs.put_cached_slate(user_id, slate)
            assert redis_client.keys("*") == []  # nothing reached Redis
    finally:
        fs.close()


def test_unknown_region_is_refused_at_construction(redis_server: tuple[ManagedProcess, int]) -> None:
    with pytest.raises(InputError, match="unknown region"):
        _store(redis_server[1], region="mars-1")


# -- item features ----------------------------------------------------------------------------

ITEMS = (
    ItemFeatures(item_id="i1", price=2.5, stock=10, popularity=0.75, rating=4.5, category="dairy", updated_at=100.0),
    ItemFeatures(item_id="i2", price=0.99, stock=0, popularity=0.0, rating=3.0, category="bakery", updated_at=200.5),
)


def test_item_features_round_trip_in_bulk(store: FeatureStore) -> None:
    assert store.put_item_features(ITEMS) == 2
    assert store.get_item_features(["i2", "missing", "i1"]) == {"i2": ITEMS[1], "i1": ITEMS[0]}
    assert store.get_item_features([]) == {}


def test_bulk_write_spans_several_pipelines(redis_server: tuple[ManagedProcess, int]) -> None:
    fs = _store(redis_server[1], settings=FeatureStoreSettings(connect_timeout_s=2.0, read_timeout_s=2.0, write_chunk=7))
    items = [ItemFeatures(item_id=f"i{n}", price=float(n), stock=n, updated_at=50.0) for n in range(23)]
    try:
        assert fs.put_item_features(iter(items)) == 23
        assert fs.get_item_features([i.item_id for i in items]) == {i.item_id: i for i in items}
    finally:
        fs.close()


def test_item_lookup_survives_a_flushed_script_cache(store: FeatureStore, redis_client: redis.Redis) -> None:
    store.put_item_features(ITEMS)
    assert store.get_item_features(["i1"]) == {"i1": ITEMS[0]}
    redis_client.script_flush()  # what a Redis restart does to the script cache
    assert store.get_item_features(["i1", "i2"]) == {"i1": ITEMS[0], "i2": ITEMS[1]}


def test_item_key_of_the_wrong_type_is_a_data_error(store: FeatureStore, redis_client: redis.Redis) -> None:
    redis_client.set(redis_keys.item_features("i1"), "not a hash")
    with pytest.raises(FeatureStoreDataError):
        store.get_item_features(["i1"])


def test_partial_item_hash_gets_conservative_defaults(store: FeatureStore, redis_client: redis.Redis) -> None:
    redis_client.hset(redis_keys.item_features("i9"), mapping={"price": "4.0"})
    got = store.get_item_features(["i9"])["i9"]
    assert (got.price, got.stock, got.updated_at, got.category) == (4.0, 0, 0.0, "")


@pytest.mark.parametrize("bad", ["abc", "nan", "inf"])
def test_non_numeric_item_field_is_a_data_error(store: FeatureStore, redis_client: redis.Redis, bad: str) -> None:
    redis_client.hset(redis_keys.item_features("i9"), mapping={"price": bad, "updated_at": "1.0"})
    with pytest.raises(FeatureStoreDataError, match="price"):
        store.get_item_features(["i9"])


def test_wrong_key_type_is_a_permanent_data_error(store: FeatureStore, redis_client: redis.Redis) -> None:
    redis_client.set(redis_keys.user_features("us-1"), "not a hash")
    with pytest.raises(FeatureStoreDataError) as err:
        store.get_user_state("us-1")
    assert isinstance(err.value, PermanentError)
    assert isinstance(err.value.__cause__, redis.exceptions.ResponseError)


def test_items_of_a_bundle_catalog_seed_the_store(store: FeatureStore) -> None:
    rows = [
        {"item_id": "i1", "category": "dairy", "parent_category": "food", "brand": "b", "price": 2.5, "stock": 10,
         "rating": 4.5, "created_at": 1.0, "popularity": 0.9},
        {"item_id": "i2", "category": "bakery", "parent_category": "food", "brand": "b", "price": 1, "stock": 0,
         "rating": 3, "created_at": 1.0},
    ]
    table = ItemTable.build(rows, embeddings=np.zeros((2, 2), np.float32), copurchase={})
    store.put_item_features(item_features_of(table, updated_at=300.0))
    got = store.get_item_features(["i1", "i2"])
    assert got["i1"] == ItemFeatures(item_id="i1", price=2.5, stock=10, popularity=0.9, rating=4.5,
                                     category="dairy", updated_at=300.0)
    assert (got["i2"].popularity, got["i2"].stock, got["i2"].updated_at) == (0.0, 0, 300.0)


# -- cached results ---------------------------------------------------------------------------

SLATE = CachedSlate(item_ids=("i3", "i1"), scores=(0.9, 0.4), bundle_version="2024-01-01.1", tier="full",
                    created_at=1_700_000_000.25)


def test_cached_slate_round_trip_with_ttl(store: FeatureStore, redis_client: redis.Redis) -> None:
    assert store.get_cached_slate("us-1") is None
    store.put_cached_slate("us-1", SLATE, ttl_s=60)
    assert store.get_cached_slate("us-1") == SLATE
    ttl_ms = redis_client.pttl(redis_keys.cached_result("us-1"))
    assert 0 < ttl_ms <= 60_000


def test_cached_slate_default_ttl_comes_from_settings(store: FeatureStore, redis_client: redis.Redis) -> None:
    store.put_cached_slate("us-1", SLATE)
    assert 60_000 < redis_client.pttl(redis_keys.cached_result("us-1")) <= int(ROOMY.cache_ttl_s * 1000)


def test_expired_slate_is_a_miss(store: FeatureStore, redis_client: redis.Redis) -> None:
    store.put_cached_slate("us-1", SLATE, ttl_s=60)
    redis_client.pexpire(redis_keys.cached_result("us-1"), 1)
    redis_client.pexpire(redis_keys.cached_result("us-1"), 0)  # expire now, without waiting
    assert store.get_cached_slate("us-1") is None


@pytest.mark.parametrize("ttl", [0, -5, math.inf, math.nan])
def test_bad_ttl_is_refused(store: FeatureStore, ttl: float) -> None:
    with pytest.raises(InputError) as err:
        store.put_cached_slate("us-1", SLATE, ttl_s=ttl)
    assert err.value.field == "ttl_s"


@pytest.mark.parametrize("raw", ["{", "[]", '{"item_ids": ["a"]}', '{"item_ids": ["a"], "scores": [], '
                                 '"bundle_version": "v", "tier": "full", "created_at": 1}'])
def test_unreadable_cache_entry_is_a_miss(store: FeatureStore, redis_client: redis.Redis, raw: str) -> None:
    redis_client.set(redis_keys.cached_result("us-1"), raw)
    assert store.get_cached_slate("us-1") is None


@given(st.lists(st.tuples(st.text(min_size=1, max_size=12), st.floats(allow_nan=False, allow_infinity=False)),
                max_size=20),
       st.text(max_size=20), st.sampled_from(["full", "cached", "segment", "popularity"]),
       st.floats(min_value=0, max_value=4e9))
def test_slate_json_round_trips(pairs: list[tuple[str, float]], version: str, tier: str, created_at: float) -> None:
    slate = CachedSlate(item_ids=tuple(p[0] for p in pairs), scores=tuple(p[1] for p in pairs),
                        bundle_version=version, tier=tier, created_at=created_at)
    assert CachedSlate.from_json(slate.to_json()) == slate


# -- freshness (pure) --------------------------------------------------------------------------

NOW = 10_000.0


@pytest.mark.parametrize(("user_at", "items", "user_stale", "stale_items"), [
    (None, {}, False, ()),                                     # new user, nothing to check
    (NOW - 300, {}, False, ()),                                # exactly at the bound: fresh
    (NOW - 300.5, {}, True, ()),
    (NOW + 50, {}, False, ()),                                 # clock skew: age 0
    (NOW, {"a": NOW - 900, "b": NOW - 901}, False, ("b",)),
    (NOW, {"a": None, "b": 0.0, "c": NOW}, False, ("a", "b")),  # missing or never written: stale
    (NOW - 1000, {"a": NOW - 5000}, True, ("a",)),
])
def test_freshness_table(user_at: float | None, items: dict[str, float | None], user_stale: bool,
                         stale_items: tuple[str, ...]) -> None:
    fresh = assess_freshness(now=NOW, user_updated_at=user_at, item_updated_at=items)
    assert (fresh.user_stale, fresh.stale_items) == (user_stale, stale_items)
    assert fresh.stale == (user_stale or bool(stale_items))


def test_default_bounds_match_the_topology_settings() -> None:
    assert FreshnessBounds.from_settings(TOPOLOGY.settings) == FreshnessBounds(user_s=300.0, item_s=900.0)


def test_freshness_reports_ages() -> None:
    fresh = assess_freshness(now=NOW, user_updated_at=NOW - 12, item_updated_at={"a": NOW - 30, "b": NOW - 70, "c": None})
    assert (fresh.user_age_s, fresh.oldest_item_age_s) == (12.0, 70.0)


ages = st.floats(min_value=0, max_value=1e6)


@given(st.dictionaries(st.text(max_size=5), ages, max_size=10), ages, st.floats(min_value=1, max_value=1e5),
       st.floats(min_value=1, max_value=1e5), st.floats(min_value=0, max_value=1e6))
def test_freshness_stale_iff_older_than_bound(item_ages: dict[str, float], user_age: float, user_bound: float,
                                              item_bound: float, later: float) -> None:
    bounds = FreshnessBounds(user_s=user_bound, item_s=item_bound)
    now = 2e6
    items = {k: now - a for k, a in item_ages.items()}
    fresh = assess_freshness(now=now, user_updated_at=now - user_age, item_updated_at=items, bounds=bounds)
    assert fresh.user_stale == (now - (now - user_age) > user_bound)
    assert set(fresh.stale_items) == {k for k, at in items.items() if now - at > item_bound}
    # time only makes things staler
    after = assess_freshness(now=now + later, user_updated_at=now - user_age, item_updated_at=items, bounds=bounds)
    assert set(fresh.stale_items) <= set(after.stale_items)
    assert after.user_stale or not fresh.user_stale


# -- a dead or stuck Redis ---------------------------------------------------------------------

def _every_operation(fs: FeatureStore) -> list[Callable[[], object]]:
    return [
        fs.ping,
        lambda: fs.get_user_state("us-1"),
        lambda: fs.put_user_state("us-1", STATE),
        lambda: fs.get_item_features(["i1", "i2"]),
        lambda: fs.put_item_features(ITEMS),
        lambda: fs.get_cached_slate("us-1"),
        lambda: fs.put_cached_slate("us-1", SLATE),
    ]


def test_killed_redis_raises_feature_store_unavailable(redis_server: tuple[ManagedProcess, int]) -> None:
    proc, port = redis_server
    fs = _store(port, settings=FeatureStoreSettings())  # the production defaults: 50 ms, no retries
    assert fs.ping() is True
    fs.put_item_features(ITEMS)  # pooled connections now exist and will be dead after the kill
    proc.kill()
    try:
        for operation in _every_operation(fs):
            with pytest.raises(FeatureStoreUnavailable) as err:
                operation()
            assert isinstance(err.value, TemporaryError)
            assert err.value.delay == FeatureStoreSettings().retry_delay_s
            assert isinstance(err.value.__cause__, redis.exceptions.RedisError)
            assert "us-east" in str(err.value)
    finally:
        fs.close()


def test_stuck_redis_times_out_into_feature_store_unavailable(redis_server: tuple[ManagedProcess, int]) -> None:
    proc, port = redis_server
    fs = _store(port, settings=FeatureStoreSettings())
    assert fs.ping() is True
    proc.popen.send_signal(signal.SIGSTOP)  # accepts connections (kernel backlog) but never answers
    try:
        with pytest.raises(FeatureStoreUnavailable) as err:
            fs.get_item_features(["i1"])
        assert isinstance(err.value.__cause__, redis.exceptions.TimeoutError)
    finally:
        proc.popen.send_signal(signal.SIGCONT)
        fs.close()


def test_client_uses_the_short_timeouts_of_the_settings() -> None:
    fs = FeatureStore.from_url("redis://127.0.0.1:1/0", region="us-east", topology=TOPOLOGY)
    kwargs = fs._redis.connection_pool.connection_kwargs
    assert (kwargs["socket_connect_timeout"], kwargs["socket_timeout"]) == (0.05, 0.05)
    with pytest.raises(FeatureStoreUnavailable):
        fs.ping()  # nothing listens on port 1
    fs.close()


def test_a_timed_out_call_is_not_retried(redis_server: tuple[ManagedProcess, int], redis_client: redis.Redis) -> None:
    # Redis keeps accepting connections while CLIENT PAUSE holds every command: each attempt of
    # the adapter shows up as one more connection received, and all of them time out.
    before = redis_client.info("stats")["total_connections_received"]
    fs = _store(redis_server[1], settings=FeatureStoreSettings())
    redis_client.execute_command("CLIENT", "PAUSE", 1000, "ALL")
    try:
        with pytest.raises(FeatureStoreUnavailable):
            fs.ping()
    finally:
        fs.close()
    after = redis_client.info("stats")["total_connections_received"]  # answered once the pause ends
    assert after - before == 1
