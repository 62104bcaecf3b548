"""Data-set adapters (serving.datasets): each on a small slice, the odd-row repairs, --data PATH,
and a short training run on a real data set's slice that reports all/warm/cold users."""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from regions.errors import InputError
from serving.datasets.base import LoadOptions, build_dataset
from serving.datasets.registry import ADAPTERS, adapter_for
from serving.embeddings import AlsSettings
from serving.marketplace import KIND_CODE
from serving.training import TrainSettings, train_bundle

GEOS = {"us": 0.7, "eu": 0.3}
QUICK = TrainSettings(als_grid=(AlsSettings(factors=8, iterations=4), AlsSettings(factors=16, iterations=4)),
                      max_ranker_users=150, max_eval_users=200, trees=20, max_validation_users=100)


def _shape_ok(data) -> None:
    assert len(data.events) > 0 and len(data.items) > 0 and len(data.users) > 0
    assert np.all(np.diff(data.events.ts) >= 0), "events are sorted by time"
    assert data.events.item.max() < len(data.items) and data.events.user.max() < len(data.users)
    created = np.array([i.created_at for i in data.items])
    assert np.all(created[data.events.item] <= data.events.ts + 1e-6) or data.name.startswith("synthetic")
    assert all(u.user_id.startswith(f"{u.geo}-") and u.geo in GEOS for u in data.users)


@pytest.mark.parametrize("name", sorted(ADAPTERS))
def test_every_shipped_adapter_loads_a_small_slice(name):
    adapter = ADAPTERS[name]
    data = adapter.load(LoadOptions(geographies=GEOS, size="tiny", max_users=40))
    _shape_ok(data)
    assert len(np.unique(data.events.user)) <= 40
    assert adapter.description and adapter.seen_policy.home is not None


def test_movielens_maps_ratings_to_event_kinds_and_never_reshows_a_rated_movie():
    data = ADAPTERS["movielens"].load(LoadOptions(geographies=GEOS, max_users=30))
    kinds = set(np.unique(data.events.kind).tolist())
    assert kinds <= {KIND_CODE["impression"], KIND_CODE["view"], KIND_CODE["purchase"]}
    assert KIND_CODE["purchase"] in kinds and KIND_CODE["impression"] in kinds
    assert data.items[0].item_id.startswith("ml-") and data.items[0].price == 0.0
    policy = ADAPTERS["movielens"].seen_policy.home
    assert math.isinf(policy.window_days) and "impression" in policy.kinds
    assert data.notes["items_without_created_at"] == len(data.items)


def _tables():
    items = pd.DataFrame({"item_id": ["a", "b", "c"], "category": ["x/1", "x/2", None], "parent_category": ["x", "x", "y"],
                          "brand": ["b1", "b2", "b3"], "price": [1.0, -3.0, 2.0], "created_at": [0.0, 500.0, 0.0]})
    events = pd.DataFrame({"user_id": ["u1", "u1", "u2", "u2", "u3"], "item_id": ["a", "b", "zzz", "c", "a"],
                           "type": ["view", "purchase", "view", "cart", "view"], "ts": [10.0, 100.0, 20.0, "bad", 30.0]})
    return items, events


def test_odd_rows_are_repaired_or_dropped_and_counted():
    items, events = _tables()
    data = build_dataset("t", items=items, events=events, geographies=GEOS)
    assert data.notes["events_unknown_item"] == 1 and data.notes["events_bad_time"] == 1
    assert data.notes["items_created_after_first_event"] == 1  # b: created 500, bought at 100
    b = next(i for i in data.items if i.item_id == "b")
    assert b.created_at == 100.0 and b.price == 0.0
    assert next(i for i in data.items if i.item_id == "c").category == "UNKNOWN"
    assert len(data.events) == 3 and {u.user_id.split("-", 1)[1] for u in data.users} == {"u1", "u3"}


def test_an_unknown_event_type_or_missing_column_is_refused_by_name():
    items, events = _tables()
    with pytest.raises(InputError) as info:
        build_dataset("t", items=items, events=events.assign(type="like"), geographies=GEOS)
    assert info.value.field == "events.type" and "purchase" in str(info.value)
    with pytest.raises(InputError) as info:
        build_dataset("t", items=items.drop(columns=["brand"]), events=events, geographies=GEOS)
    assert info.value.field == "items" and "brand" in str(info.value)


def test_data_path_reads_a_csv_directory_with_its_seen_policy(tmp_path):
    items, events = _tables()
    items.to_csv(tmp_path / "items.csv", index=False)
    events.to_csv(tmp_path / "events.csv", index=False)
    (tmp_path / "seen_policy.json").write_text(json.dumps({"home": {"kinds": ["purchase"], "window_days": None}}))
    adapter = adapter_for(str(tmp_path))
    assert math.isinf(adapter.seen_policy.home.window_days)
    assert len(adapter.load(LoadOptions(geographies=GEOS)).events) == 3
    with pytest.raises(InputError) as info:
        adapter_for("no-such-data")
    assert info.value.field == "--data" and "movielens" in str(info.value)
    (tmp_path / "items.csv").unlink()
    with pytest.raises(InputError, match="items.csv"):
        adapter_for(str(tmp_path))


def test_training_on_a_movielens_slice_reports_warm_and_cold_users(tmp_path):
    adapter = ADAPTERS["movielens"]
    data = adapter.load(LoadOptions(geographies=GEOS, max_users=200))
    result = train_bundle(data, out_dir=tmp_path / "b", now=2e9, settings=QUICK, seen_policy=adapter.seen_policy)
    metrics = result.manifest.metrics
    assert set(result.cohorts) == {"all", "warm", "cold"}
    n = {c: result.cohorts[c]["popularity"].users for c in result.cohorts}
    assert n["all"] == n["warm"] + n["cold"] and n["warm"] > 0 and n["cold"] > 0
    assert set(metrics["ndcg10_full_over_popularity_by_cohort"]) == {"all", "warm", "cold"}
    assert len(metrics["als_trials"]) == 2 and metrics["als"]["factors"] in (8, 16)
    assert json.loads((result.bundle_dir / "seen_policy.json").read_text())["home"]["window_days"] is None
