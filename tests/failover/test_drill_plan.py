"""Drill planning: pre-checks, staged steps, gates, and a dry run of the plan through steering."""
from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings as hsettings, strategies as st

from failover.drill_plan import StepKind, evaluate_gates, plan_drill
from failover.health import HealthState
from failover.overrides import Overrides, SteerOverride
from failover.safety import request_drain, request_steer, request_undrain, validate_weights
from failover.settings import ControllerSettings
from failover.steering import Snapshot, decide
from regions.errors import InputError
from tests.failover.pure_builders import DEFAULT, NOW, good_probe, health, healthy_all, topology

H, D, U, X = HealthState.HEALTHY, HealthState.DEGRADED, HealthState.UNHEALTHY, HealthState.DRAINED
LAGS = {("us-east", "us-west"): 0.4, ("us-west", "us-east"): 0.9}


def snap(**changes: object) -> Snapshot:
    base = Snapshot(topology=DEFAULT, health=healthy_all(), now=NOW, demand_qps={"us": 300.0, "eu": 100.0},
                    replication_lag_s=LAGS)
    return replace(base, **changes)


def checks_of(snapshot: Snapshot, region: str = "us-east") -> dict[str, tuple[bool, str]]:
    return {c.name: (c.passed, c.message) for c in plan_drill(snapshot, region=region).checks}


def test_happy_plan_passes_every_check_and_lists_the_stages() -> None:
    plan = plan_drill(snap(), region="us-east")
    assert plan.ok and plan.geography == "us" and not plan.failed_checks
    assert [c.name for c in plan.checks] == ["region-serving", "safety", "survivors-healthy", "capacity",
                                             "replication", "bundle", "no-steer-override"]
    shape = [(s.kind, s.share_percent, dict(s.weights)) for s in plan.steps]
    assert shape == [
        (StepKind.SHIFT, 50, {"us-east": 25, "us-west": 75}),
        (StepKind.DRAIN, 0, {"us-east": 0, "us-west": 100}),
        (StepKind.HOLD, 0, {"us-east": 0, "us-west": 100}),
        (StepKind.UNDRAIN, 0, {"us-east": 0, "us-west": 100}),
        (StepKind.FAILBACK, 10, {"us-east": 5, "us-west": 95}),
        (StepKind.FAILBACK, 50, {"us-east": 25, "us-west": 75}),
        (StepKind.FAILBACK, 100, {"us-east": 50, "us-west": 50}),
    ]
    assert [s.hold_s for s in plan.steps] == [60.0, 0.0, 60.0, 0.0, 60.0, 120.0, 0.0]
    assert plan.steps[0].gates == ("us-west",) and plan.steps[-1].gates == ("us-east", "us-west")


def test_stages_and_holds_come_from_settings() -> None:
    s = ControllerSettings(drill_shift_stages=(75, 25, 0), drill_hold_s=5.0, failback_stages=(20, 100),
                           failback_hold_s=(7.0,))
    plan = plan_drill(snap(settings=s), region="us-east")
    assert [(st.kind.value, st.share_percent, st.hold_s) for st in plan.steps] == [
        ("shift", 75, 5.0), ("shift", 25, 5.0), ("drain", 0, 0.0), ("hold", 0, 5.0), ("undrain", 0, 0.0),
        ("failback", 20, 7.0), ("failback", 100, 0.0)]


BAD_PROBE = good_probe(version="v2")


