"""Steering policy: tables over region states, failback, overrides, fail-static, capacity, properties."""
from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings as hsettings, strategies as st

from failover.health import HealthState
from failover.overrides import DrainOverride, Overrides, SteerOverride
from failover.safety import check_steering
from failover.settings import ControllerSettings
from failover.steering import (
    FailbackProgress, Snapshot, Steering, decide, static_weights, tier_hint, to_percent, water_fill,
)
from tests.failover.pure_builders import (
    DEFAULT, NOW, SETTINGS, good_probe, health, healthy_all, topologies, topology,
)

H, D, U, X = HealthState.HEALTHY, HealthState.DEGRADED, HealthState.UNHEALTHY, HealthState.DRAINED
EVEN = {"us": {"us-east": 50, "us-west": 50}, "eu": {"eu-west": 100}}


def snap(**changes: object) -> Snapshot:
    base = Snapshot(topology=DEFAULT, health=healthy_all(), now=NOW, current_weights=EVEN)
    return replace(base, **changes)


def with_state(region: str, state: HealthState, **kw: object) -> dict:
    return {**healthy_all(), region: health(region, state, **kw)}


@pytest.mark.parametrize(("state", "east", "west"), [(H, 50, 50), (D, 33, 67), (U, 0, 100), (X, 0, 100)])
def test_us_east_state_table(state: HealthState, east: int, west: int) -> None:
    result = decide(snap(health=with_state("us-east", state)))
    assert dict(result.weights["us"]) == {"us-east": east, "us-west": west}
    assert dict(result.weights["eu"]) == {"eu-west": 100}
    assert not result.cross_geo and not result.fail_static


@pytest.mark.parametrize("state", [U, X])
def test_single_region_geography_down_routes_anonymously_to_another(state: HealthState) -> None:
    result = decide(snap(health=with_state("eu-west", state)))
    assert "eu" not in result.weights
    route = result.cross_geo["eu"]
    assert (route.via, route.anonymous, dict(route.weights)) == ("us", True, {"us-east": 50, "us-west": 50})
    assert any("eu" in a and "anonymously" in a for a in result.alerts)
    assert ("consider undrain" in " ".join(result.alerts)) == (state is X)


@pytest.mark.parametrize(("state", "fragment"), [(U, "unhealthy"), (X, "drained by operator"), (D, "degraded")])
def test_reason_for_each_change(state: HealthState, fragment: str) -> None:
    result = decide(snap(health=with_state("us-east", state)))
    texts = [text for subject, text in result.reasons if subject == "us-east"]
    assert len(texts) == 1 and texts[0].startswith("50 % -> ") and fragment in texts[0]
    assert not [s for s, _ in result.reasons if s == "eu-west"]


def test_drain_override_counts_like_a_drained_state() -> None:
    drains = Overrides(drains={"us-west": DrainOverride(region="us-west", created_at=NOW, expires_at=NOW + 60)})
    assert dict(decide(snap(overrides=drains)).weights["us"]) == {"us-east": 100, "us-west": 0}


def test_steer_override_wins_then_expires() -> None:
    steer = SteerOverride(geography="us", weights={"us-east": 80, "us-west": 20}, created_at=NOW, expires_at=NOW + 60)
    over = Overrides(steer={"us": steer})
    assert dict(decide(snap(overrides=over)).weights["us"]) == {"us-east": 80, "us-west": 20}
    later = decide(snap(overrides=over, now=NOW + 60))
    assert dict(later.weights["us"]) == {"us-east": 50, "us-west": 50}
    assert later.overrides == Overrides()
    assert ("us", "override expired at 10060") in later.reasons


def test_steer_override_naming_an_unhealthy_region_gives_its_weight_to_the_others() -> None:
    steer = SteerOverride(geography="us", weights={"us-east": 80, "us-west": 20}, created_at=NOW, expires_at=NOW + 60)
    result = decide(snap(health=with_state("us-east", U), overrides=Overrides(steer={"us": steer})))
    assert dict(result.weights["us"]) == {"us-east": 0, "us-west": 100}
    steer0 = replace(steer, weights={"us-east": 100})
    result = decide(snap(health=with_state("us-east", U), overrides=Overrides(steer={"us": steer0})))
    assert dict(result.weights["us"]) == {"us-east": 0, "us-west": 100}
    assert ("us", "steer override ignored: every region it names is unusable") in result.reasons


