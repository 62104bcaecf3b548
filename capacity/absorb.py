"""Can the survivors absorb a region's traffic right now? The pre-check for steering and drills.

Pure: `survivors_can_absorb(topology, calibration, failed_region=, current_qps_by_region=) -> Verdict`.

Capacities are in full-ranking QPS a region serves within its latency SLO (topology.toml's
`capacity_qps`, or `plan_capacity_qps(plan)` for a planned fleet). Current traffic is assumed
to be served with the steady mix (full ranking unless told otherwise), the conservative view.
The lost region's traffic goes where the edge would send it: to the other regions of its
geography (a share on the policy's degraded tier), else anonymously to other geographies at the
cross-geography tier. It is spread in proportion to each taker's spare capacity, so the move
fits exactly when the takers' spare capacity, added up, covers it.
"""
from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping

from capacity.model import Calibration, TierMix, blend, mix_cpu_ms, require_number, within
from capacity.planner import NO_SURVIVOR, PERSONAL_FAILOVER, UTILISATION_CAP, Breach
from capacity.settings import FailoverPolicy
from regions.errors import InputError
from regions.topology import Topology

@dataclass(frozen=True)
class Verdict:
    """The answer of a pre-check: ok when nothing is broken; reasons say what would be."""

    breaches: tuple[Breach, ...]
    utilisation: Mapping[str, float]
    """Each taker's load after the move over its capacity (1.0 = at the latency cap)."""

    @property
    def ok(self) -> bool:
        return not self.breaches

    @property
    def reasons(self) -> tuple[str, ...]:
        return tuple(b.message for b in self.breaches)


def _check_regions(topology: Topology, field: str, values: Mapping[str, float]) -> dict[str, float]:
    out = {}
    for name, value in values.items():
        if name not in topology.regions:
            raise InputError(field, f"unknown region {name!r}; known regions: {', '.join(sorted(topology.regions))}")
        out[name] = require_number(f"{field}.{name}", value)
    return out


def survivors_can_absorb(
    topology: Topology,
    calibration: Calibration,
    *,
    failed_region: str,
    current_qps_by_region: Mapping[str, float],
    policy: FailoverPolicy | None = None,
    steady_mix: TierMix | None = None,
    capacity_qps_by_region: Mapping[str, float] | None = None,
) -> Verdict:
    """Would the regions that take `failed_region`'s current traffic stay within their capacity?"""
    if failed_region not in topology.regions:
        known = ", ".join(sorted(topology.regions))
        raise InputError("failed_region", f"unknown region {failed_region!r}; known regions: {known}")
    policy = policy or FailoverPolicy()
    steady_mix = steady_mix or TierMix()
    current = _check_regions(topology, "current_qps_by_region", current_qps_by_region)
    capacity = {n: r.capacity_qps for n, r in topology.regions.items()}
    capacity.update(_check_regions(topology, "capacity_qps_by_region", capacity_qps_by_region or {}))

    geo = topology.region(failed_region).geography
    moved_qps = current.get(failed_region, 0.0)
    inside = [r.name for r in topology.regions_in(geo) if r.name != failed_region]
    breaches: list[Breach] = []
    if inside:
        takers = inside
        mix = blend(steady_mix, TierMix.only(policy.degraded_tier), other_share=policy.degraded_share)
    else:
        takers = sorted(r.name for r in topology.regions.values() if r.geography != geo)
        mix = TierMix.only(policy.cross_geo_tier)
        if not takers:
            breaches.append(Breach(NO_SURVIVOR, f"{failed_region} is the only region: only the edge's own "
                                                "popularity list would answer"))
            return Verdict(breaches=tuple(breaches), utilisation=MappingProxyType({}))
        breaches.append(Breach(
            PERSONAL_FAILOVER,
            f"{geo}: only one region ({failed_region}), personal traffic cannot fail over inside the geography; "
            f"its users would be served anonymously by {', '.join(takers)} at the {policy.cross_geo_tier} tier",
        ))

    full_cpu = calibration.cpu_ms("full")
    load = {t: current.get(t, 0.0) * mix_cpu_ms(calibration, steady_mix) / full_cpu for t in takers}
    moved = moved_qps * mix_cpu_ms(calibration, mix) / full_cpu
    spare = {t: max(0.0, capacity[t] - load[t]) for t in takers}
    total_spare = sum(spare.values())
    utilisation: dict[str, float] = {}
    for t in takers:
        share = spare[t] / total_spare if total_spare > 0 else 1.0 / len(takers)
        after = load[t] + moved * share
        utilisation[t] = after / capacity[t] if capacity[t] > 0 else (0.0 if after == 0 else float("inf"))
        if not within(utilisation[t], 1.0):
            breaches.append(Breach(
                UTILISATION_CAP,
                f"{t} would carry {after:.0f} full-ranking-equivalent QPS against a capacity of {capacity[t]:.0f} "
                f"({utilisation[t]:.0%}) after taking {failed_region}'s {moved_qps:.0f} QPS; "
                f"the takers' spare capacity adds up to {total_spare:.0f}, the move needs {moved:.0f}",
            ))
    return Verdict(breaches=tuple(breaches), utilisation=MappingProxyType(utilisation))
