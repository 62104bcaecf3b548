"""Health state machine: probe classification, hysteresis, drains, SLO gates, settings."""
from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings as hsettings, strategies as st

from failover.health import (
    HealthState, Probe, ProbeOutcome, classify, drain, gate_failures, initial_health, transition, undrain,
)
from failover.settings import ControllerSettings, settings_from_env
from regions.errors import InputError
from tests.failover.pure_builders import SETTINGS, degraded_probe, failed_probe, good_probe

H, D, U, X = HealthState.HEALTHY, HealthState.DEGRADED, HealthState.UNHEALTHY, HealthState.DRAINED
PROBES = {"G": good_probe, "D": degraded_probe, "F": failed_probe}


def run(start: HealthState, sequence: str, settings: ControllerSettings = SETTINGS):
    h = initial_health("r1", now=0.0, state=start)
    if start is U:
        h = replace(h, probed=U, state=U)
    if start is D:
        h = replace(h, probed=D, state=D)
    for i, code in enumerate(sequence):
        h = transition(h, PROBES[code](float(i + 1)), settings=settings, now=float(i + 1))
    return h


@pytest.mark.parametrize(("probe", "outcome", "fragment"), [
    (good_probe(), ProbeOutcome.GOOD, ""),
    (failed_probe(), ProbeOutcome.FAILED, "connection refused"),
    (Probe(ok=True, at=0, homepage_nonempty=False), ProbeOutcome.FAILED, "empty"),
    (Probe(ok=True, at=0, redis_ok=False), ProbeOutcome.DEGRADED, "redis"),
    (Probe(ok=True, at=0, freshness_ok=False), ProbeOutcome.DEGRADED, "stale"),
    (Probe(ok=True, at=0, error_rate=0.02), ProbeOutcome.DEGRADED, "error rate"),
    (Probe(ok=True, at=0, error_rate=0.01), ProbeOutcome.GOOD, ""),
    (Probe(ok=True, at=0, p99_ms=151.0), ProbeOutcome.DEGRADED, "p99"),
    (Probe(ok=True, at=0, p99_ms=150.0), ProbeOutcome.GOOD, ""),
    (Probe(ok=True, at=0, tier_served="cached"), ProbeOutcome.DEGRADED, "tier 'cached'"),
    (Probe(ok=True, at=0, tier_served="popularity"), ProbeOutcome.DEGRADED, "tier 'popularity'"),
    (Probe(ok=True, at=0, latency_ms=600.0), ProbeOutcome.DEGRADED, "latency"),
])
def test_classify(probe: Probe, outcome: ProbeOutcome, fragment: str) -> None:
    got, reasons = classify(probe, SETTINGS)
    assert got is outcome
    assert fragment in "; ".join(reasons)
    assert (reasons == ()) == (outcome is ProbeOutcome.GOOD)


@pytest.mark.parametrize(("start", "sequence", "expected"), [
    (H, "", H),
    (H, "F", H), (H, "FF", H), (H, "FFF", U), (H, "FFG", H), (H, "FFGFF", H), (H, "FFGFFF", U),
    (H, "D", H), (H, "DD", H), (H, "DDD", D), (H, "DFF", D), (H, "DFFF", U), (H, "DDG", H),
    (D, "G", D), (D, "GG", D), (D, "GGG", H), (D, "GGDGG", D), (D, "FFF", U), (D, "DDDDD", D),
    (U, "G", U), (U, "GG", U), (U, "GGG", H), (U, "DDD", D), (U, "GGD", D), (U, "GGDGGG", H), (U, "GGF", U),
    (X, "FFFF", X), (X, "GGG", X), (X, "DDD", X),
])
def test_transition_table(start: HealthState, sequence: str, expected: HealthState) -> None:
    assert run(start, sequence).state is expected


@pytest.mark.parametrize(("sequence", "probed"), [("FFF", U), ("DDD", D), ("GGG", H), ("FFFGGG", H)])
def test_drained_region_keeps_probing_and_undrain_returns_probed_state(sequence: str, probed: HealthState) -> None:
    h = run(X, sequence)
    assert (h.state, h.probed) == (X, probed)
    back = undrain(h, now=99.0)
    assert back.state is probed
    assert back.since == 99.0


def test_counts_reason_and_since() -> None:
    h = run(H, "FF")
    assert (h.failures, h.bad, h.answered, h.successes) == (2, 2, 0, 0)
    assert h.since == 0.0 and "2/3 failed" in h.reason
    h = transition(h, failed_probe(3.0), settings=SETTINGS, now=3.0)
    assert h.state is U and h.since == 3.0
    assert "healthy -> unhealthy" in h.reason and "connection refused" in h.reason
    h = transition(h, good_probe(4.0), settings=SETTINGS, now=4.0)
    assert (h.failures, h.answered, h.successes, h.since) == (0, 1, 1, 3.0)
    assert h.last_probe == good_probe(4.0)


@pytest.mark.parametrize(("n", "m", "sequence", "expected"), [
    (1, 1, "F", U), (1, 1, "FG", H), (5, 2, "FFFF", H), (5, 2, "FFFFF", U), (5, 2, "FFFFFGG", H),
])
def test_thresholds_come_from_settings(n: int, m: int, sequence: str, expected: HealthState) -> None:
    s = ControllerSettings(failures_down=n, successes_up=m)
    assert run(H, sequence, s).state is expected


