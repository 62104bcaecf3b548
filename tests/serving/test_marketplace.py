"""The synthetic marketplace: deterministic, shaped like the interfaces say, with real signal."""
from __future__ import annotations

import numpy as np
import pytest

from regions.errors import InputError
from contracts.events import EVENT_TYPES, Event, parse_event
from serving.completejourney import _band
from serving.datasets.base import geo_of
from serving.marketplace import SIZES, MarketplaceSize, generate, generate_named

GEOS = {"us": 0.7, "eu": 0.3}
SMALL = MarketplaceSize(n_items=200, n_users=150, days=20, n_parents=4, children_per_parent=3, sessions_per_user=4.0)


@pytest.fixture(scope="module")
def data():
    return generate(SMALL, seed=11, geographies=GEOS)


def _columns(d):
    e = d.events
    return [e.user, e.item, e.kind, e.ts, e.price, e.session]


def test_same_seed_same_data(data):
    again = generate(SMALL, seed=11, geographies=GEOS)
    assert again.items == data.items
    assert again.users == data.users
    assert again.price_changes == data.price_changes
    for a, b in zip(_columns(again), _columns(data)):
        assert np.array_equal(a, b)


def test_other_seed_other_data(data):
    other = generate(SMALL, seed=12, geographies=GEOS)
    assert other.items != data.items or not np.array_equal(other.events.item, data.events.item)


def test_user_ids_carry_their_geography(data):
    for user in data.users:
        prefix, _, number = user.user_id.partition("-")
        assert prefix == user.geo and prefix in GEOS and number.isdigit()
    assert len({u.user_id for u in data.users}) == len(data.users)


def test_geographies_follow_peak_share():
    d = generate(MarketplaceSize(n_items=50, n_users=2000, days=5, n_parents=2, children_per_parent=2, sessions_per_user=0.1),
                 seed=3, geographies=GEOS)
    share_us = sum(u.geo == "us" for u in d.users) / len(d.users)
    assert 0.65 < share_us < 0.75


def test_category_tree_and_catalog_fields(data):
    for item in data.items:
        assert item.category.startswith(item.parent_category + ".")
        assert item.price > 0 and item.stock >= 0 and 1.0 <= item.rating <= 5.0
    assert any(i.stock == 0 for i in generate(SIZES["tiny"], seed=1, geographies=GEOS).items)


def test_events_are_ordered_and_consistent(data):
    e = data.events
    assert len(e) > 1000
    assert np.all(np.diff(e.ts) >= 0)
    assert set(np.unique(e.kind)) == {0, 1, 2, 3}
    created = np.array([i.created_at for i in data.items])
    assert np.all(e.ts >= created[e.item] - 1.0)  # nothing is seen before it exists (impression 0.5 s early)
    purchases = e.kind == EVENT_TYPES.index("purchase")
    assert np.all(e.price[purchases] > 0) and np.all(e.price[~purchases] == 0)
    assert np.all((e.ts >= data.start) & (e.ts < data.end + 3600))


def test_funnel_narrows(data):
    counts = np.bincount(data.events.kind, minlength=4)
    assert counts[1] > counts[2] > 0 and counts[2] >= counts[3] > 0


def test_purchase_prices_follow_price_changes(data):
    e = data.events
    assert data.price_changes
    changed = {row: (ts, new) for row, ts, new in data.price_changes}
    bought = np.flatnonzero(e.kind == 3)
    checked = 0
    for n in bought:
        row = int(e.item[n])
        if row in changed:
            ts, new = changed[row]
            expected = new if e.ts[n] - 60.0 >= ts else data.initial_prices[row]  # priced when viewed
            if abs(e.ts[n] - 60.0 - ts) > 2.0:  # away from the instant of change
                assert e.price[n] == pytest.approx(expected, rel=1e-5)
                checked += 1
    assert data.prices_at(data.end).tolist() == pytest.approx([i.price for i in data.items])
    assert checked > 0


def test_events_are_valid_interaction_log_events(data):
    events = list(data.iter_events())[:300]
    for ev in events:
        assert Event.from_fields(ev.to_fields()) == ev
        raw = {"user_id": ev.user_id, "item_id": ev.item_id, "type": ev.type, "ts": ev.ts, "price": ev.price}
        parsed = parse_event(raw, now=data.end, geo=ev.geo)
        assert (parsed.user_id, parsed.item_id, parsed.type) == (ev.user_id, ev.item_id, ev.type)


def test_unknown_size_names_the_allowed_ones():
    with pytest.raises(InputError) as info:
        generate_named("huge", seed=1, geographies=GEOS)
    assert info.value.field == "size" and "demo" in str(info.value)


@pytest.mark.parametrize("income, band", [("Under 15K", "low"), ("25-34K", "low"), ("35-49K", "mid"), ("75-99K", "mid"),
                                          ("100-124K", "high"), ("250K+", "high"), (None, "mid"), ("nan", "mid")])
def test_completejourney_price_band(income, band):
    assert _band(income) == band


def test_completejourney_geography_is_stable_and_weighted():
    geos = [geo_of(f"household-{h}", GEOS) for h in range(4000)]
    assert geos == [geo_of(f"household-{h}", GEOS) for h in range(4000)]
    assert 0.65 < geos.count("us") / len(geos) < 0.75
