"""Seen-items policy (serving.seen_items): the pure rule, its JSON form, the offline replay, and
that the offline evaluation shows no excluded item while a policy that excludes nothing does."""
from __future__ import annotations

import math

import numpy as np
import pytest

from regions.errors import InputError
from serving.datasets.base import LoadOptions
from serving.datasets.registry import ADAPTERS
from serving.marketplace import KIND_CODE
from serving.seen_items import DAY, SeenPolicies, SeenPolicy, excluded, record, seen_sets
from tests.serving.test_datasets import GEOS, QUICK

NOW = 1_000 * DAY
PARENT = {"tv": "durable", "milk": "dairy", "sofa": "durable"}.get


def test_durable_items_bought_inside_the_window_are_hidden_consumables_are_not():
    policy = SeenPolicy(kinds=("purchase",), window_days=30, repeatable_parents=("dairy",))
    seen = {"tv": NOW - 5 * DAY, "milk": NOW - 1 * DAY, "sofa": NOW - 40 * DAY}
    assert excluded(seen, now=NOW, policy=policy, parent_of=PARENT) == {"tv"}
    assert excluded(seen, now=NOW, policy=SeenPolicy(window_days=math.inf), parent_of=PARENT) == {"tv", "milk", "sofa"}
    assert excluded(seen, now=NOW, policy=SeenPolicy(repeat_all=True), parent_of=PARENT) == frozenset()


def test_record_keeps_only_the_kinds_of_the_policy_and_the_newest_items():
    policies = SeenPolicies.same(SeenPolicy(kinds=("purchase",), max_items=2))
    seen: dict[str, float] = {}
    seen = record(seen, event_type="view", item_id="a", ts=1.0, policies=policies)
    assert seen == {}
    for n, item in enumerate(("a", "b", "c")):
        seen = record(seen, event_type="purchase", item_id=item, ts=10.0 + n, policies=policies)
    assert seen == {"b": 11.0, "c": 12.0}


def test_offline_replay_equals_event_by_event_record():
    policies = SeenPolicies.same(SeenPolicy(kinds=("cart", "purchase"), max_items=3))
    rng = np.random.default_rng(3)
    n = 300
    users, items = rng.integers(0, 5, n), rng.integers(0, 8, n)
    kinds, ts = rng.integers(0, 4, n).astype(np.int8), np.sort(rng.random(n) * 1000)
    ids = [f"i{k}" for k in range(8)]
    replay = seen_sets(users=users, items=items, kinds=kinds, ts=ts, item_ids=ids, policies=policies)
    names = list(KIND_CODE)
    by_hand: dict[int, dict[str, float]] = {}
    for u, i, k, t in zip(users, items, kinds, ts):
        new = record(by_hand.get(int(u), {}), event_type=names[int(k)], item_id=ids[int(i)], ts=float(t), policies=policies)
        if new:
            by_hand[int(u)] = new
    assert replay == by_hand


def test_policy_json_round_trips_and_bad_fields_are_named():
    policies = SeenPolicies(home=SeenPolicy(window_days=math.inf, kinds=("view", "purchase")),
                            cart=SeenPolicy(repeat_all=True))
    import json
    assert SeenPolicies.from_json(json.loads(policies.dumps())) == policies
    with pytest.raises(InputError) as info:
        SeenPolicy(kinds=("like",))
    assert info.value.field == "seen_policy.kinds"
    with pytest.raises(InputError) as info:
        SeenPolicies.from_json({"checkout": {}})
    assert info.value.field == "seen_policy"
    with pytest.raises(InputError):
        SeenPolicies().of("search")


def test_offline_evaluation_never_shows_an_excluded_item_and_the_check_can_fail(tmp_path):
    from serving.training import evaluate_bundle, replay_states, _truth
    from serving.bundle import LoadedBundle
    from serving.training import train_bundle

    adapter = ADAPTERS["movielens"]
    data = adapter.load(LoadOptions(geographies=GEOS, max_users=150))
    result = train_bundle(data, out_dir=tmp_path / "b", now=2e9, settings=QUICK, seen_policy=adapter.seen_policy)
    cutoff = result.manifest.metrics["cutoff"]
    bundle = LoadedBundle.load(result.bundle_dir)
    (states,) = replay_states(data, data.events.before(cutoff), snapshots=(cutoff,))
    ev = data.events.before(cutoff)
    ids = [i.item_id for i in data.items]
    seen = seen_sets(users=ev.user, items=ev.item, kinds=ev.kind, ts=ev.ts, item_ids=ids, policies=adapter.seen_policy)
    truth = _truth(data, data.events.between(cutoff, data.end))
    index_of = {u.user_id: n for n, u in enumerate(data.users)}

    def shown_seen(policies):
        out = evaluate_bundle(bundle, dataset=data, states=states, truth=truth, now=cutoff, settings=QUICK,
                              progress=lambda _m: None, seen=seen, policies=policies)
        return sum(1 for m, per in out.top10.items() for u, top in per.items()
                   for i in top if i in seen.get(index_of[u], {}))

    assert shown_seen(adapter.seen_policy) == 0
    assert shown_seen(SeenPolicies.same(SeenPolicy(repeat_all=True))) > 0
