"""Latency outlier detection (failover.outlier) and what steering does with an ejected region."""
from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings as hsettings
from hypothesis import strategies as st

from failover.health import HealthState, Probe, with_outlier
from failover.outlier import OutlierState, nearest_rank, observe, probe_latency_ms
from failover.settings import ControllerSettings, settings_from_env
from failover.steering import Snapshot, decide
from regions.errors import InputError
from tests.failover.pure_builders import DEFAULT, NOW, SETTINGS, good_probe, health, healthy_all

W = SETTINGS.outlier_window_probes
N, M = SETTINGS.outlier_bad_windows, SETTINGS.outlier_good_windows


def feed(state: OutlierState, latencies: list[float], settings: ControllerSettings = SETTINGS) -> list[OutlierState]:
    """Every state after each latency, starting from `state`."""
    out = []
    for i, ms in enumerate(latencies):
        state = observe(state, ms, settings=settings, now=NOW + i)
        out.append(state)
    return out


def windows(*p99s: float) -> list[float]:
    """Probe latencies making one window per value, whose slowest probe is that value."""
    return [ms for p in p99s for ms in [20.0] * (W - 1) + [p]]


def test_nearest_rank_is_an_observed_value() -> None:
    assert nearest_rank((10.0, 30.0, 20.0), 0.99) == 30.0
    assert nearest_rank(tuple(float(i) for i in range(1, 201)), 0.99) == 198.0
    assert nearest_rank((5.0,), 0.5) == 5.0


def test_ejected_after_n_bad_windows_in_a_row_not_before() -> None:
    states = feed(OutlierState(), windows(*[400.0] * N))
    assert not any(s.ejected for s in states[:-1])
    assert states[-1].ejected and states[-1].since == NOW + N * W - 1
    assert states[-1].bad_windows == N and states[-1].last_p99_ms == 400.0
    assert "ejected" in states[-1].reason and "400 ms > 180 ms" in states[-1].reason


def test_a_good_window_between_bad_ones_resets_the_count() -> None:
    states = feed(OutlierState(), windows(*([400.0] * (N - 1) + [50.0]) * 4))
    assert not any(s.ejected for s in states)


def test_returns_after_m_good_windows_in_a_row_only() -> None:
    ejected = feed(OutlierState(), windows(*[400.0] * N))[-1]
    states = feed(ejected, windows(*[50.0] * (M - 1), 400.0, *[50.0] * (M - 1)))
    assert all(s.ejected for s in states), "a bad window restarts the count of good ones"
    back = feed(states[-1], windows(50.0))[-1]
    assert not back.ejected and "returned" in back.reason and back.good_windows == M


def test_a_window_at_the_threshold_is_good() -> None:
    states = feed(OutlierState(), windows(*[SETTINGS.outlier_p99_ms] * (N + 2)))
    assert not states[-1].ejected and states[-1].bad_windows == 0


def test_one_slow_probe_in_a_window_makes_it_bad_since_p99_of_five_is_the_slowest() -> None:
    state = feed(OutlierState(), [20.0, 20.0, 900.0, 20.0, 20.0])[-1]
    assert state.bad_windows == 1 and state.last_p99_ms == 900.0


def test_failed_probes_count_at_least_the_timeout() -> None:
    assert probe_latency_ms(ok=False, latency_ms=2.0, timeout_s=0.5) == 500.0
    assert probe_latency_ms(ok=True, latency_ms=42.0, timeout_s=0.5) == 42.0
    h = health("us-east", HealthState.HEALTHY)
    for i in range(W):
        h = with_outlier(h, Probe.failed(at=NOW + i, error="timeout"), settings=SETTINGS, now=NOW + i)
    assert h.outlier.last_p99_ms == 500.0 and h.outlier.bad_windows == 1


@hsettings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from([30.0, 400.0]), min_size=1, max_size=40))
def test_no_flapping_state_changes_are_at_least_the_hysteresis_apart(bad_or_good: list[float]) -> None:
    """Whatever the windows, ejections follow N bad windows in a row and returns M good ones."""
    states = feed(OutlierState(), windows(*bad_or_good))
    ends = states[W - 1::W]
    changes = [i for i in range(len(ends)) if ends[i].ejected != (ends[i - 1].ejected if i else False)]
    for a, b in zip(changes, changes[1:]):
        assert b - a >= (M if ends[a].ejected else N)
    for i in changes:
        assert ends[i].bad_windows >= N if ends[i].ejected else ends[i].good_windows >= M


def test_switched_off_nothing_is_ejected_and_an_ejection_is_lifted() -> None:
    off = replace(SETTINGS, outlier_enabled=False)
    assert not any(s.ejected for s in feed(OutlierState(), windows(*[900.0] * 5), off))
    ejected = feed(OutlierState(), windows(*[400.0] * N))[-1]
    lifted = observe(ejected, 900.0, settings=off, now=NOW)
    assert not lifted.ejected and "switched off" in lifted.reason


def test_settings_are_validated_and_read_from_the_environment() -> None:
    got = settings_from_env({"REGIONCTL_CONTROLLER_OUTLIER_ENABLED": "false", "REGIONCTL_CONTROLLER_OUTLIER_P99_MS": "250"})
    assert got.outlier_enabled is False and got.outlier_p99_ms == 250.0
    for field, value in (("outlier_p99_ms", 0.0), ("outlier_window_probes", 0), ("outlier_bad_windows", True),
                         ("outlier_good_windows", 1.5)):
        with pytest.raises(InputError) as err:
            ControllerSettings(**{field: value})
        assert err.value.field == field


def _ejected(region: str) -> object:
    h = health(region, HealthState.HEALTHY)
    return replace(h, outlier=feed(OutlierState(), windows(*[400.0] * N))[-1])


def test_steering_moves_an_ejected_regions_weight_to_its_peer_and_says_why() -> None:
    hs = {**healthy_all(), "us-east": _ejected("us-east")}
    snap = Snapshot(topology=DEFAULT, health=hs, now=NOW, current_weights={"us": {"us-east": 50, "us-west": 50}})
    steering = decide(snap)
    assert snap.ejected("us-east") and not snap.usable("us-east")
    assert dict(steering.weights["us"]) == {"us-east": 0, "us-west": 100}
    why = dict(steering.reasons)["us-east"]
    assert "latency outlier" in why and "400 ms > 180 ms" in why


def test_the_last_serving_region_of_a_geography_is_never_ejected() -> None:
    hs = {**healthy_all(), "eu-west": _ejected("eu-west"), "us-east": _ejected("us-east"),
          "us-west": _ejected("us-west")}
    snap = Snapshot(topology=DEFAULT, health=hs, now=NOW)
    steering = decide(snap)
    assert not snap.ejected("eu-west") and steering.weights["eu"]["eu-west"] == 100
    assert not snap.ejected("us-east") and not snap.ejected("us-west"), "both slow: neither is an outlier of the other"
    hs["us-west"] = health("us-west", HealthState.UNHEALTHY)
    assert not Snapshot(topology=DEFAULT, health=hs, now=NOW).ejected("us-east"), "its peer is down: keep it"


def test_a_returning_outlier_fails_back_gradually() -> None:
    back = replace(health("us-east", HealthState.HEALTHY), last_probe=good_probe())
    snap = Snapshot(topology=DEFAULT, health={**healthy_all(), "us-east": back}, now=NOW,
                    current_weights={"us": {"us-east": 0, "us-west": 100}})
    steering = decide(snap)
    assert "us-east" in steering.failback and 0 < steering.weights["us"]["us-east"] < 50