def step(result: Steering, snapshot: Snapshot, *, now: float, **changes: object) -> tuple[Steering, Snapshot]:
    nxt = replace(snapshot, now=now, current_weights=result.weights, failback=result.failback, **changes)
    return decide(nxt), nxt


def test_gradual_failback_10_50_100_with_holds() -> None:
    s0 = snap(current_weights={"us": {"us-east": 0, "us-west": 100}, "eu": {"eu-west": 100}})
    r = decide(s0)
    assert dict(r.weights["us"]) == {"us-east": 5, "us-west": 95}
    assert r.failback["us-east"] == FailbackProgress(region="us-east", stage=0, since=NOW)
    r, s1 = step(r, s0, now=NOW + 59)
    assert r.weights["us"]["us-east"] == 5
    r, s1 = step(r, s1, now=NOW + 60)
    assert r.weights["us"]["us-east"] == 25 and r.failback["us-east"].stage == 1
    r, s1 = step(r, s1, now=NOW + 179)
    assert r.weights["us"]["us-east"] == 25
    r, s1 = step(r, s1, now=NOW + 180)
    assert dict(r.weights["us"]) == {"us-east": 50, "us-west": 50} and not r.failback
    assert ("us-east", "failback complete: full fair share") in r.reasons
    r, _ = step(r, s1, now=NOW + 181)
    assert dict(r.weights["us"]) == {"us-east": 50, "us-west": 50} and not r.failback


@pytest.mark.parametrize(("probe", "state", "fragment"), [
    (good_probe(p99_ms=400.0), H, "p99 400 ms above SLO"),
    (good_probe(error_rate=0.2), H, "error rate"),
    (None, D, "state is degraded"),
])
def test_failback_is_held_while_gates_fail(probe, state: HealthState, fragment: str) -> None:
    progress = {"us-east": FailbackProgress(region="us-east", stage=0, since=NOW - 1000)}
    r = decide(snap(health=with_state("us-east", state, probe=probe), failback=progress))
    assert r.failback["us-east"] == FailbackProgress(region="us-east", stage=0, since=NOW)
    assert any(s == "us-east" and fragment in t for s, t in r.reasons)


@pytest.mark.parametrize("state", [U, X])
def test_failback_stops_when_region_leaves(state: HealthState) -> None:
    progress = {"us-east": FailbackProgress(region="us-east", stage=1, since=NOW)}
    r = decide(snap(health=with_state("us-east", state), failback=progress))
    assert not r.failback and r.weights["us"]["us-east"] == 0


def test_when_every_usable_region_fails_back_the_furthest_completes() -> None:
    progress = {"us-east": FailbackProgress(region="us-east", stage=1, since=NOW),
                "us-west": FailbackProgress(region="us-west", stage=0, since=NOW)}
    r = decide(snap(failback=progress))
    assert set(r.failback) == {"us-west"}
    assert dict(r.weights["us"]) == {"us-east": 95, "us-west": 5}


def test_expired_drain_fails_back_gradually() -> None:
    drains = Overrides(drains={"us-east": DrainOverride(region="us-east", created_at=0, expires_at=NOW)})
    r = decide(snap(overrides=drains, current_weights={"us": {"us-east": 0, "us-west": 100}, "eu": {"eu-west": 100}}))
    assert r.weights["us"]["us-east"] == 5 and r.overrides == Overrides()


def all_failing() -> dict:
    return {r: health(r, H, failures=1) for r in DEFAULT.regions}


def test_fail_static_keeps_last_weights_when_every_probe_fails() -> None:
    current = {"us": {"us-east": 70, "us-west": 30}, "eu": {"eu-west": 100}}
    r = decide(snap(health=all_failing(), current_weights=current))
    assert r.fail_static and {g: dict(w) for g, w in r.weights.items()} == current
    assert r.alerts and "fail-static" in r.alerts[0]


