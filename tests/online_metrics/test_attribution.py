"""Attribution of outcome events to the impression that showed the item (online_metrics.attribution)."""
from __future__ import annotations

import pytest

from contracts.events import Event
from contracts.impressions import Impression
from online_metrics.attribution import AttributionSettings, VariantTotals, attribute, merge_totals
from regions.errors import InputError

T0 = 1_800_000_000.0


def imp(n: int, user: str, items: tuple[str, ...], ts: float, *, bundle: str = "good", experiment: str = "",
        arm: str = "") -> Impression:
    return Impression(impression_id=f"i{n}", user_id=user, items=items, ts=ts, region="us-east", bundle_version=bundle,
                      tier="full", experiment=experiment, arm=arm)


def ev(n: int, user: str, item: str, kind: str, ts: float, price: float = 0.0) -> Event:
    return Event(event_id=f"e{n}", user_id=user, item_id=item, type=kind, ts=ts, geo="us", price=price)


def test_outcomes_go_to_the_latest_impression_that_showed_the_item_within_the_window() -> None:
    imps = [imp(1, "us-1", ("a", "b"), T0), imp(2, "us-1", ("a", "c"), T0 + 100), imp(3, "us-2", ("a",), T0, bundle="weak")]
    events = [
        ev(1, "us-1", "a", "view", T0 + 150),          # -> i2 (latest showing a)
        ev(2, "us-1", "b", "view", T0 + 50),           # -> i1
        ev(3, "us-1", "b", "cart", T0 + 60),           # -> i1
        ev(4, "us-1", "b", "purchase", T0 + 70, 12.5),  # -> i1, revenue
        ev(5, "us-1", "z", "view", T0 + 70),           # never shown: not attributed
        ev(6, "us-2", "a", "view", T0 + 2000),         # past the 1800 s window: not attributed
        ev(7, "us-1", "c", "view", T0 + 97),           # 3 s before the slate: inside the 5 s skew -> i2
        ev(8, "us-1", "c", "view", T0 + 80),           # 20 s before the slate showing c: not a reaction to it
        ev(1, "us-1", "a", "view", T0 + 150),          # the same event id again (log + replica): once
        ev(9, "us-1", "a", "impression", T0 + 150),    # not an outcome
    ]
    totals = attribute(imps, events)
    good, weak = totals["good"], totals["weak"]
    assert (good.impressions, good.clicked, good.clicks, good.carted, good.purchased) == (2, 2, 3, 1, 1)
    assert good.revenue == pytest.approx(12.5) and good.revenue_sq == pytest.approx(12.5 ** 2)
    assert (weak.impressions, weak.clicked) == (1, 0)
    assert good.ctr == 1.0 and good.conversion_rate == 0.5 and good.revenue_per_impression == pytest.approx(6.25)
    assert (good.first_ts, good.last_ts) == (T0, T0 + 100)


def test_a_slate_shown_just_after_the_outcome_does_not_take_it_from_the_one_before() -> None:
    imps = [imp(1, "us-1", ("a",), T0), imp(2, "us-1", ("a",), T0 + 2), imp(3, "us-1", ("a",), T0 + 4)]
    events = [ev(1, "us-1", "a", "view", T0 + 1), ev(2, "us-1", "a", "view", T0 + 3), ev(3, "us-1", "a", "view", T0 + 3.5)]
    got = attribute(imps, events)["good"]
    assert (got.impressions, got.clicked, got.clicks) == (3, 2, 3)  # i1 one click, i2 two, i3 none
    assert (got.clicked_sq, got.clicked_x_n, got.n_sq, got.users) == (4.0, 6.0, 9.0, 1)


def test_a_shorter_window_attributes_less() -> None:
    imps = [imp(1, "us-1", ("a",), T0)]
    events = [ev(1, "us-1", "a", "view", T0 + 120)]
    assert attribute(imps, events)["good"].clicked == 1
    assert attribute(imps, events, settings=AttributionSettings(window_s=60))["good"].clicked == 0


def test_by_arm_keeps_experiment_impressions_only() -> None:
    imps = [imp(1, "us-1", ("a",), T0, experiment="x1", arm="control"), imp(2, "us-2", ("a",), T0, experiment="x1", arm="treat"),
            imp(3, "us-3", ("a",), T0), imp(4, "us-4", ("a",), T0, experiment="x2", arm="control")]
    events = [ev(1, "us-2", "a", "view", T0 + 1)]
    by_arm = attribute(imps, events, by="arm")
    assert sorted(by_arm) == ["x1/control", "x1/treat", "x2/control"]
    assert by_arm["x1/treat"].clicked == 1
    assert sorted(attribute(imps, events, by="arm", experiment="x1")) == ["x1/control", "x1/treat"]


def test_totals_of_two_regions_merge() -> None:
    east = attribute([imp(1, "us-1", ("a",), T0)], [ev(1, "us-1", "a", "purchase", T0 + 1, 4.0)])
    west = attribute([imp(2, "us-2", ("a",), T0 + 10)], [ev(2, "us-2", "a", "purchase", T0 + 11, 6.0)])
    both = merge_totals([east, west])["good"]
    assert (both.impressions, both.purchased, both.revenue, both.revenue_sq) == (2, 2, 10.0, 52.0)
    assert (both.first_ts, both.last_ts) == (T0, T0 + 10)
    with pytest.raises(InputError, match="variant"):
        VariantTotals(variant="a").merge(VariantTotals(variant="b"))


def test_bad_input_names_the_field() -> None:
    with pytest.raises(InputError, match="^by:"):
        attribute([], [], by="colour")
    with pytest.raises(InputError, match="^window_s:"):
        AttributionSettings(window_s=0)
    with pytest.raises(InputError, match="^arm:"):
        imp(1, "us-1", ("a",), T0, experiment="x1")
    with pytest.raises(InputError, match="^items:"):
        imp(1, "us-1", (), T0)


def test_impression_round_trips_through_stream_fields() -> None:
    one = imp(1, "us-1", ("a", "b"), T0, experiment="x1", arm="treat")
    fields = {k.encode(): v.encode() for k, v in one.to_fields().items()}
    assert Impression.from_fields(fields) == one
    with pytest.raises(InputError, match="^impression:"):
        Impression.from_fields({"user_id": "us-1"})


def test_totals_round_trip_through_json_and_bad_json_names_the_field() -> None:
    one = attribute([imp(1, "us-1", ("a",), T0)], [ev(1, "us-1", "a", "purchase", T0 + 1, 4.25)])["good"]
    assert VariantTotals.from_dict(one.to_dict()) == one
    with pytest.raises(InputError, match="^clicked:"):
        VariantTotals.from_dict({**one.to_dict(), "clicked": -1})
    with pytest.raises(InputError, match="^impressions:"):
        VariantTotals.from_dict({**one.to_dict(), "impressions": 1.5})
    with pytest.raises(InputError, match="^variant:"):
        VariantTotals.from_dict({"impressions": 3})
