"""The steering / drill pre-check: can the survivors absorb a region's current traffic?"""
from __future__ import annotations

import pytest

from capacity.absorb import survivors_can_absorb
from capacity.planner import NO_SURVIVOR, PERSONAL_FAILOVER, UTILISATION_CAP
from capacity.settings import FailoverPolicy
from regions.errors import InputError
from regions.topology import load_topology
from tests.capacity.helpers import calibration_of, topology_of

# Shipped topology: every region's capacity_qps is 400 full-ranking QPS. Half the moved traffic on the
# segment tier costs 0.5*40 + 0.5*1 = 20.5 ms, i.e. 0.5125 of a full-ranking request.


@pytest.mark.parametrize(
    ("current", "failed", "ok", "constraints", "utilisation"),
    [
        ({"us-east": 200, "us-west": 200}, "us-east", True, [], {"us-west": (200 + 102.5) / 400}),
        ({"us-east": 300, "us-west": 300}, "us-east", False, [UTILISATION_CAP], {"us-west": (300 + 153.75) / 400}),
        ({"us-east": 0, "us-west": 400}, "us-east", True, [], {"us-west": 1.0}),   # nothing to move, exactly full
        ({"us-east": 10, "us-west": 401}, "us-east", False, [UTILISATION_CAP], {"us-west": (401 + 5.125) / 400}),
        ({"eu-west": 100, "us-east": 100, "us-west": 300}, "eu-west", False, [PERSONAL_FAILOVER],
         # eu's 100 QPS at popularity (0.5 ms = 0.0125 of full) spread by spare capacity: 300 and 100.
         {"us-east": (100 + 1.25 * 0.75) / 400, "us-west": (300 + 1.25 * 0.25) / 400}),
    ],
)
def test_absorb_table(current: dict[str, float], failed: str, ok: bool, constraints: list[str],
                      utilisation: dict[str, float]) -> None:
    verdict = survivors_can_absorb(load_topology(), calibration_of(), failed_region=failed,
                                   current_qps_by_region=current)
    assert verdict.ok is ok
    assert [b.constraint for b in verdict.breaches] == constraints
    assert dict(verdict.utilisation) == pytest.approx(utilisation)
    assert len(verdict.reasons) == len(constraints)


def test_spare_capacity_adds_up_across_takers() -> None:
    topo = topology_of({"us": 3})
    current = {"us-0": 300, "us-1": 390, "us-2": 100}
    # Moving us-0 with no degraded tier: 300 full-ranking QPS against 10 + 300 spare.
    verdict = survivors_can_absorb(topo, calibration_of(), failed_region="us-0", current_qps_by_region=current,
                                   policy=FailoverPolicy(degraded_share=0.0))
    assert verdict.ok
    assert dict(verdict.utilisation) == pytest.approx({"us-1": 1.0 - 10 / 400 * (1 - 300 / 310), "us-2": 1.0 - 300 / 400 * (1 - 300 / 310)})
    too_much = survivors_can_absorb(topo, calibration_of(), failed_region="us-0",
                                    current_qps_by_region={**current, "us-0": 320},
                                    policy=FailoverPolicy(degraded_share=0.0))
    assert not too_much.ok
    assert "spare capacity adds up to 310" in too_much.reasons[0]


def test_capacity_override_changes_the_answer() -> None:
    current = {"us-east": 300, "us-west": 300}
    verdict = survivors_can_absorb(load_topology(), calibration_of(), failed_region="us-east",
                                   current_qps_by_region=current, capacity_qps_by_region={"us-west": 500})
    assert verdict.ok


def test_only_region_has_no_survivor() -> None:
    verdict = survivors_can_absorb(topology_of({"solo": 1}), calibration_of(), failed_region="solo-0",
                                   current_qps_by_region={"solo-0": 10})
    assert [b.constraint for b in verdict.breaches] == [NO_SURVIVOR]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"failed_region": "mars", "current_qps_by_region": {}}, "failed_region"),
        ({"failed_region": "us-east", "current_qps_by_region": {"mars": 1}}, "current_qps_by_region"),
        ({"failed_region": "us-east", "current_qps_by_region": {"us-west": -5}}, "current_qps_by_region.us-west"),
        ({"failed_region": "us-east", "current_qps_by_region": {}, "capacity_qps_by_region": {"x": 1}},
         "capacity_qps_by_region"),
    ],
)
def test_bad_input_names_the_field(kwargs: dict, field: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(InputError) as err:
        survivors_can_absorb(load_topology(), calibration_of(), **kwargs)
    assert err.value.field == field
