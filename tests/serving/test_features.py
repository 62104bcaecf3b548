"""serving.features: the one feature function, and that training and serving build the same rows."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from regions import redis_keys
from serving.features import (
    FEATURE_NAMES, FEATURES, N_FEATURES, SRC_ANN, SRC_POPULAR, Candidates, ItemTable, LiveItems, build_features,
    schema_document,
)
from serving.marketplace import MarketplaceSize, generate
from serving.training import replay_states
from serving.user_state import UserState, apply_event

COL = {n: i for i, n in enumerate(FEATURE_NAMES)}
NOW = 1_800_000_000.0
ROWS = [
    {"item_id": f"i{n}", "category": f"p{n % 2}.c{n % 4}", "parent_category": f"p{n % 2}", "brand": f"b{n % 3}",
     "price": 10.0 + n, "stock": n % 5, "rating": 4.0, "created_at": NOW - n * 86400.0, "popularity": float(n),
     "views": 10 * n, "carts": n, "purchases": n // 2, "buyers": n // 3}
    for n in range(12)
]
CATEGORY = {r["item_id"]: r["category"] for r in ROWS}


@pytest.fixture(scope="module")
def table() -> ItemTable:
    emb = np.random.default_rng(0).normal(size=(len(ROWS), 4)).astype(np.float32)
    return ItemTable.build(ROWS, embeddings=emb, copurchase={"i1": ["i2", "i3"], "i5": ["i6"]})


def _state(*events: tuple[str, str, float, float]) -> UserState:
    state = UserState()
    for etype, item, ts, price in events:
        state = apply_event(state, event_type=etype, item_id=item, ts=ts, category_of=CATEGORY.get, price=price)
    return state


def test_feature_names_are_documented_and_unique():
    assert len(set(FEATURE_NAMES)) == N_FEATURES == len(FEATURES) >= 50
    assert all(desc for _, desc in FEATURES)
    assert schema_document()["features"] == list(FEATURE_NAMES)


def test_shape_and_dtype(table):
    X = build_features(items=table, state=UserState(), user_vector=None, candidates=Candidates.of_rows(range(12)), now=NOW)
    assert X.shape == (12, N_FEATURES) and X.dtype == np.float32 and np.all(np.isfinite(X))
    assert np.all(X[:, COL["has_user_vector"]] == 0) and np.all(X[:, COL["emb_dot"]] == 0)


STATE = _state(("view", "i4", NOW - 600, 0.0), ("cart", "i1", NOW - 500, 0.0), ("purchase", "i7", NOW - 400, 20.0),
               ("view", "i9", NOW - 60, 0.0))


@pytest.mark.parametrize("item, feature, expected", [
    ("i1", "in_cart", 1.0), ("i2", "in_cart", 0.0),
    ("i2", "copurchase_with_cart", 1.0), ("i3", "copurchase_with_cart", 1.0), ("i6", "copurchase_with_cart", 0.0),
    ("i9", "in_recent", 1.0), ("i9", "recent_position", 0.0), ("i0", "recent_position", 1.0),
    ("i1", "same_category_as_last", 1.0), ("i5", "same_category_as_last", 1.0), ("i2", "same_category_as_last", 0.0),
    ("i3", "same_parent_as_last", 1.0), ("i2", "same_parent_as_last", 0.0),
    ("i11", "price_ratio", 21.0 / 20.0), ("i11", "log_price_ratio", math.log(21.0 / 20.0)), ("i7", "has_purchase_history", 1.0),
    ("i0", "in_stock", 0.0), ("i1", "in_stock", 1.0), ("i3", "item_age_days", 3.0), ("i3", "is_new_item", 1.0),
    ("i4", "item_cart_rate", 4.0 / 41.0), ("i11", "popularity_pct", 1.0), ("i0", "cart_size", 1.0),
])
def test_feature_values(table, item, feature, expected):
    X = build_features(items=table, state=STATE, user_vector=None, candidates=Candidates.of_rows([table.row_of[item]]), now=NOW)
    assert X[0, COL[feature]] == pytest.approx(expected, rel=1e-5)


def test_category_affinity_is_decayed_user_state(table):
    X = build_features(items=table, state=STATE, user_vector=None, candidates=Candidates.of_rows([table.row_of["i1"]]), now=NOW + 3 * 86400)
    assert X[0, COL["cat_affinity"]] == pytest.approx(STATE.affinity_at(NOW + 3 * 86400)["p1.c1"], rel=1e-5)
    assert X[0, COL["cat_affinity_rank"]] == 1.0  # p1.c1: cart 3 + view 1 (decayed); p1.c3: purchase 5 ranks first


def test_live_values_override_the_bundle(table):
    row = table.row_of["i2"]
    live = LiveItems(price=np.array([24.0]), stock=np.array([0.0]), rating=np.array([np.nan]), popularity=np.array([np.nan]))
    X = build_features(items=table, state=STATE, user_vector=None, candidates=Candidates.of_rows([row]), now=NOW, live=live)
    assert X[0, COL["price_change"]] == pytest.approx(2.0)
    assert X[0, COL["in_stock"]] == 0.0 and X[0, COL["rating"]] == 4.0
    assert X[0, COL["log_popularity"]] == pytest.approx(math.log1p(2.0))


def test_embedding_and_ann_features(table):
    u = np.array([1.0, 0.0, 0.0, 0.0], dtype=np.float32)
    cands = Candidates(rows=np.array([0, 1]), ann_rank=np.array([0.0, 200.0], np.float32),
                       ann_score=np.array([0.5, 0.0], np.float32), sources=np.array([SRC_ANN, SRC_POPULAR], np.uint8))
    X = build_features(items=table, state=UserState(), user_vector=u, candidates=cands, now=NOW)
    assert X[:, COL["emb_dot"]] == pytest.approx(table.embeddings[[0, 1], 0])
    assert X[0, COL["src_ann"]] == 1.0 and X[1, COL["src_popular"]] == 1.0 and X[1, COL["src_ann"]] == 0.0
    assert X[0, COL["ann_rank_recip"]] == 1.0 and X[1, COL["ann_score"]] == 0.0


EVENT = st.tuples(st.sampled_from(["impression", "view", "cart", "purchase"]), st.sampled_from([r["item_id"] for r in ROWS] + ["unknown"]),
                  st.floats(NOW - 30 * 86400, NOW), st.floats(0.0, 500.0))


@settings(max_examples=60, deadline=None)
@given(events=st.lists(EVENT, max_size=40), vector=st.booleans(), now_offset=st.floats(-86400, 86400))
def test_features_are_finite_for_any_history(table, events, vector, now_offset):
    state = _state(*events)
    u = np.ones(4, np.float32) if vector else None
    X = build_features(items=table, state=state, user_vector=u, candidates=Candidates.of_rows(range(12)), now=NOW + now_offset)
    assert X.shape == (12, N_FEATURES) and np.all(np.isfinite(X))


@settings(max_examples=30, deadline=None)
@given(events=st.lists(EVENT, max_size=30))
def test_rows_do_not_depend_on_the_other_candidates(table, events):
    state = _state(*events)
    full = build_features(items=table, state=state, user_vector=None, candidates=Candidates.of_rows(range(12)), now=NOW)
    one = build_features(items=table, state=state, user_vector=None, candidates=Candidates.of_rows([5]), now=NOW)
    assert np.allclose(full[5], one[0], rtol=1e-5, atol=1e-6)  # equal up to BLAS rounding of the dot products


# --- parity: training replay vs the serving path -------------------------------------------------

@pytest.fixture(scope="module")
def small():
    return generate(MarketplaceSize(n_items=150, n_users=60, days=10, n_parents=3, children_per_parent=3, sessions_per_user=4.0),
                    seed=5, geographies={"us": 0.7, "eu": 0.3})


def test_training_replay_equals_event_by_event_updates(small):
    """The nearline updater applies each Event with apply_event; training's replay must give the same states."""
    cut = small.start + 0.7 * (small.end - small.start)
    (trained,) = replay_states(small, small.events.before(cut), snapshots=(cut,))
    category = {i.item_id: i.category for i in small.items}
    live: dict[str, UserState] = {}
    for ev in small.iter_events(small.events.before(cut)):
        live[ev.user_id] = apply_event(live.get(ev.user_id, UserState()), event_type=ev.type, item_id=ev.item_id,
                                       ts=ev.ts, category_of=category.get, price=ev.price)
    assert {small.users[u].user_id: s for u, s in trained.items()} == live


