"""Admission control's decisions (fallback_tiers.admission): the queue-time bounds, the concurrency
limit, the gradient's update, and the settings. Pure: no clock, no threads."""
from __future__ import annotations

import math

import pytest

from fallback_tiers.admission import (
    Admission, AdmissionReason, AdmissionSettings, AdmissionState, decide, observe,
)
from fallback_tiers.tiers import Tier
from regions.errors import InputError

S = AdmissionSettings()
F, C, SEG, P = Tier.FULL, Tier.CACHED, Tier.SEGMENT, Tier.POPULARITY
Q, L = AdmissionReason.QUEUE_TIME, AdmissionReason.CONCURRENCY_LIMIT


@pytest.mark.parametrize(
    ("asked", "queued_s", "in_flight", "limit", "expected"),
    [
        (F, 0.0, 0, 8.0, Admission(F)),
        (F, 0.019, 7, 8.0, Admission(F)),                 # under both bounds
        (F, 0.020, 0, 8.0, Admission(C, Q)),              # queued 20 ms: no full ranking
        (F, 0.059, 0, 8.0, Admission(C, Q)),
        (F, 0.060, 0, 8.0, Admission(SEG, Q)),            # queued 60 ms: in-memory tiers only
        (F, 5.0, 0, 8.0, Admission(SEG, Q)),
        (F, 0.0, 8, 8.0, Admission(C, L)),                # the limit is reached
        (F, 0.0, 7, 7.9, Admission(C, L)),                # a fractional limit admits floor(limit)
        (F, 0.0, 6, 7.9, Admission(F)),
        (F, 0.030, 50, 8.0, Admission(C, Q)),             # queue time is named first
        (F, 0.070, 50, 8.0, Admission(SEG, Q)),
        (C, 0.030, 0, 8.0, Admission(C)),                 # asked no better than the cap: untouched
        (C, 0.0, 100, 8.0, Admission(C)),                 # the limit is on full rankings only
        (C, 0.060, 0, 8.0, Admission(SEG, Q)),
        (SEG, 1.0, 100, 1.0, Admission(SEG)),
        (P, 1.0, 100, 1.0, Admission(P)),                 # never better than asked
    ],
)
def test_decide_table(asked: Tier, queued_s: float, in_flight: int, limit: float, expected: Admission) -> None:
    got = decide(asked=asked, queued_s=queued_s, full_in_flight=in_flight, limit=limit, settings=S)
    assert got == expected
    assert got.degraded is (expected.reason is not None)
    assert got.full is (got.max_tier is F)


@pytest.mark.parametrize(("queued_s", "in_flight"), [(0.0, 0), (0.5, 0), (0.0, 1000), (10.0, 1000)])
def test_disabled_keeps_what_was_asked(queued_s: float, in_flight: int) -> None:
    off = AdmissionSettings(enabled=False)
    for asked in Tier.ladder():
        assert decide(asked=asked, queued_s=queued_s, full_in_flight=in_flight, limit=1.0, settings=off) == Admission(asked)


def _windows(state: AdmissionState, rtt_s: float, *, windows: int, in_flight: int, settings: AdmissionSettings = S,
             queued_s: float = 0.0) -> AdmissionState:
    for _ in range(windows * settings.window):
        state = observe(state, rtt_s=rtt_s, queued_s=queued_s, in_flight=in_flight, settings=settings)
    return state


def test_a_window_is_needed_before_the_limit_moves() -> None:
    state = AdmissionState.initial(S)
    for n in range(S.window - 1):
        state = observe(state, rtt_s=0.010, queued_s=0.0, in_flight=8, settings=S)
        assert state.limit == S.initial_limit and state.long_rtt_s is None and state.window_count == n + 1
    state = observe(state, rtt_s=0.010, queued_s=0.0, in_flight=8, settings=S)
    assert state.windows == 1 and state.window_count == 0
    assert state.short_rtt_s == pytest.approx(0.010) and state.long_rtt_s == pytest.approx(0.010)


