"""capacity.overload: the survivor's predicted load, the planner's mix and the mix that fits."""
from __future__ import annotations

import pytest

from capacity.model import Calibration, TierCost
from capacity.overload import fitting_mix, for_local_stack, predict_overload
from capacity.settings import CapacitySettings
from regions.errors import InputError
from regions.topology import load_topology

CAL = Calibration(machine="test", measured_at=0.0, saturation_qps=0.0, source="measured", tiers={
    "full": TierCost(4.0, 10.0), "cached": TierCost(1.2, 5.0), "segment": TierCost(1.0, 5.0),
    "popularity": TierCost(1.0, 5.0)})


def test_fitting_mix_solves_the_cpu_budget() -> None:
    # 200 QPS on 0.5 core at 85 %: 2.125 ms per request -> f * 4 + (1 - f) * 1 = 2.125 -> f = 0.375
    mix = fitting_mix(CAL, qps=200.0, cores=0.5, utilisation=0.85)
    assert mix.shares["full"] == pytest.approx(0.375) and mix.shares["segment"] == pytest.approx(0.625)
    assert fitting_mix(CAL, qps=50.0, cores=0.5, utilisation=0.85).shares == {"full": 1.0}
    assert fitting_mix(CAL, qps=5000.0, cores=0.5, utilisation=0.85).shares == {"segment": 1.0}
    with pytest.raises(InputError) as err:
        fitting_mix(CAL, qps=10.0, cores=0.0, utilisation=0.85)
    assert err.value.field == "cores"


def test_the_survivor_takes_its_peer_and_the_planner_mix_is_reported() -> None:
    topo = load_topology()  # us 0.7 (us-east, us-west), eu 0.3
    settings = for_local_stack(CapacitySettings(), load_qps=200.0)
    p = predict_overload(topo, CAL, settings, failed="us-east", survivor="us-west", cores=0.5)
    assert p.steady_qps == pytest.approx(70.0) and p.survivor_qps == pytest.approx(140.0)
    # own 70 at full + moved 70 half at segment: 75 % full, 25 % segment
    assert p.plan_mix.shares["full"] == pytest.approx(0.75) and p.plan_mix.shares["segment"] == pytest.approx(0.25)
    assert p.full_capacity_qps == pytest.approx(0.5 * 0.85 * 1000 / 4.0)
    assert p.overload_factor == pytest.approx(140.0 / 106.25)
    assert p.plan_utilisation == pytest.approx(140 * (0.75 * 4 + 0.25 * 1) / 500)
    assert p.fitting_mix.shares["full"] < p.plan_mix.shares["full"]
    assert set(p.to_dict()) >= {"survivor_qps", "plan_mix", "fitting_mix", "full_capacity_qps"}
    with pytest.raises(InputError) as err:
        predict_overload(topo, CAL, settings, failed="us-east", survivor="eu-west", cores=0.5)
    assert err.value.field == "survivor"