def test_serving_features_after_redis_round_trip_equal_training_features(small, redis_client):
    """Training computes features from the replayed state; serving from the state read back from Redis."""
    cut = small.start + 0.7 * (small.end - small.start)
    (states,) = replay_states(small, small.events.before(cut), snapshots=(cut,))
    rows = [{"item_id": i.item_id, "category": i.category, "parent_category": i.parent_category, "brand": i.brand,
             "price": i.price, "stock": i.stock, "rating": i.rating, "created_at": i.created_at} for i in small.items]
    table = ItemTable.build(json.loads(json.dumps(rows)), embeddings=np.random.default_rng(1).normal(size=(len(rows), 8)),
                            copurchase={})
    cands = Candidates.of_rows(range(len(rows)))
    compared = 0
    for u, state in list(states.items())[:15]:
        user_id = small.users[u].user_id
        redis_client.hset(redis_keys.user_features(user_id), mapping=state.to_hash())
        served = UserState.from_hash(redis_client.hgetall(redis_keys.user_features(user_id)))
        vec = table.embeddings[u % len(rows)]
        a = build_features(items=table, state=state, user_vector=vec, candidates=cands, now=cut)
        b = build_features(items=table, state=served, user_vector=vec, candidates=cands, now=cut)
        assert np.array_equal(a, b)
        compared += 1
    assert compared == 15