def test_fail_static_without_last_weights_uses_capacity_and_skips_drained() -> None:
    hs = {**all_failing(), "us-east": replace(health("us-east", X), failures=1)}
    r = decide(snap(health=hs, current_weights={}))
    assert r.fail_static and {g: dict(w) for g, w in r.weights.items()} == {
        "us": {"us-east": 0, "us-west": 100}, "eu": {"eu-west": 100}}


@pytest.mark.parametrize(("threshold", "failing", "expected"), [
    (1.0, ["us-east", "us-west"], False), (1.0, ["us-east", "us-west", "eu-west"], True),
    (0.5, ["us-east", "us-west"], True), (0.5, ["us-east"], False),
])
def test_fail_static_threshold_is_a_setting(threshold: float, failing: list, expected: bool) -> None:
    hs = {**healthy_all(), **{r: health(r, U) for r in failing}}
    r = decide(snap(health=hs, settings=ControllerSettings(fail_static_threshold=threshold)))
    assert r.fail_static is expected


def test_fail_static_when_no_region_is_usable_even_if_probes_answer() -> None:
    hs = {r: replace(health(r, U), failures=0, answered=1) for r in DEFAULT.regions}
    r = decide(snap(health=hs))
    assert r.fail_static and "no region is usable" in r.alerts[0]


def test_capacity_bounds_a_region_and_gives_the_rest_to_its_peer() -> None:
    r = decide(snap(health=with_state("us-west", D), demand_qps={"us": 600.0, "eu": 100.0}))
    assert dict(r.weights["us"]) == {"us-east": 60, "us-west": 40}
    assert not r.max_tier


def test_demand_beyond_capacity_asks_for_cheaper_tiers() -> None:
    r = decide(snap(demand_qps={"us": 1000.0, "eu": 100.0}))
    assert dict(r.weights["us"]) == {"us-east": 50, "us-west": 50}
    hint = r.max_tier["us-east"]
    assert (hint.max_tier, hint.fraction, hint.load_qps, hint.capacity_qps) == ("cached", 0.35, 500.0, 360.0)
    assert set(r.max_tier) == {"us-east", "us-west"}


def test_cross_geo_demand_counts_against_the_serving_geography() -> None:
    hs = with_state("eu-west", U)
    assert not decide(snap(health=hs, demand_qps={"us": 500.0, "eu": 200.0})).max_tier
    assert set(decide(snap(health=hs, demand_qps={"us": 500.0, "eu": 400.0})).max_tier) == {"us-east", "us-west"}


def test_stranded_geography_goes_where_most_capacity_is_spare() -> None:
    topo = topology({"a": [("a1", 100.0)], "b": [("b1", 100.0)], "c": [("c1", 1000.0)]})
    hs = {"a1": health("a1", U), "b1": health("b1", H), "c1": health("c1", H)}
    r = decide(Snapshot(topology=topo, health=hs, now=NOW))
    assert r.cross_geo["a"].via == "c"
    r = decide(Snapshot(topology=topo, health=hs, now=NOW, demand_qps={"c": 890.0, "b": 0.0}))
    assert r.cross_geo["a"].via == "b"


@pytest.mark.parametrize(("load", "cap", "tier", "fraction"), [
    (100.0, 100.0, None, None), (200.0, 100.0, "cached", 0.625), (1000.0, 100.0, "segment", 0.948),
    (10000.0, 100.0, "popularity", 1.0), (101.0, 100.0, "cached", 0.013),
])
def test_tier_hint_table(load: float, cap: float, tier: str | None, fraction: float | None) -> None:
    hint = tier_hint(region="r", load_qps=load, capacity_qps=cap, settings=SETTINGS)
    assert (hint.max_tier, hint.fraction) == (tier, fraction) if hint else tier is None


@pytest.mark.parametrize(("shares", "expected"), [
    ({"a": 1, "b": 1, "c": 1}, {"a": 34, "b": 33, "c": 33}),
    ({"a": 0, "b": 1}, {"a": 0, "b": 100}),
    ({"a": 2, "b": 1}, {"a": 67, "b": 33}),
    ({"b": 0.005, "a": 0.995}, {"a": 100, "b": 0}),
    ({"a": 1, "b": 1, "c": 1, "d": 1, "e": 1, "f": 1}, {"a": 17, "b": 17, "c": 17, "d": 17, "e": 16, "f": 16}),
])
def test_to_percent(shares: dict, expected: dict) -> None:
    assert to_percent(shares) == expected