def test_steady_round_trip_grows_the_limit_by_its_headroom() -> None:
    start = AdmissionState.initial(S)
    one = _windows(start, 0.010, windows=1, in_flight=8)
    # gradient 1 (short == long): limit * (1 - smoothing) + (limit + sqrt(limit)) * smoothing
    limit = S.initial_limit
    assert one.limit == pytest.approx(limit + S.smoothing * math.sqrt(limit))
    many = _windows(one, 0.010, windows=200, in_flight=64)
    assert many.limit == S.max_limit                      # clamped


def test_rising_round_trip_shrinks_the_limit_at_most_by_half_per_estimate() -> None:
    state = _windows(AdmissionState.initial(S), 0.010, windows=5, in_flight=8)
    before = state.limit
    slow = _windows(state, 0.100, windows=1, in_flight=int(before))   # 10x the long-term round trip
    # gradient clamped to 0.5, no headroom when congested: limit * (1 - smoothing) + 0.5 limit * smoothing
    assert slow.limit == pytest.approx(before * (1 - S.smoothing) + 0.5 * before * S.smoothing)
    assert slow.limit < before
    worse = _windows(slow, 0.200, windows=60, in_flight=64)
    assert worse.limit == S.min_limit                 # a sustained overload takes it down to the minimum


def test_within_tolerance_is_not_congestion() -> None:
    state = _windows(AdmissionState.initial(S), 0.010, windows=3, in_flight=8)
    mild = _windows(state, 0.014, windows=1, in_flight=8)   # +40 %, within the 1.5 tolerance
    assert mild.limit > state.limit


def test_a_round_trip_above_the_target_shrinks_the_limit_even_with_a_slow_reference() -> None:
    state = _windows(AdmissionState.initial(S), 0.100, windows=1, in_flight=8)   # slow from the start
    assert state.long_rtt_s == pytest.approx(0.100)
    later = _windows(state, 0.100, windows=5, in_flight=8)   # as slow as the reference, above the 60 ms target
    assert later.limit < state.limit
    fast = AdmissionSettings(rtt_target_s=1.0)
    assert _windows(AdmissionState.initial(fast), 0.100, windows=6, in_flight=8, settings=fast).limit > S.initial_limit


def test_an_unused_limit_does_not_grow() -> None:
    state = _windows(AdmissionState.initial(S), 0.010, windows=1, in_flight=8)
    idle = _windows(state, 0.010, windows=20, in_flight=1)  # 1 in flight, far below half the limit
    assert idle.limit == pytest.approx(state.limit)


def test_the_long_round_trip_follows_a_lighter_load_down_at_once_and_up_slowly() -> None:
    state = _windows(AdmissionState.initial(S), 0.100, windows=3, in_flight=8)
    light = _windows(state, 0.010, windows=1, in_flight=8)
    assert light.long_rtt_s == pytest.approx(0.010)
    assert _windows(light, 0.010, windows=5, in_flight=8).limit > state.limit
    heavy = _windows(light, 0.100, windows=100, in_flight=64)   # 1000 slow full rankings later
    assert heavy.long_rtt_s is not None and heavy.long_rtt_s < 0.040


def test_the_limit_never_leaves_its_range() -> None:
    s = AdmissionSettings(min_limit=2.0, max_limit=4.0, initial_limit=3.0)
    state = AdmissionState.initial(s)
    for rtt in (0.01, 1.0, 0.01, 5.0, 0.001) * 20:
        state = _windows(state, rtt, windows=1, in_flight=4, settings=s)
        assert 2.0 <= state.limit <= 4.0


