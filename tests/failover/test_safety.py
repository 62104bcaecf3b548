"""Safety rules: drains, undrains, steer overrides, TTLs, and assertions over steering results."""
from __future__ import annotations

from dataclasses import replace
from types import MappingProxyType

import pytest
from hypothesis import given, settings as hsettings, strategies as st

from failover.health import HealthState
from failover.overrides import DrainOverride, Overrides, SteerOverride
from failover.safety import (
    check_steering, clear_steer, request_drain, request_steer, request_undrain, validate_weights,
)
from failover.steering import CrossGeoRoute, Snapshot, Steering, decide
from regions.errors import InputError
from tests.failover.pure_builders import DEFAULT, NOW, health, healthy_all, topology

H, D, U, X = HealthState.HEALTHY, HealthState.DEGRADED, HealthState.UNHEALTHY, HealthState.DRAINED
THREE = topology({"us": [("a", 100.0), ("b", 100.0), ("c", 100.0)], "eu": [("e", 100.0)]})


def snap(topo=DEFAULT, states: dict | None = None, overrides: Overrides | None = None) -> Snapshot:
    hs = {**healthy_all(topo), **{r: health(r, s) for r, s in (states or {}).items()}}
    return Snapshot(topology=topo, health=hs, now=NOW, overrides=overrides or Overrides())


def test_drain_adds_an_override_with_default_ttl_and_changes_nothing_else() -> None:
    s = snap()
    result = request_drain(s, region="us-east", reason="drill")
    assert result.drains["us-east"] == DrainOverride(region="us-east", created_at=NOW, expires_at=NOW + 86400,
                                                     reason="drill", forced=False)
    assert s.overrides == Overrides()
    assert dict(decide(replace(s, overrides=result)).weights["us"]) == {"us-east": 0, "us-west": 100}


@pytest.mark.parametrize(("topo", "states", "region", "force", "field", "fragment"), [
    (DEFAULT, {}, "nowhere", False, "region", "known regions: eu-west, us-east, us-west"),
    (DEFAULT, {}, "eu-west", True, "region", "without a serving region"),
    (DEFAULT, {"us-west": U}, "us-east", True, "region", "us-west unhealthy"),
    (DEFAULT, {"us-west": X}, "us-east", True, "region", "us-west drained"),
    (DEFAULT, {"us-west": U, "us-east": U}, "us-east", False, "force", "us-west is unhealthy"),
    (THREE, {"b": U}, "a", False, "force", "b is unhealthy in geography us; pass force=True"),
    (THREE, {"b": X}, "a", False, "force", "b is drained"),
    (THREE, {"b": U, "c": X}, "a", True, "region", "without a serving region"),
])
def test_drain_refusals(topo, states: dict, region: str, force: bool, field: str, fragment: str) -> None:
    s = snap(topo, states)
    with pytest.raises(InputError) as info:
        request_drain(s, region=region, force=force)
    assert info.value.field == field and fragment in str(info.value)


@pytest.mark.parametrize(("topo", "states", "region"), [
    (THREE, {"b": U}, "a"), (THREE, {"b": X}, "a"), (DEFAULT, {"us-west": U, "us-east": U}, "us-east"),
])
def test_force_allows_drain_next_to_a_down_region(topo, states: dict, region: str) -> None:
    result = request_drain(snap(topo, states), region=region, force=True)
    assert result.drains[region].forced


def test_degraded_peer_does_not_need_force() -> None:
    assert "us-east" in request_drain(snap(states={"us-west": D}), region="us-east").drains


@pytest.mark.parametrize(("ttl", "ok"), [(None, True), (60, True), (7 * 86400, True), (0, False), (-5, False),
                                          (float("nan"), False), (float("inf"), False), (8 * 86400, False),
                                          (True, False), ("60", False)])
def test_ttl_rules(ttl, ok: bool) -> None:
    if ok:
        assert request_drain(snap(), region="us-east", ttl_s=ttl).drains["us-east"].expires_at > NOW
    else:
        with pytest.raises(InputError) as info:
            request_drain(snap(), region="us-east", ttl_s=ttl)
        assert info.value.field == "ttl_s"


def test_draining_again_renews_and_undrain_removes() -> None:
    first = request_drain(snap(), region="us-east", ttl_s=60)
    renewed = request_drain(snap(overrides=first), region="us-east", ttl_s=600)
    assert renewed.drains["us-east"].expires_at == NOW + 600
    assert request_undrain(snap(overrides=renewed), region="us-east") == Overrides()


@pytest.mark.parametrize(("region", "fragment"), [("us-east", "not drained; drained regions: none"),
                                                  ("moon", "unknown region")])
def test_undrain_refusals(region: str, fragment: str) -> None:
    with pytest.raises(InputError) as info:
        request_undrain(snap(), region=region)
    assert info.value.field == "region" and fragment in str(info.value)


def test_undrain_accepts_a_region_drained_in_health_only() -> None:
    assert request_undrain(snap(states={"us-east": X}), region="us-east") == Overrides()


def test_steer_override_fills_missing_regions_with_zero() -> None:
    result = request_steer(snap(), geography="us", weights={"us-west": 100}, ttl_s=30, reason="test")
    steer = result.steer["us"]
    assert dict(steer.weights) == {"us-east": 0, "us-west": 100} and steer.expires_at == NOW + 30