def test_to_percent_needs_a_positive_share() -> None:
    with pytest.raises(ValueError):
        to_percent({"a": 0.0})


@pytest.mark.parametrize(("base", "upper", "shares", "short"), [
    ({"a": 1, "b": 1}, {"a": 1, "b": 1}, {"a": 0.5, "b": 0.5}, 0.0),
    ({"a": 3, "b": 1}, {"a": 0.5, "b": 1}, {"a": 0.5, "b": 0.5}, 0.0),
    ({"a": 1, "b": 1}, {"a": 0.2, "b": 0.3}, {"a": 0.2, "b": 0.3}, 0.5),
])
def test_water_fill(base: dict, upper: dict, shares: dict, short: float) -> None:
    got, left = water_fill(base, upper)
    assert got == pytest.approx(shares) and left == pytest.approx(short)


def test_static_weights_follow_capacity() -> None:
    topo = topology({"g": [("a", 100.0), ("b", 300.0)]})
    assert static_weights(Snapshot(topology=topo, health={}, now=NOW), "g") == {"a": 25, "b": 75}


# ---------------------------------------------------------------- properties over random snapshots

@st.composite
def snapshots(draw: st.DrawFn) -> Snapshot:
    topo = draw(topologies())
    names = sorted(topo.regions)
    hs = {}
    for r in names:
        state = draw(st.sampled_from([H, H, D, U, X]))
        failing = draw(st.sampled_from([0, 0, 0, 0, 1, 2] if state is not U else [0, 3, 3]))
        hs[r] = health(r, state, failures=failing)
    demand = {g: draw(st.floats(min_value=0, max_value=3000)) for g in topo.geographies if draw(st.booleans())}
    capacity = {r: draw(st.sampled_from([0.0, 80.0, 400.0])) for r in names if draw(st.booleans())}
    drains = {r: DrainOverride(region=r, created_at=0, expires_at=NOW + draw(st.sampled_from([-1.0, 60.0])))
              for r in names if draw(st.integers(0, 5)) == 0}
    steer = {}
    for g in topo.geographies:
        if draw(st.integers(0, 4)) == 0:
            members = [r.name for r in topo.regions_in(g)]
            raw = {r: draw(st.integers(0, 100)) for r in members}
            if sum(raw.values()):
                steer[g] = SteerOverride(geography=g, weights=to_percent(raw), created_at=0, expires_at=NOW + 60)
    failback = {r: FailbackProgress(region=r, stage=draw(st.integers(0, 1)), since=NOW - draw(st.sampled_from([0, 500])))
                for r in names if draw(st.integers(0, 3)) == 0}
    current = {g: static_weights(Snapshot(topology=topo, health={}, now=NOW), g)
               for g in topo.geographies if draw(st.booleans())}
    threshold = draw(st.sampled_from([1.0, 0.5]))
    return Snapshot(topology=topo, health=hs, now=NOW, capacity_qps=capacity, demand_qps=demand,
                    current_weights=current, overrides=Overrides(steer=steer, drains=drains), failback=failback,
                    settings=ControllerSettings(fail_static_threshold=threshold))


@hsettings(max_examples=150, deadline=None)
@given(snapshots())
def test_weights_sum_to_100_and_name_only_their_geography(snapshot: Snapshot) -> None:
    result = decide(snapshot)
    for geo, weights in result.weights.items():
        assert sum(weights.values()) == 100
        assert set(weights) == {r.name for r in snapshot.topology.regions_in(geo)}
        assert all(w >= 0 for w in weights.values())
    assert check_steering(snapshot, result) == ()


@hsettings(max_examples=150, deadline=None)
@given(snapshots())
def test_drained_or_unhealthy_gets_zero_unless_fail_static(snapshot: Snapshot) -> None:
    result = decide(snapshot)
    if result.fail_static:
        assert result.alerts
        return
    for geo, weights in result.weights.items():
        for region, weight in weights.items():
            if snapshot.drained(region) or snapshot.health_of(region).state is U:
                assert weight == 0
    serving = {g for g in snapshot.topology.geographies if snapshot.usable_in(g)}
    assert set(result.weights) == serving
    assert set(result.cross_geo) == set(snapshot.topology.geographies) - serving