def test_drain_is_idempotent_and_undrain_of_undrained_is_noop() -> None:
    h = initial_health("r1", now=0.0)
    d = drain(h, now=5.0, reason="maintenance")
    assert d.state is X and "maintenance" in d.reason
    assert drain(d, now=6.0) == d
    assert undrain(h, now=7.0) == h


codes = st.text(alphabet="GDF", max_size=40)


@given(start=st.sampled_from([H, D, U]), sequence=codes)
def test_never_drained_without_operator(start: HealthState, sequence: str) -> None:
    h = run(start, sequence)
    assert h.state is not X and h.state is h.probed


@given(start=st.sampled_from([H, D, U, X]), prefix=codes)
def test_n_failures_always_unhealthy_and_m_goods_always_healthy(start: HealthState, prefix: str) -> None:
    assert run(start, prefix + "FFF").probed is U
    assert run(start, prefix + "GGG").probed is H


@given(prefix=codes, code=st.sampled_from("GDF"))
def test_one_probe_never_jumps_healthy_to_unhealthy_before_n(prefix: str, code: str) -> None:
    h = run(H, prefix)
    after = transition(h, PROBES[code](100.0), settings=SETTINGS, now=100.0)
    if h.state is H and h.failures + 1 < SETTINGS.failures_down:
        assert after.state is not U


@given(start=st.sampled_from([H, D, U]), sequence=codes)
def test_counters_agree_with_the_last_probes(start: HealthState, sequence: str) -> None:
    h = run(start, sequence)
    tail = len(sequence) - len(sequence.rstrip("F"))
    assert h.failures == tail
    assert h.successes == len(sequence) - len(sequence.rstrip("G"))
    assert h.bad == len(sequence) - len(sequence.rstrip("DF"))


@pytest.mark.parametrize(("state", "probe", "problems"), [
    (H, good_probe(), ()),
    (D, good_probe(), ("state is degraded, not healthy",)),
    (H, good_probe(error_rate=0.05), ("error rate 5.00% above SLO 1.00%",)),
    (H, good_probe(p99_ms=400.0), ("p99 400 ms above SLO 150 ms",)),
    (H, None, ("no probe yet",)),
])
def test_gate_failures(state: HealthState, probe: Probe | None, problems: tuple[str, ...]) -> None:
    h = replace(initial_health("r1", now=0.0, state=state), last_probe=probe)
    assert gate_failures(h, SETTINGS) == problems


def test_gate_failures_without_health() -> None:
    assert gate_failures(None, SETTINGS) == ("no health known",)


@pytest.mark.parametrize(("changes", "field"), [
    ({"failures_down": 0}, "failures_down"),
    ({"successes_up": 0}, "successes_up"),
    ({"interval_s": 0}, "interval_s"),
    ({"slo_error_rate": 1.5}, "slo_error_rate"),
    ({"fail_static_threshold": 0.0}, "fail_static_threshold"),
    ({"max_utilization": 0.0}, "max_utilization"),
    ({"failback_stages": (10, 50)}, "failback_stages"),
    ({"failback_stages": (50, 10, 100)}, "failback_stages"),
    ({"failback_hold_s": (1.0,)}, "failback_hold_s"),
    ({"drill_shift_stages": (50, 10)}, "drill_shift_stages"),
    ({"override_ttl_s": 10 * 86400.0}, "override_ttl_s"),
    ({"tier_costs": (("full", 1.0),)}, "tier_costs"),
])
def test_settings_validation_names_the_field(changes: dict, field: str) -> None:
    with pytest.raises(InputError) as info:
        ControllerSettings(**changes)
    assert info.value.field == field


def test_settings_from_env() -> None:
    env = {"REGIONCTL_CONTROLLER_FAILURES_DOWN": "5", "REGIONCTL_CONTROLLER_FAILBACK_STAGES": "25,100",
           "REGIONCTL_CONTROLLER_FAILBACK_HOLD_S": "30", "REGIONCTL_OTHER": "ignored", "PATH": "/bin"}
    s = settings_from_env(env)
    assert (s.failures_down, s.failback_stages, s.failback_hold_s) == (5, (25, 100), (30.0,))
    assert s.successes_up == ControllerSettings().successes_up


@pytest.mark.parametrize(("env", "field"), [
    ({"REGIONCTL_CONTROLLER_NOPE": "1"}, "REGIONCTL_CONTROLLER_NOPE"),
    ({"REGIONCTL_CONTROLLER_FAILURES_DOWN": "three"}, "REGIONCTL_CONTROLLER_FAILURES_DOWN"),
    ({"REGIONCTL_CONTROLLER_TIER_COSTS": "1"}, "REGIONCTL_CONTROLLER_TIER_COSTS"),
    ({"REGIONCTL_CONTROLLER_FAILURES_DOWN": "0"}, "REGIONCTL_CONTROLLER_FAILURES_DOWN"),
])
def test_settings_from_env_errors(env: dict, field: str) -> None:
    with pytest.raises(InputError) as info:
        settings_from_env(env)
    assert info.value.field == field


@hsettings(max_examples=30)
@given(sequence=codes)
def test_transition_is_pure(sequence: str) -> None:
    assert run(H, sequence) == run(H, sequence)