@pytest.mark.parametrize(("changes", "check", "fragment"), [
    ({"demand_qps": {"eu": 100.0}}, "capacity", "demand of geography us is unknown"),
    ({"demand_qps": {"us": 400.0}}, "capacity", "can serve 360 QPS at 90% utilization but us needs 400 QPS"),
    ({"demand_qps": {"us": 300.0, "eu": 100.0}, "health": {**healthy_all(), "eu-west": health("eu-west", U)}},
     "capacity", "400 QPS (incl. 100 anonymous"),
    ({"capacity_qps": {"us-west": 100.0}}, "capacity", "can serve 90 QPS"),
    ({"replication_lag_s": {}}, "replication", "no lag measured for us-east -> us-west"),
    ({"replication_lag_s": {**LAGS, ("us-west", "us-east"): 400.0}}, "replication", "lags 400.0 s > RPO budget 300 s"),
    ({"health": {**healthy_all(), "us-west": health("us-west", H, probe=BAD_PROBE)}}, "bundle", "us-east=v1, us-west=v2"),
    ({"health": {**healthy_all(), "us-west": health("us-west", H, probe=good_probe(version=""))}}, "bundle", "unknown for us-west"),
    ({"health": {**healthy_all(), "us-west": health("us-west", D)}}, "survivors-healthy", "us-west: state is degraded"),
    ({"health": {**healthy_all(), "us-west": health("us-west", H, probe=good_probe(p99_ms=300.0))}},
     "survivors-healthy", "p99 300 ms above SLO"),
    ({"health": {**healthy_all(), "us-west": health("us-west", U)}}, "safety", "without a serving region"),
    ({"health": {**healthy_all(), "us-east": health("us-east", X)}}, "region-serving", "not serving (drained)"),
    ({"overrides": Overrides(steer={"us": SteerOverride(geography="us", weights={"us-east": 100}, created_at=0,
                                                        expires_at=NOW + 10)})}, "no-steer-override", "clear it first"),
])
def test_failing_checks(changes: dict, check: str, fragment: str) -> None:
    checks = checks_of(snap(**changes))
    passed, message = checks[check]
    assert not passed and fragment in message, message
    assert not plan_drill(snap(**changes), region="us-east").ok


def test_single_region_geography_cannot_be_drilled() -> None:
    checks = checks_of(snap(), region="eu-west")
    assert {name for name, (ok, _) in checks.items() if not ok} == {"safety", "survivors-healthy", "capacity",
                                                                    "replication"}
    assert "no copy in another region" in checks["replication"][1]


def test_unknown_region_is_an_input_error() -> None:
    with pytest.raises(InputError) as info:
        plan_drill(snap(), region="moon")
    assert info.value.field == "region"


def test_evaluate_gates_on_a_fresh_snapshot() -> None:
    step = plan_drill(snap(), region="us-east").steps[-1]
    assert all(c.passed for c in evaluate_gates(snap(), step))
    worse = snap(health={**healthy_all(), "us-west": health("us-west", H, probe=good_probe(error_rate=0.3))})
    gates = {c.name: c for c in evaluate_gates(worse, step)}
    assert gates["gate us-east"].passed and not gates["gate us-west"].passed
    assert "error rate" in gates["gate us-west"].message


def test_dry_run_of_the_plan_through_safety_and_steering() -> None:
    """The driver's loop without I/O: every step's action is accepted and steering yields its weights."""
    s = snap()
    plan = plan_drill(s, region="us-east")
    weights = decide(s).weights
    for step in plan.steps:
        if step.kind is StepKind.SHIFT:
            s = replace(s, overrides=request_steer(s, geography="us", weights=dict(step.weights), ttl_s=600))
        elif step.kind is StepKind.DRAIN:
            s = replace(s, overrides=request_drain(s, region="us-east").without_steer("us"))
        elif step.kind is StepKind.UNDRAIN:
            s = replace(s, overrides=request_undrain(s, region="us-east"))
        result = decide(s)
        s = replace(s, current_weights=result.weights, failback=result.failback, now=s.now + step.hold_s)
        if step.kind is StepKind.FAILBACK:
            assert dict(result.weights["us"]) == dict(step.weights), step
        elif step.kind is not StepKind.UNDRAIN:
            assert dict(result.weights["us"]) == dict(step.weights), step
        weights = result.weights
    assert dict(weights["us"]) == {"us-east": 50, "us-west": 50}


@hsettings(max_examples=60, deadline=None)
@given(caps=st.lists(st.sampled_from([50.0, 100.0, 400.0]), min_size=2, max_size=3),
       stage=st.integers(min_value=1, max_value=99))
def test_step_weights_are_valid_steer_overrides(caps: list, stage: int) -> None:
    topo = topology({"g": [(f"r{i}", c) for i, c in enumerate(caps)], "h": [("h0", 100.0)]})
    s = Snapshot(topology=topo, health=healthy_all(topo), now=NOW,
                 settings=ControllerSettings(drill_shift_stages=(stage, 0)))
    for step in plan_drill(s, region="r0").steps:
        assert validate_weights(s, geography="g", weights=dict(step.weights)) == dict(step.weights)
        assert step.weights["r0"] <= round(100 * caps[0] / sum(caps) * step.share_percent / 100) + 1
