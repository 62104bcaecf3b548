"""The N-1 planner: hand-computed tables for the shipped topology, and invariants over random ones."""
from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import assume, given, settings as hsettings, strategies as st

from capacity.absorb import survivors_can_absorb
from capacity.calibration import DEFAULT_CALIBRATION_PATH, load_calibration
from capacity.model import TierMix
from contracts.tiers import TIER_NAMES
from capacity.planner import (
    COST_BUDGET,
    LATENCY_SLO,
    NO_SURVIVOR,
    PERSONAL_FAILOVER,
    plan_capacity,
    plan_capacity_qps,
    plan_to_dict,
    region_headroom,
    steady_qps_by_region,
    tier_cost_usd,
)
from capacity.settings import CapacitySettings, FailoverPolicy
from regions.errors import InputError
from regions.topology import load_topology
from tests.capacity.helpers import calibration_of, calibrations, capacity_settings, topologies, topology_of

# Hand arithmetic for the shipped topology (us 0.7 over two regions, eu 0.3 in one), 220 K QPS,
# full 40 ms, segment 1 ms, popularity 0.5 ms, 16 vCPU, target 0.6, cap 0.85, half the moved on segment:
#   us-east steady: 77,000 QPS * 0.040 = 3,080 cores / 9.6  = 320.8 -> 321
#   us-east when us-west is lost: 3,080 + 77,000 * (0.5*0.040 + 0.5*0.001) = 4,658.5 cores / 13.6 = 342.5 -> 343
#   eu-west steady: 66,000 * 0.040 = 2,640 / 9.6 = 275 exactly
#   naive: 220,000 * 0.040 = 8,800 / 9.6 = 916.7 -> 917 per region, 2,751 for three
SHIPPED = {"us-east": (321, 343, "us-west"), "us-west": (321, 343, "us-east"), "eu-west": (275, 275, "steady")}


@pytest.fixture(scope="module")
def shipped_plan():  # type: ignore[no-untyped-def]
    return plan_capacity(load_topology(), calibration_of())


@pytest.mark.parametrize("region", sorted(SHIPPED))
def test_shipped_topology_instances(shipped_plan, region: str) -> None:  # type: ignore[no-untyped-def]
    steady, n1, sized_for = SHIPPED[region]
    r = shipped_plan.regions[region]
    assert (r.steady_instances, r.instances, r.sized_for) == (steady, n1, sized_for)


def test_shipped_topology_cost_and_saving(shipped_plan) -> None:  # type: ignore[no-untyped-def]
    assert shipped_plan.total_instances == 961
    assert shipped_plan.naive_instances == 2751
    assert shipped_plan.hourly_usd == pytest.approx(961 * 0.58)
    assert shipped_plan.cost_per_request_usd == pytest.approx(961 * 0.58 / (220_000 * 3600))
    assert shipped_plan.saving == pytest.approx(1 - 961 / 2751)


def test_single_region_geography_is_named_as_the_broken_constraint(shipped_plan) -> None:  # type: ignore[no-untyped-def]
    assert not shipped_plan.feasible
    assert [b.constraint for b in shipped_plan.breaches] == [PERSONAL_FAILOVER]
    message = shipped_plan.breaches[0].message
    assert message.startswith("eu: only one region (eu-west)")
    assert "anonymously by us regions" in message and "popularity tier" in message
    eu_loss = shipped_plan.scenario("eu-west")
    assert sorted(eu_loss.loads) == ["us-east", "us-west"]
    # eu's 66 K QPS spread over the two us regions at 0.5 ms: 33,000 * 0.0005 = 16.5 cores each.
    assert eu_loss.loads["us-east"].cores == pytest.approx(3080 + 16.5)
    assert shipped_plan.scenario("us-east").ok and shipped_plan.scenario("us-west").ok


def test_two_regions_per_geography_is_feasible() -> None:
    plan = plan_capacity(topology_of({"us": 2, "eu": 2}, {"us": 0.7, "eu": 0.3}), calibration_of())
    assert plan.feasible, plan.breaches
    assert all(s.ok for s in plan.scenarios)
    # eu-0 when eu-1 is lost: 33,000*0.04 + 33,000*0.0205 = 1,996.5 cores / 13.6 = 146.8 -> 147
    assert plan.regions["eu-0"].instances == 147


@pytest.mark.parametrize(
    ("degraded_share", "us_east", "sized_for"),
    [
        (0.0, 453, "us-west"),   # (3,080 + 3,080) / 13.6 = 452.9
        (0.5, 343, "us-west"),
        (1.0, 321, "steady"),    # (3,080 + 77) / 13.6 = 232.1, below the steady need
    ],
)
def test_degraded_share_table(degraded_share: float, us_east: int, sized_for: str) -> None:
    settings = CapacitySettings(failover=FailoverPolicy(degraded_share=degraded_share))
    r = plan_capacity(load_topology(), calibration_of(), settings).regions["us-east"]
    assert (r.instances, r.sized_for) == (us_east, sized_for)


def test_scale_out_after_the_window_serves_everyone_at_full_ranking(shipped_plan) -> None:  # type: ignore[no-untyped-def]
    # us-west alone at full ranking for 154,000 QPS: 6,160 cores / 9.6 = 641.7 -> 642, it runs 343.
    assert dict(shipped_plan.scenario("us-east").scale_out) == {"us-west": 642 - 343}


def test_one_region_topology_has_no_survivor() -> None:
    plan = plan_capacity(topology_of({"solo": 1}), calibration_of())
    assert [b.constraint for b in plan.breaches] == [NO_SURVIVOR]
    assert plan.saving == 0.0