@pytest.mark.parametrize(("geography", "weights", "states", "field", "fragment"), [
    ("mars", {"us-east": 100}, {}, "geography", "known geographies: eu, us"),
    ("us", {}, {}, "weights", "us-east, us-west"),
    ("us", {"us-east": 60, "us-west": 30}, {}, "weights", "sum to 90"),
    ("us", {"us-east": 60, "moon": 40}, {}, "weights.moon", "unknown region"),
    ("us", {"us-east": 60, "eu-west": 40}, {}, "weights.eu-west", "in geography eu, not us"),
    ("us", {"us-east": 150, "us-west": -50}, {}, "weights.us-east", "0..100"),
    ("us", {"us-east": 50.0, "us-west": 50}, {}, "weights.us-east", "integer"),
    ("us", {"us-east": 50, "us-west": 50}, {"us-west": X}, "weights.us-west", "drained"),
    ("us", {"us-east": 50, "us-west": 50}, {"us-west": U}, "weights.us-west", "unhealthy"),
])
def test_steer_refusals(geography: str, weights: dict, states: dict, field: str, fragment: str) -> None:
    s = snap(states=states)
    with pytest.raises(InputError) as info:
        request_steer(s, geography=geography, weights=weights)
    assert info.value.field == field and fragment in str(info.value)
    assert s.overrides == Overrides()


def test_steer_zero_to_an_unhealthy_region_is_fine() -> None:
    result = request_steer(snap(states={"us-west": U}), geography="us", weights={"us-east": 100, "us-west": 0})
    assert dict(result.steer["us"].weights) == {"us-east": 100, "us-west": 0}


def test_clear_steer() -> None:
    over = request_steer(snap(), geography="us", weights={"us-east": 100})
    assert clear_steer(snap(overrides=over), geography="us") == Overrides()
    with pytest.raises(InputError) as info:
        clear_steer(snap(), geography="us")
    assert "no active steer override" in str(info.value)
    expired = Overrides(steer={"us": SteerOverride(geography="us", weights={"us-east": 100}, created_at=0, expires_at=NOW)})
    with pytest.raises(InputError):
        clear_steer(snap(overrides=expired), geography="us")


@given(weights=st.dictionaries(st.sampled_from(["us-east", "us-west", "eu-west", "x"]), st.integers(-10, 110),
                               max_size=4))
@hsettings(max_examples=200)
def test_validated_weights_always_sum_to_100_within_the_geography(weights: dict) -> None:
    try:
        full = validate_weights(snap(), geography="us", weights=weights)
    except InputError as exc:
        assert exc.field in ("weights",) or exc.field.startswith("weights.")
        return
    assert sum(full.values()) == 100 and set(full) == {"us-east", "us-west"}


def steering(weights: dict, cross: dict | None = None, fail_static: bool = False) -> Steering:
    return Steering(weights=MappingProxyType(weights), cross_geo=MappingProxyType(cross or {}), max_tier={},
                    failback={}, overrides=Overrides(), reasons=(), fail_static=fail_static)


@pytest.mark.parametrize(("states", "result", "fragment"), [
    ({}, steering({"us": {"us-east": 50, "us-west": 40}, "eu": {"eu-west": 100}}), "sum to 90"),
    ({}, steering({"us": {"us-east": 50, "eu-west": 50}, "eu": {"eu-west": 100}}), "personal data would cross"),
    ({"us-east": U}, steering({"us": {"us-east": 50, "us-west": 50}, "eu": {"eu-west": 100}}), "us-east gets 50 %"),
    ({"eu-west": U}, steering({"us": {"us-east": 50, "us-west": 50}},
                              {"eu": CrossGeoRoute(geography="eu", via="us", weights={"us-east": 100}, anonymous=False)}),
     "not anonymous"),
    ({"eu-west": U}, steering({"us": {"us-east": 50, "us-west": 50}},
                              {"eu": CrossGeoRoute(geography="eu", via="eu", weights={"eu-west": 100})}),
     "does not leave eu"),
    ({}, steering({"us": {"us-east": 50, "us-west": 50}}), "eu has usable regions but no weights"),
    ({}, steering({"mars": {"us-east": 100}}), "unknown geography mars"),
])
def test_check_steering_flags_broken_results(states: dict, result: Steering, fragment: str) -> None:
    problems = check_steering(snap(states=states), result)
    assert any(fragment in p for p in problems), problems


def test_check_steering_accepts_fail_static_weights_to_unhealthy_regions() -> None:
    result = steering({"us": {"us-east": 50, "us-west": 50}, "eu": {"eu-west": 100}}, fail_static=True)
    assert check_steering(snap(states={"us-east": U}), result) == ()


def test_overrides_round_trip_through_dicts() -> None:
    over = request_steer(snap(), geography="us", weights={"us-east": 30, "us-west": 70}, reason="why")
    over = request_drain(replace(snap(), overrides=over), region="us-west", reason="maint")
    assert Overrides.from_dict(over.to_dict()) == over


@pytest.mark.parametrize("raw", [{"steer": {"us": {"weights": {}}}}, {"drains": {"a": None}}, {"steer": []}])
def test_malformed_overrides_document_is_an_input_error(raw: dict) -> None:
    with pytest.raises(InputError) as info:
        Overrides.from_dict(raw)
    assert info.value.field == "overrides"
