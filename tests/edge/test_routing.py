"""The edge's pure routing: table parsing, rendezvous choice, fallback order, residency."""
from __future__ import annotations

from collections import Counter
from typing import Any, Mapping

import pytest
from hypothesis import given, settings as hsettings, strategies as st

from contracts.routing_table import RoutingTable, default_table, parse_table
from edge.routing import attempt_budget_ms, cell_call, plan_events, plan_request, rendezvous_order, tier_for
from edge.settings import EdgeSettings, settings_from_env
from regions.errors import InputError
from regions.geo import home_geography_of
from regions.topology import Topology
from tests.contracts.topologies import DOC_TABLE, make_topology

SETTINGS = EdgeSettings()
IDS = [f"us-{n}" for n in range(10_000)]
"""A fixed set of synthetic user ids: the proportions below are deterministic, not random."""


TOPO = make_topology({"us": ["us-east", "us-west"], "eu": ["eu-west"]})
WIDE = make_topology({"us": ["us-east", "us-west", "us-central"], "eu": ["eu-west", "eu-north"], "ap": ["ap-south"]})
def table(geos: Mapping[str, Any], **extra: Any) -> RoutingTable:
    return parse_table({"version": 1, "geos": geos, **extra}, TOPO)


# -- rendezvous: weights respected, stable, drained never chosen ------------------------------------

@pytest.mark.parametrize("weights", [
    {"us-east": 50, "us-west": 50},
    {"us-east": 70, "us-west": 30},
    {"us-east": 90, "us-west": 10},
    {"us-east": 10, "us-west": 50, "us-central": 40},
    {"us-east": 34, "us-west": 33, "us-central": 33},
])
def test_choice_follows_the_weights_over_10000_fixed_ids(weights: dict[str, int]) -> None:
    chosen = Counter(rendezvous_order(uid, weights)[0] for uid in IDS)
    total = sum(weights.values())
    for region, w in weights.items():
        assert abs(chosen[region] / len(IDS) - w / total) < 0.02, (region, chosen)


@pytest.mark.parametrize("weights", [{"us-east": 100, "us-west": 0}, {"us-east": 0, "us-west": 60, "us-central": 40}])
def test_a_drained_region_is_never_chosen(weights: dict[str, int]) -> None:
    drained = {r for r, w in weights.items() if w == 0}
    for uid in IDS:
        assert not drained & set(rendezvous_order(uid, weights))


def test_raising_one_weight_only_moves_users_onto_that_region() -> None:
    before = {"us-east": 50, "us-west": 50, "us-central": 0}
    after = {**before, "us-central": 25}
    moved = [(rendezvous_order(u, before)[0], rendezvous_order(u, after)[0]) for u in IDS]
    changed = [(a, b) for a, b in moved if a != b]
    assert changed and all(b == "us-central" for _, b in changed)


def test_the_same_user_gets_the_same_region_every_time() -> None:
    weights = {"us-east": 50, "us-west": 50}
    assert [rendezvous_order(u, weights) for u in IDS[:200]] == [rendezvous_order(u, weights) for u in IDS[:200]]


# -- plans ------------------------------------------------------------------------------------------

def test_plan_primary_retry_in_geography_then_anonymous_elsewhere() -> None:
    plan = plan_request(table({"us": {"regions": {"us-east": 50, "us-west": 50}}}), TOPO, key="us-42",
                        home_geography="us", personal=True, settings=SETTINGS)
    roles = [(a.role, TOPO.regions[a.region].geography, a.anonymous) for a in plan.attempts]
    assert roles == [("primary", "us", False), ("retry", "us", False), ("cross-geo", "eu", True)]


def test_an_anonymous_route_goes_straight_to_the_listed_regions_without_user() -> None:
    plan = plan_request(parse_table(DOC_TABLE, TOPO), TOPO, key="eu-7", home_geography="eu", personal=True,
                        settings=SETTINGS)
    assert [a.role for a in plan.attempts] == ["cross-geo"]
    assert all(a.anonymous and a.region in ("us-east", "us-west") for a in plan.attempts)


def test_a_geography_with_every_region_drained_asks_another_geography() -> None:
    plan = plan_request(table({"us": {"regions": {"us-east": 0, "us-west": 0}}}), TOPO, key="us-1",
                        home_geography="us", personal=True, settings=SETTINGS)
    assert [(a.region, a.anonymous) for a in plan.attempts] == [("eu-west", True)]


def test_a_request_without_user_is_anonymous_everywhere() -> None:
    plan = plan_request(default_table(TOPO), TOPO, key="sku-1", home_geography="us", personal=False, settings=SETTINGS)
    assert plan.attempts and all(a.anonymous for a in plan.attempts)


@pytest.mark.parametrize(("fraction", "expected_share"), [(0.0, 0.0), (0.3, 0.3), (1.0, 1.0)])
def test_max_tier_is_sent_for_its_fraction_of_users(fraction: float, expected_share: float) -> None:
    t = table({}, max_tier={"us-east": {"tier": "segment", "fraction": fraction}})
    sent = [tier_for(t, region="us-east", key=u) for u in IDS]
    assert set(sent) <= {"", "segment"}
    assert abs(sent.count("segment") / len(IDS) - expected_share) < 0.02
    assert tier_for(t, region="us-west", key="us-1") == ""