@pytest.mark.parametrize("field", ["rtt_s", "queued_s"])
@pytest.mark.parametrize("bad", [-0.001, math.inf, math.nan])
def test_a_bad_round_trip_or_queue_time_is_refused(field: str, bad: float) -> None:
    given = {"rtt_s": 0.01, "queued_s": 0.0, field: bad}
    with pytest.raises(InputError) as err:
        observe(AdmissionState.initial(S), in_flight=1, settings=S, **given)
    assert err.value.field == field


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"queue_full_s": -1.0}, "queue_full_s"),
        ({"queue_full_s": 0.1, "queue_cached_s": 0.05}, "queue_cached_s"),
        ({"min_limit": 0.5}, "min_limit"),
        ({"max_limit": 2.0, "initial_limit": 2.0, "min_limit": 3.0}, "max_limit"),
        ({"initial_limit": 100.0}, "initial_limit"),
        ({"window": 0}, "window"),
        ({"long_window": 2.5}, "long_window"),
        ({"tolerance": 0.9}, "tolerance"),
        ({"rtt_target_s": 0.0}, "rtt_target_s"),
        ({"smoothing": 0.0}, "smoothing"),
        ({"quiet_queue_s": -0.001}, "quiet_queue_s"),
        ({"enabled": "yes"}, "enabled"),
    ],
)
def test_bad_settings_name_the_field(changes: dict[str, object], field: str) -> None:
    with pytest.raises(InputError) as err:
        AdmissionSettings(**changes)  # type: ignore[arg-type]
    assert err.value.field == field


def test_settings_from_the_environment() -> None:
    got = AdmissionSettings.from_env({"REGIONCTL_ADMISSION": "off", "REGIONCTL_ADMISSION_QUEUE_FULL_MS": "10",
                                      "REGIONCTL_ADMISSION_QUEUE_CACHED_MS": "40", "REGIONCTL_TIER_DEADLINE_MS": "150"})
    assert got.enabled is False and got.queue_full_s == pytest.approx(0.010) and got.queue_cached_s == pytest.approx(0.040)
    assert AdmissionSettings.from_env({}) == AdmissionSettings()
    with pytest.raises(InputError) as err:
        AdmissionSettings.from_env({"REGIONCTL_ADMISSION": "maybe"})
    assert err.value.field == "REGIONCTL_ADMISSION"
    with pytest.raises(InputError) as err:
        AdmissionSettings.from_env({"REGIONCTL_ADMISSION_QUEUE_CACHED_MS": "5"})   # below the full bound
    assert "REGIONCTL_ADMISSION_QUEUE_CACHED_MS" in err.value.field


def test_after_a_spike_a_quiet_cell_re_anchors_its_reference_and_the_limit_climbs_back() -> None:
    """Measured on a restored region at 40 req/s: best window 3.1 ms, ordinary windows 5.5 ms after
    a CPU spike; against the 3.1 ms best the limit sat at 1.57 for two minutes. Windows with one
    full ranking in flight and nothing queued are the no-load round trip: the limit climbs back."""
    quiet = _windows(AdmissionState.initial(S), 0.0031, windows=2, in_flight=4)          # the best window
    spike = _windows(quiet, 0.0055, windows=20, in_flight=int(quiet.limit))              # contention: shrinks
    assert spike.limit < 2.0 and spike.long_rtt_s == pytest.approx(0.0031, rel=0.1)
    # back to normal traffic: mostly one full ranking at a time, nothing queued
    back = _windows(spike, 0.0055, windows=1, in_flight=1)
    assert back.long_rtt_s == pytest.approx(0.0055)                                      # re-anchored upward
    for _ in range(4):                                                                   # 20 rankings: a second or two
        back = _windows(back, 0.0055, windows=1, in_flight=max(1, int(back.limit)))
    assert back.limit >= S.initial_limit                                                 # back where it started


def test_an_overloaded_cell_does_not_re_anchor_its_reference() -> None:
    """The same windows, but the full rankings queued 10 ms each (a saturated cell): the reference
    stays at the best window and the limit stays down, so the overload is not let back in."""
    spike = _windows(_windows(AdmissionState.initial(S), 0.0031, windows=2, in_flight=4), 0.0155, windows=6,
                     in_flight=4, queued_s=0.010)
    busy = _windows(spike, 0.0155, windows=20, in_flight=1, queued_s=0.010)
    assert busy.long_rtt_s is not None and busy.long_rtt_s < 0.005          # only the slow rise
    assert busy.limit == S.min_limit
    # and with two in flight, even unqueued, a slow window is still compared with the best one
    two = _windows(spike, 0.0155, windows=20, in_flight=2)
    assert two.long_rtt_s is not None and two.long_rtt_s < 0.005 and two.limit == S.min_limit