def test_over_budget_and_slow_tier_are_named() -> None:
    settings = CapacitySettings(budget_usd_per_request=1e-9)
    plan = plan_capacity(topology_of({"us": 2}), calibration_of(p99=400.0), settings)
    assert {b.constraint for b in plan.breaches} == {COST_BUDGET, LATENCY_SLO}


def test_headroom_and_capacity(shipped_plan) -> None:  # type: ignore[no-untyped-def]
    # eu-west: 275 * 16 * 0.85 = 3,740 cores, minus 2,640 busy = 1,100 cores = 27,500 full-ranking QPS.
    assert region_headroom(shipped_plan, "eu-west") == pytest.approx(27_500.0)
    assert plan_capacity_qps(shipped_plan)["eu-west"] == pytest.approx(3740 / 0.04)
    with pytest.raises(InputError) as err:
        region_headroom(shipped_plan, "mars")
    assert err.value.field == "region"
    with pytest.raises(InputError) as err:
        shipped_plan.scenario("mars")
    assert err.value.field == "failed_region"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"peak_qps": -1.0}, "peak_qps"),
        ({"peak_qps": 0.0}, "peak_qps"),
        ({"target_utilisation": 0.0}, "target_utilisation"),
        ({"target_utilisation": 1.2}, "target_utilisation"),
        ({"target_utilisation": 0.9}, "max_utilisation"),  # above the 0.85 failover cap
    ],
)
def test_bad_settings_name_the_field(kwargs: dict[str, float], field: str) -> None:
    with pytest.raises(InputError) as err:
        CapacitySettings(**kwargs)
    assert err.value.field == field


def test_plan_json_is_complete(shipped_plan) -> None:  # type: ignore[no-untyped-def]
    doc = plan_to_dict(shipped_plan)
    assert doc["feasible"] is False
    assert doc["cost"]["total_instances"] == 961 and doc["cost"]["within_budget"] is True
    assert doc["scenarios"]["us-east"]["survivors"]["us-west"]["needed"] == 343


def test_shipped_calibration_plans_the_same_as_the_table() -> None:
    plan = plan_capacity(load_topology(), load_calibration(DEFAULT_CALIBRATION_PATH))
    assert plan.calibration.source == "assumed, not measured"
    assert plan.total_instances == 961


# ---- properties ---------------------------------------------------------------------------------

@hsettings(max_examples=150, deadline=None)
@given(topo=topologies(), cal=calibrations(), settings=capacity_settings(peak_qps=1.0),
       low=st.floats(1.0, 5e5), extra=st.floats(0.0, 5e5))
def test_more_qps_never_needs_fewer_instances(topo, cal, settings, low, extra) -> None:  # type: ignore[no-untyped-def]
    small = plan_capacity(topo, cal, replace(settings, peak_qps=low))
    big = plan_capacity(topo, cal, replace(settings, peak_qps=low + extra))
    for name in topo.regions:
        assert big.regions[name].instances >= small.regions[name].instances
        assert big.regions[name].steady_instances >= small.regions[name].steady_instances
    assert big.total_instances >= small.total_instances


@hsettings(max_examples=150, deadline=None)
@given(topo=topologies(), cal=calibrations(), settings=capacity_settings())
def test_every_n1_plan_survives_each_single_region_loss(topo, cal, settings) -> None:  # type: ignore[no-untyped-def]
    plan = plan_capacity(topo, cal, settings)
    allowed = {PERSONAL_FAILOVER, NO_SURVIVOR, LATENCY_SLO, COST_BUDGET}
    assert {b.constraint for b in plan.breaches} <= allowed  # never the utilisation cap
    steady = steady_qps_by_region(topo, settings.peak_qps)
    capacity = plan_capacity_qps(plan)
    for failed in topo.regions:
        # Cross-check with the controller's pre-check, which spreads the move by spare capacity.
        verdict = survivors_can_absorb(
            topo, cal, failed_region=failed, current_qps_by_region=steady,
            policy=settings.failover, steady_mix=settings.steady_mix, capacity_qps_by_region=capacity,
        )
        assert {b.constraint for b in verdict.breaches} <= {PERSONAL_FAILOVER, NO_SURVIVOR}, verdict.reasons
        single = len(topo.regions_in(topo.region(failed).geography)) == 1
        assert verdict.ok == (not single)


@hsettings(max_examples=150, deadline=None)
@given(topo=topologies(), cal=calibrations(), settings=capacity_settings())
def test_cost_per_request_never_below_the_cheapest_tier(topo, cal, settings) -> None:  # type: ignore[no-untyped-def]
    plan = plan_capacity(topo, cal, settings)
    floor = tier_cost_usd(cal, settings, cal.cheapest_tier)
    assert plan.cost_per_request_usd >= floor * (1 - 1e-12)


@hsettings(max_examples=100, deadline=None)
@given(topo=topologies(), cal=calibrations(), settings=capacity_settings())
def test_plan_never_costs_more_than_naive(topo, cal, settings) -> None:  # type: ignore[no-untyped-def]
    assume(all(cal.cpu_ms("full") >= cal.cpu_ms(t) for t in TIER_NAMES))  # full ranking is the dearest tier
    plan = plan_capacity(topo, cal, settings)
    assert plan.total_instances <= plan.naive_instances
    for r in plan.regions.values():
        assert r.steady_instances <= r.instances <= plan.naive_instances_per_region


def test_steady_mix_of_cheaper_tiers_needs_fewer_instances() -> None:
    full = plan_capacity(load_topology(), calibration_of())
    cheap = plan_capacity(load_topology(), calibration_of(),
                          CapacitySettings(steady_mix=TierMix({"full": 0.8, "cached": 0.2})))
    assert cheap.total_instances < full.total_instances