def test_events_stay_in_the_home_geography_drained_regions_last() -> None:
    t = table({"us": {"regions": {"us-east": 0, "us-west": 100}}, "eu": {"regions": {"us-east": 50}, "anonymous": True}})
    assert plan_events(t, TOPO, key="us-5", home_geography="us") == ("us-west", "us-east")
    assert plan_events(t, TOPO, key="eu-5", home_geography="eu") == ("eu-west",)


@pytest.mark.parametrize(("remaining", "left", "expected"), [
    (150.0, 3, 90.0), (60.0, 2, 36.0), (24.0, 1, 24.0), (7.0, 2, 0.0), (4.0, 1, 0.0), (-3.0, 1, 0.0),
])
def test_attempt_budget(remaining: float, left: int, expected: float) -> None:
    assert attempt_budget_ms(remaining, attempts_left=left, settings=SETTINGS) == pytest.approx(expected)


def test_the_cell_is_told_a_deadline_before_the_grpc_one() -> None:
    plan = plan_request(default_table(TOPO), TOPO, key="us-1", home_geography="us", personal=True, settings=SETTINGS)
    call = cell_call(plan.attempts[0], surface="homepage", user_id="us-1", count=5, budget_ms=90.0, settings=SETTINGS)
    assert (call.user_id, call.anonymous, call.deadline_ms) == ("us-1", False, 90.0 - SETTINGS.cell_margin_ms)


# -- the residency property --------------------------------------------------------------------------

def _tables(topo: Topology) -> st.SearchStrategy[dict[str, Any]]:
    def geo_route(geo: str) -> st.SearchStrategy[dict[str, Any]]:
        own = [r.name for r in topo.regions_in(geo)]
        others = [r for r in topo.regions if r not in own]
        personal = st.fixed_dictionaries({"regions": st.fixed_dictionaries({r: st.integers(0, 100) for r in own}),
                                          "anonymous": st.just(False)})
        anonymous = st.fixed_dictionaries({"regions": st.dictionaries(st.sampled_from(others), st.integers(0, 100)),
                                           "anonymous": st.just(True)})
        return personal | anonymous

    geos = st.fixed_dictionaries({}, optional={g: geo_route(g) for g in sorted(topo.geographies)})
    tiers = st.dictionaries(st.sampled_from(sorted(topo.regions)), st.sampled_from(["full", "cached", "segment"]))
    return st.builds(lambda g, m, v: {"version": v, "geos": g, "max_tier": m}, geos, tiers, st.integers(0, 10**6))


USERS = st.text("abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=12) | st.builds(
    lambda geo, n: f"{geo}-{n}", st.sampled_from(["us", "eu", "ap"]), st.integers(0, 10**6))


@hsettings(max_examples=300, deadline=None)
@given(raw=_tables(WIDE), user=USERS)
def test_no_user_id_ever_reaches_another_geography(raw: dict[str, Any], user: str) -> None:
    t = parse_table(raw, WIDE)
    home = home_geography_of(user, WIDE)
    route = t.route(home)
    plan = plan_request(t, WIDE, key=user, home_geography=home, personal=True, settings=SETTINGS)
    regions = [a.region for a in plan.attempts]
    assert len(regions) == len(set(regions))
    for attempt in plan.attempts:
        call = cell_call(attempt, surface="homepage", user_id=user, count=10, budget_ms=50.0, settings=SETTINGS)
        geo = WIDE.regions[attempt.region].geography
        if geo != home:
            assert attempt.anonymous and call.anonymous and call.user_id == ""
        else:
            assert not call.anonymous and call.user_id == user
        # a drained (weight 0) region is never chosen
        if attempt.role != "cross-geo":
            assert not route.anonymous and route.regions[attempt.region] > 0
        elif route.anonymous:
            assert route.regions[attempt.region] > 0
        else:
            assert not t.route(geo).anonymous and t.route(geo).regions[attempt.region] > 0
    personal = [a for a in plan.attempts if not a.anonymous]
    assert len(personal) <= SETTINGS.personal_tries
    assert all(WIDE.regions[r].geography == home for r in plan_events(t, WIDE, key=user, home_geography=home))


# -- settings ---------------------------------------------------------------------------------------

def test_settings_from_env() -> None:
    s = settings_from_env({"REGIONCTL_EDGE_PERSONAL_TRIES": "3", "REGIONCTL_EDGE_POLL_INTERVAL_S": "0.1",
                           "REGIONCTL_EDGE_TRANSPORT": "http", "OTHER": "x"})
    assert (s.personal_tries, s.poll_interval_s, s.transport) == (3, 0.1, "http")


@pytest.mark.parametrize(("env", "field"), [
    ({"REGIONCTL_EDGE_COLOUR": "red"}, "REGIONCTL_EDGE_COLOUR"),
    ({"REGIONCTL_EDGE_PERSONAL_TRIES": "two"}, "REGIONCTL_EDGE_PERSONAL_TRIES"),
    ({"REGIONCTL_EDGE_FIRST_ATTEMPT_SHARE": "1.5"}, "REGIONCTL_EDGE_FIRST_ATTEMPT_SHARE"),
    ({"REGIONCTL_EDGE_TRANSPORT": "smoke"}, "REGIONCTL_EDGE_TRANSPORT"),
    ({"REGIONCTL_EDGE_MAX_COUNT": "500"}, "REGIONCTL_EDGE_MAX_COUNT"),
])
def test_bad_settings_name_the_variable(env: dict[str, str], field: str) -> None:
    with pytest.raises(InputError) as info:
        settings_from_env(env)
    assert info.value.field == field