@hsettings(max_examples=150, deadline=None)
@given(snapshots())
def test_no_personal_request_crosses_a_geography(snapshot: Snapshot) -> None:
    result = decide(snapshot)
    for geo, weights in result.weights.items():
        assert {snapshot.topology.regions[r].geography for r, w in weights.items() if w > 0} == {geo}
    for geo, route in result.cross_geo.items():
        assert route.anonymous and route.via != geo
        assert all(snapshot.topology.regions[r].geography == route.via for r in route.weights)


@hsettings(max_examples=100, deadline=None)
@given(snapshots())
def test_decide_is_deterministic(snapshot: Snapshot) -> None:
    def rev(mapping):
        return dict(reversed(list(mapping.items())))
    shuffled = replace(snapshot, health=rev(snapshot.health), demand_qps=rev(snapshot.demand_qps),
                       capacity_qps=rev(snapshot.capacity_qps), failback=rev(snapshot.failback),
                       current_weights=rev(snapshot.current_weights))
    first = decide(snapshot)
    assert decide(snapshot) == first
    assert decide(shuffled) == first


@hsettings(max_examples=150, deadline=None)
@given(snapshots())
def test_capacity_respected_when_total_capacity_suffices(snapshot: Snapshot) -> None:
    snapshot = replace(snapshot, overrides=Overrides(drains=snapshot.overrides.drains), failback={},
                       current_weights={}, demand_qps={g: snapshot.demand_qps.get(g, 100.0)
                                                       for g in snapshot.topology.geographies})
    result = decide(snapshot)
    if result.fail_static:
        return
    util = snapshot.settings.max_utilization
    for geo, weights in result.weights.items():
        load = snapshot.demand_qps[geo] + sum(snapshot.demand_qps[g] for g, r in result.cross_geo.items() if r.via == geo)
        room = sum(snapshot.capacity_of(r) * util for r in snapshot.usable_in(geo))
        if load > room:
            continue
        for region, weight in weights.items():
            # integer percentages may round a share up by less than one point
            assert load * weight / 100 <= snapshot.capacity_of(region) * util + load / 100 + 1e-6


@hsettings(max_examples=150, deadline=None)
@given(caps=st.lists(st.sampled_from([50.0, 100.0, 400.0, 1000.0]), min_size=2, max_size=3),
       states=st.lists(st.sampled_from([H, D]), min_size=3, max_size=3), load_share=st.floats(0.0, 1.0))
def test_capacity_respected_near_full_load_with_degraded_regions(caps: list, states: list, load_share: float) -> None:
    topo = topology({"g": [(f"r{i}", c) for i, c in enumerate(caps)]})
    hs = {f"r{i}": health(f"r{i}", states[i]) for i in range(len(caps))}
    demand = load_share * sum(caps) * SETTINGS.max_utilization
    result = decide(Snapshot(topology=topo, health=hs, now=NOW, demand_qps={"g": demand}))
    for region, weight in result.weights["g"].items():
        assert demand * weight / 100 <= topo.regions[region].capacity_qps * SETTINGS.max_utilization + demand / 100 + 1e-6


@hsettings(max_examples=60, deadline=None)
@given(snapshots())
def test_routing_table_is_accepted_by_the_edge(snapshot: Snapshot) -> None:
    from contracts.routing_table import parse_table

    result = decide(snapshot)
    table = parse_table(result.routing_table(version=3, updated_at=NOW), snapshot.topology)
    assert table.fail_static is result.fail_static and table.version == 3
    for geo, weights in result.weights.items():
        assert (dict(table.route(geo).regions), table.route(geo).anonymous) == (dict(weights), False)
    for geo, route in result.cross_geo.items():
        assert (dict(table.route(geo).regions), table.route(geo).anonymous) == (dict(route.weights), True)
    assert {r: (t.tier, t.fraction) for r, t in table.max_tier.items()} == {
        r: (h.max_tier, h.fraction) for r, h in result.max_tier.items()}


def test_failback_progress_round_trips() -> None:
    p = FailbackProgress(region="us-east", stage=1, since=12.5)
    assert FailbackProgress.from_dict(p.to_dict()) == p
