"""Learning where it is cheap: ALS chosen on the validation split picks the better setting; items
whose created_at is later than their events keep those events (and are counted)."""
from __future__ import annotations

import json
from dataclasses import replace

import numpy as np

from serving.als_selection import select_als
from serving.embeddings import AlsSettings
from serving.marketplace import KIND_CODE, SIZES, generate
from serving.seen_items import SeenPolicy
from serving.training import _truth, effective_created_at, items_created_after_events, train_bundle
from tests.serving.test_datasets import QUICK

GEOS = {"us": 0.7, "eu": 0.3}


def test_validation_split_prefers_a_real_setting_over_a_crippled_one():
    data = generate(SIZES["tiny"], seed=3, geographies=GEOS)
    span = data.end - data.start
    t1 = data.start + 0.6 * span
    truth = _truth(data, data.events.between(t1, data.start + 0.8 * span))
    crippled = AlsSettings(factors=1, iterations=1, regularization=50.0)
    good = AlsSettings(factors=16, iterations=8)
    best, trials = select_als(data, as_of=t1, truth=truth, grid=(crippled, good), seen={}, policy=SeenPolicy(),
                              max_users=200, seed=1)
    assert best == good
    assert trials[1]["recall_at_100"] > trials[0]["recall_at_100"]


def test_items_created_after_their_events_keep_their_events(tmp_path):
    data = generate(SIZES["tiny"], seed=5, geographies=GEOS)
    bought = np.bincount(data.events.item[data.events.kind == KIND_CODE["purchase"]], minlength=len(data.items))
    row = int(np.argmax(bought))
    late = list(data.items)
    late[row] = replace(late[row], created_at=data.end + 86400.0)  # "created" after every one of its events
    broken = replace(data, items=tuple(late))
    assert items_created_after_events(broken)[0] == 1
    assert effective_created_at(broken)[row] == data.events.ts[data.events.item == row].min()
    result = train_bundle(broken, out_dir=tmp_path / "b", now=2e9, settings=QUICK)
    metrics = result.manifest.metrics
    assert metrics["items_created_after_their_events"] == 1 and metrics["events_older_than_their_item"] > 0
    items = {r["item_id"]: r for r in json.loads((tmp_path / "b" / "items.json").read_text())}
    kept = items[data.items[row].item_id]
    assert kept["purchases"] > 0
