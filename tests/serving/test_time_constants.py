"""Per-data-set time constants (serving.time_constants): validated by field, read from a CSV
directory, used by training (segment list length, popularity half-life, interest fade of the
replayed states), shipped in the bundle, and applied online by the feature updater once the cell
published them, so online and offline user states agree."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Callable

import pandas as pd
import pytest

from contracts.events import Event
from regions import redis_keys
from regions.errors import InputError
from replication.interaction_log import append_events
from serving.bundle import LoadedBundle
from serving.datasets.registry import adapter_for
from serving.feature_updater import FeatureUpdater, UpdaterSettings
from serving.marketplace import generate_named
from serving.time_constants import TimeConstants
from serving.training import train_bundle
from serving.user_state import UserState, apply_event
from tests.replication.helpers import Stack, stack_factory  # noqa: F401
from tests.serving.test_datasets import QUICK

DAY = 86400.0


@pytest.mark.parametrize(("raw", "field"), [
    ({"interest_half_life_days": 0}, "time_constants.interest_half_life_days"),
    ({"popularity_half_life_days": "week"}, "time_constants.popularity_half_life_days"),
    ({"segment_list_length": 5}, "time_constants.segment_list_length"),
    ({"fade": 3}, "time_constants"),
])
def test_bad_constants_are_refused_naming_the_field(raw: dict, field: str) -> None:
    with pytest.raises(InputError) as info:
        TimeConstants.from_json(raw)
    assert info.value.field == field


def test_a_csv_directory_declares_its_own(tmp_path: Path) -> None:
    pd.DataFrame({"item_id": ["a"], "category": ["x"], "parent_category": ["p"], "brand": ["b"], "price": [1.0],
                  "created_at": [0.0]}).to_csv(tmp_path / "items.csv", index=False)
    pd.DataFrame({"user_id": ["u"], "item_id": ["a"], "type": ["view"], "ts": [10.0]}).to_csv(tmp_path / "events.csv", index=False)
    assert adapter_for(str(tmp_path)).time_constants == TimeConstants()
    (tmp_path / "time_constants.json").write_text(json.dumps({"interest_half_life_days": 14, "segment_list_length": 50}))
    assert adapter_for(str(tmp_path)).time_constants == TimeConstants(interest_half_life_days=14, segment_list_length=50)
    (tmp_path / "time_constants.json").write_text(json.dumps({"segment_list_length": 3}))
    with pytest.raises(InputError) as info:
        adapter_for(str(tmp_path))
    assert info.value.field == "time_constants.segment_list_length"


def test_training_uses_and_ships_the_data_sets_constants(tmp_path: Path) -> None:
    data = generate_named("tiny", seed=3, geographies={"us": 1.0})
    mine = TimeConstants(interest_half_life_days=30.0, popularity_half_life_days=1.0, segment_list_length=20)
    default = train_bundle(data, out_dir=tmp_path / "default", now=2e9, settings=QUICK)
    custom = train_bundle(data, out_dir=tmp_path / "custom", now=2e9, settings=replace(QUICK, time_constants=mine))
    shipped = LoadedBundle.load(custom.bundle_dir)
    assert shipped.time_constants == mine and LoadedBundle.load(default.bundle_dir).time_constants == TimeConstants()
    lists = json.loads((custom.bundle_dir / "segments.json").read_text())
    assert max(len(v) for v in lists.values()) == 20
    assert max(len(v) for v in json.loads((default.bundle_dir / "segments.json").read_text()).values()) > 20
    # a 1-day popularity half-life ranks by the last days' demand: another order than 7 days
    assert json.loads((custom.bundle_dir / "segments.json").read_text())["all"][:20] != \
        json.loads((default.bundle_dir / "segments.json").read_text())["all"][:20]


def test_the_feature_updater_decays_interest_with_the_published_half_life(stack_factory: Callable[..., Stack]) -> None:
    stack = stack_factory()
    client = stack.clients["us-east"]
    categories = {"i1": "shoes", "i2": "books"}
    events = [Event(event_id=f"e{n}", user_id="us-7", item_id=item, type="purchase", ts=1.7e9 + n * 3 * DAY, geo="us")
              for n, item in enumerate(("i1", "i2"))]
    mine = TimeConstants(interest_half_life_days=30.0)
    client.set(redis_keys.TIME_CONSTANTS, mine.dumps())
    append_events(client, events, topology=stack.topology, region="us-east")
    updater = FeatureUpdater(topology=stack.topology, region="us-east", client=client, category_of=categories,
                             settings=UpdaterSettings(block_ms=0))
    updater.step()
    online = UserState.from_hash(client.hgetall(redis_keys.user_features("us-7")))

    def replay(half_life_s: float) -> UserState:
        state = UserState()
        for e in events:
            state = apply_event(state, event_type=e.type, item_id=e.item_id, ts=e.ts, category_of=categories.get,
                                half_life_s=half_life_s)
        return state

    assert updater.interest_half_life_s == mine.interest_half_life_s
    assert online.category_affinity == pytest.approx(replay(mine.interest_half_life_s).category_affinity)
    assert online.category_affinity["shoes"] == pytest.approx(5 * 0.5 ** (3 / 30))
    assert online.category_affinity != pytest.approx(replay(TimeConstants().interest_half_life_s).category_affinity)
