"""The capacity model's arithmetic: tier mixes, cores, instances, predicted saturation."""
from __future__ import annotations

import math

import pytest
from hypothesis import given, strategies as st

from contracts.tiers import TIER_NAMES
from capacity.model import (
    TierMix,
    blend,
    cores_for,
    instances_for,
    mix_cpu_ms,
    predicted_saturation_qps,
    utilisation_of,
)
from regions.errors import InputError
from tests.capacity.helpers import calibration_of, calibrations, tier_mixes


@pytest.mark.parametrize(
    ("shares", "expected_ms"),
    [
        ({"full": 1.0}, 40.0),
        ({"popularity": 1.0}, 0.5),
        ({"full": 0.5, "segment": 0.5}, 20.5),
        ({"full": 0.25, "cached": 0.25, "segment": 0.25, "popularity": 0.25}, 10.75),
    ],
)
def test_mix_cpu_ms_is_the_share_weighted_cost(shares: dict[str, float], expected_ms: float) -> None:
    assert mix_cpu_ms(calibration_of(), TierMix(shares)) == pytest.approx(expected_ms)


@pytest.mark.parametrize(
    ("cores", "vcpus", "utilisation", "expected"),
    [
        (0.0, 16, 0.6, 0),
        (9.6, 16, 0.6, 1),        # exactly one instance at 60 %
        (9.7, 16, 0.6, 2),        # a little more needs a second one
        (3080.0, 16, 0.6, 321),   # us-east at 220 K peak, full ranking
        (16.0, 16, 1.0, 1),
    ],
)
def test_instances_for_table(cores: float, vcpus: int, utilisation: float, expected: int) -> None:
    assert instances_for(cores=cores, vcpus=vcpus, utilisation=utilisation) == expected


@pytest.mark.parametrize("utilisation", [0.0, -0.1, 1.01, math.nan, math.inf])
def test_utilisation_outside_zero_one_is_refused(utilisation: float) -> None:
    with pytest.raises(InputError) as err:
        instances_for(cores=1.0, vcpus=16, utilisation=utilisation)
    assert err.value.field == "utilisation"


@pytest.mark.parametrize(
    ("shares", "field"),
    [
        ({"full": 0.5}, "tier_mix"),                     # does not sum to 1
        ({"full": 1.5, "cached": -0.5}, "tier_mix.full"),
        ({"turbo": 1.0}, "tier_mix"),                    # unknown tier
    ],
)
def test_bad_tier_mix_names_the_field(shares: dict[str, float], field: str) -> None:
    with pytest.raises(InputError) as err:
        TierMix(shares)
    assert err.value.field == field


def test_negative_qps_is_refused() -> None:
    with pytest.raises(InputError) as err:
        cores_for(-1.0, 40.0)
    assert err.value.field == "qps"


def test_blend_moves_the_given_share_to_the_other_mix() -> None:
    mixed = blend(TierMix(), TierMix.only("segment"), other_share=0.3)
    assert dict(mixed.shares) == pytest.approx({"full": 0.7, "segment": 0.3})
    assert mixed.tiers_used() == ("full", "segment")


def test_predicted_saturation_of_the_assumed_machine_matches_the_shipped_figure() -> None:
    # 16 vCPUs at 40 ms per full-ranking request saturate at 400 QPS: the default calibration's figure.
    assert predicted_saturation_qps(calibration_of(), 16, TierMix()) == pytest.approx(400.0)
    assert predicted_saturation_qps(calibration_of(), 16, TierMix.only("popularity")) == pytest.approx(32_000.0)


@given(cal=calibrations(), mix=tier_mixes(), cores=st.floats(0.1, 1e4))
def test_saturation_and_cores_are_inverse(cal, mix, cores) -> None:  # type: ignore[no-untyped-def]
    qps = predicted_saturation_qps(cal, cores, mix)
    assert cores_for(qps, mix_cpu_ms(cal, mix)) == pytest.approx(cores)


@given(cal=calibrations(), mix=tier_mixes())
def test_a_mix_costs_between_its_cheapest_and_dearest_tier(cal, mix) -> None:  # type: ignore[no-untyped-def]
    costs = [cal.cpu_ms(t) for t in mix.tiers_used()]
    assert min(costs) * (1 - 1e-12) <= mix_cpu_ms(cal, mix) <= max(costs) * (1 + 1e-12)


@given(cores=st.floats(0.0, 1e6), vcpus=st.integers(1, 128), util=st.floats(0.01, 1.0))
def test_instances_for_is_the_fewest_that_stay_under_the_target(cores: float, vcpus: int, util: float) -> None:
    n = instances_for(cores=cores, vcpus=vcpus, utilisation=util)
    assert utilisation_of(cores=cores, instances=n, vcpus=vcpus) <= util * (1 + 1e-12) or cores == 0
    if n > 0:
        assert utilisation_of(cores=cores, instances=n - 1, vcpus=vcpus) > util


def test_tiers_are_ordered_best_first() -> None:
    assert TIER_NAMES == ("full", "cached", "segment", "popularity")
