"""serving.benchmarking: the pure statistics of the benchmarks (no timing, no processes)."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from capacity.calibration import load_calibration, parse_calibration, write_calibration
from capacity.model import TierMix, predicted_saturation_qps
from contracts.tiers import TIER_NAMES
from regions.errors import InputError
from serving.benchmarking import (
    LoadStep, MeasuredCost, calibration_from, core_ticks_of_stat, cpu_ms_per_request, error_pct,
    others_share, percentile, ramp, ratio, saturation_of, summarize,
)

samples = st.lists(st.floats(min_value=0.0, max_value=1e4, allow_nan=False), min_size=1, max_size=200)


# -- percentiles -----------------------------------------------------------------------------------
@pytest.mark.parametrize(("values", "q", "expected"), [
    ([5.0], 50, 5.0),
    ([5.0], 99, 5.0),
    ([1.0, 2.0, 3.0, 4.0], 0, 1.0),
    ([1.0, 2.0, 3.0, 4.0], 100, 4.0),
    ([1.0, 2.0, 3.0, 4.0], 50, 2.5),
    ([4.0, 1.0, 3.0, 2.0], 50, 2.5),  # order does not matter
    (list(range(1, 101)), 99, 99.01),
    ([0.0, 10.0], 25, 2.5),
])
def test_percentile_table(values: list[float], q: float, expected: float) -> None:
    assert percentile(values, q) == pytest.approx(expected)


@given(samples, st.floats(min_value=0, max_value=100))
def test_percentile_matches_numpy_linear(values: list[float], q: float) -> None:
    assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)), rel=1e-9, abs=1e-9)


@given(samples)
def test_percentiles_are_ordered_and_bounded(values: list[float]) -> None:
    p50, p99 = percentile(values, 50), percentile(values, 99)
    assert min(values) <= p50 <= p99 <= max(values)


@pytest.mark.parametrize(("values", "q", "field"), [([], 50, "values"), ([1.0], -1, "q"), ([1.0], 101, "q"), ([1.0], True, "q")])
def test_percentile_refuses_bad_input(values: list[float], q: float, field: str) -> None:
    with pytest.raises(InputError) as err:
        percentile(values, q)
    assert err.value.field == field


def test_summarize_gives_percentiles_and_rate() -> None:
    stats = summarize([1.0, 2.0, 3.0, 4.0], wall_s=2.0)
    assert (stats.count, stats.p50_ms, stats.mean_ms, stats.max_ms, stats.rps) == (4, 2.5, 2.5, 4.0, 2.0)
    assert stats.p99_ms == pytest.approx(3.97)
    with pytest.raises(InputError):
        summarize([1.0], wall_s=0.0)


# -- ratio and CPU ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("num", "den", "expected"), [(4.0, 2.0, 2.0), (3.0, 2.0, 1.5), (0.0, 5.0, 0.0)])
def test_ratio(num: float, den: float, expected: float) -> None:
    assert ratio(num, den) == expected


@pytest.mark.parametrize("den", [0.0, -1.0, math.nan])
def test_ratio_refuses_a_floor_that_is_not_positive(den: float) -> None:
    with pytest.raises(InputError) as err:
        ratio(1.0, den)
    assert err.value.field == "denominator"


PROC_STAT = "cpu  300 0 100 1000 50 0 0 0 0 0\ncpu0 100 0 50 600 25 0 0 0 0 0\ncpu1 200 5 50 400 25 3 2 10 7 0\n"


@pytest.mark.parametrize(("cpu", "busy", "total"), [(0, 150, 775), (1, 270, 695)])
def test_core_ticks_of_stat(cpu: int, busy: int, total: int) -> None:
    assert core_ticks_of_stat(PROC_STAT, cpu) == (busy, total)


def test_core_ticks_names_a_missing_cpu() -> None:
    with pytest.raises(InputError) as err:
        core_ticks_of_stat(PROC_STAT, 7)
    assert err.value.field == "cpu"


@pytest.mark.parametrize(("busy", "total", "own", "expected"), [(100, 100, 60, 0.4), (50, 100, 60, 0.0), (100, 100, 0, 1.0)])
def test_others_share(busy: int, total: int, own: int, expected: float) -> None:
    assert others_share(core_busy_ticks=busy, core_total_ticks=total, own_ticks=own) == pytest.approx(expected)


@pytest.mark.parametrize(("ticks", "hz", "requests", "expected"), [(100, 100, 100, 10.0), (25, 100, 1000, 0.25), (0, 100, 5, 0.0)])
def test_cpu_ms_per_request(ticks: int, hz: int, requests: int, expected: float) -> None:
    assert cpu_ms_per_request(ticks=ticks, clock_ticks_per_s=hz, requests=requests) == pytest.approx(expected)


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"ticks": -1, "clock_ticks_per_s": 100, "requests": 1}, "ticks"),
    ({"ticks": 1, "clock_ticks_per_s": 0, "requests": 1}, "clock_ticks_per_s"),
    ({"ticks": 1, "clock_ticks_per_s": 100, "requests": 0}, "requests"),
])
def test_cpu_ms_per_request_refuses(kwargs: dict[str, int], field: str) -> None:
    with pytest.raises(InputError) as err:
        cpu_ms_per_request(**kwargs)
    assert err.value.field == field


# -- calibration -----------------------------------------------------------------------------------
COSTS = {"full": MeasuredCost(cpu_ms=9.5, p99_ms=30.0), "cached": MeasuredCost(cpu_ms=2.0, p99_ms=8.0),
         "segment": MeasuredCost(cpu_ms=2.5, p99_ms=9.0), "popularity": MeasuredCost(cpu_ms=2.4, p99_ms=8.5)}


def test_calibration_is_written_in_the_documented_format(tmp_path) -> None:  # type: ignore[no-untyped-def]
    cal = calibration_from(COSTS, machine="AMD EPYC, 2 vCPU", measured_at=1_764_000_000.0)
    path = write_calibration(cal, tmp_path / "calibration.json")
    raw = json.loads(path.read_text())
    assert set(raw) >= {"machine", "measured_at", "tiers", "saturation_qps", "source"}
    assert raw["source"] == "measured on AMD EPYC, 2 vCPU"
    assert raw["tiers"] == {t: {"cpu_ms": c.cpu_ms, "p99_ms": c.p99_ms} for t, c in COSTS.items()}
    assert raw["saturation_qps"] == pytest.approx(1000.0 / 9.5)
    assert parse_calibration(raw) == load_calibration(path)


def test_calibration_saturation_defaults_to_what_the_costs_predict() -> None:
    cal = calibration_from(COSTS, machine="m", measured_at=0.0, cores=2.0)
    assert cal.saturation_qps == pytest.approx(predicted_saturation_qps(cal, 2.0, TierMix.only("full")))
    assert calibration_from(COSTS, machine="m", measured_at=0.0, saturation_qps=77.0).saturation_qps == 77.0


@pytest.mark.parametrize("tier", TIER_NAMES)
def test_calibration_needs_every_tier(tier: str) -> None:
    with pytest.raises(InputError) as err:
        calibration_from({t: c for t, c in COSTS.items() if t != tier}, machine="m", measured_at=0.0)
    assert err.value.field == f"tiers.{tier}"


def test_calibration_refuses_a_zero_cost() -> None:
    with pytest.raises(InputError):
        calibration_from({**COSTS, "cached": MeasuredCost(cpu_ms=0.0, p99_ms=1.0)}, machine="m", measured_at=0.0)


# -- saturation ------------------------------------------------------------------------------------
def step(offered: float, asked: float, p99: float, errors: int = 0, answered: float | None = None) -> LoadStep:
    return LoadStep(offered_qps=offered, achieved_qps=asked if answered is None else answered, as_asked_qps=asked,
                    p99_ms=p99, errors=errors, requests=int(offered * 10), cpu_utilisation=0.5, tiers={"full": 1})


def test_saturation_finds_the_plateau_and_the_last_step_within_the_slo() -> None:
    steps = [step(40, 40, 20), step(60, 60, 45), step(80, 71, 900), step(100, 69, 2500, errors=30)]
    sat = saturation_of(steps, slo_ms=150)
    assert (sat.plateau_qps, sat.plateau_step, sat.slo_qps, sat.first_breach, sat.saturated) == (71, 2, 60, 2, True)


def test_saturation_counts_only_answers_served_as_asked() -> None:
    # the ladder degraded: many answers, few at the asked tier
    sat = saturation_of([step(50, 50, 30), step(100, 20, 400, answered=100)], slo_ms=150)
    assert (sat.plateau_qps, sat.plateau_step) == (50, 0)


def test_a_ramp_that_never_breached_is_not_saturated() -> None:
    sat = saturation_of([step(10, 10, 5), step(20, 20, 6)], slo_ms=150)
    assert (sat.saturated, sat.first_breach, sat.slo_qps) == (False, None, 20)


def test_errors_breach_the_slo_even_when_fast() -> None:
    assert saturation_of([step(10, 10, 5, errors=1)], slo_ms=150).first_breach == 0


@given(st.lists(st.tuples(st.floats(1, 1e3), st.floats(0, 1e3), st.floats(0, 1e4), st.integers(0, 5)), min_size=1, max_size=12))
def test_saturation_properties(raw: list[tuple[float, float, float, int]]) -> None:
    steps = [step(o, a, p, e) for o, a, p, e in raw]
    sat = saturation_of(steps, slo_ms=150)
    assert sat.plateau_qps == max(s.as_asked_qps for s in steps)
    assert sat.slo_qps <= sat.plateau_qps
    assert (sat.first_breach is None) == all(s.errors == 0 and s.p99_ms <= 150 for s in steps)


def test_load_step_derived_figures() -> None:
    s = LoadStep(offered_qps=100, achieved_qps=80, as_asked_qps=80, p99_ms=10, errors=0, requests=1000,
                 cpu_utilisation=0.8, tiers={"full": 800})
    assert (s.cpu_ms_per_answer, s.implied_capacity_qps) == (pytest.approx(10.0), pytest.approx(100.0))


@pytest.mark.parametrize(("measured", "predicted", "expected"), [(80, 100, -20.0), (120, 100, 20.0), (100, 100, 0.0)])
def test_error_pct(measured: float, predicted: float, expected: float) -> None:
    assert error_pct(measured, predicted) == pytest.approx(expected)


def test_ramp_is_sorted_and_scaled() -> None:
    assert ramp(100.0, (1.0, 0.5, 1.5)) == (50.0, 100.0, 150.0)
    with pytest.raises(InputError):
        ramp(0.0, (1.0,))
    with pytest.raises(InputError):
        ramp(100.0, ())


# -- memory, proxy overhead, CPU ns ------------------------------------------------------------------
def test_rss_schedstat_and_overhead_parse_what_proc_gives() -> None:
    from serving.benchmarking import cpu_ns_of_schedstat, overhead_ms, rss_of_status

    assert rss_of_status("Name:\tpython\nVmPeak:\t  900 kB\nVmRSS:\t  204800 kB\n") == pytest.approx(200.0)
    with pytest.raises(InputError, match="VmRSS"):
        rss_of_status("Name:\tpython\n")
    assert cpu_ns_of_schedstat("123456789 42 7\n") == 123456789
    with pytest.raises(InputError, match="schedstat"):
        cpu_ns_of_schedstat("garbage")
    direct = summarize([1.0, 2.0, 3.0], wall_s=1.0)
    through = summarize([1.5, 2.5, 13.0], wall_s=1.0)
    p50, p99 = overhead_ms(through, direct)
    assert p50 == pytest.approx(0.5) and p99 == pytest.approx(through.p99_ms - direct.p99_ms)
