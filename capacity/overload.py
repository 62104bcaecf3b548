"""What the capacity model predicts for a survivor that takes a lost peer's traffic. Pure.

    predict_overload(topology, calibration, settings, failed="us-east", survivor="us-west", cores=0.5)

The survivor's load and tier mix are the planner's (capacity.planner, `regionctl capacity plan`):
its own steady traffic on the steady mix plus its share of the lost region's traffic, of which
`degraded_share` is served at `degraded_tier` during the degraded window. Against the survivor's
real size (`cores`), the prediction says:

- `full_capacity_qps`: full-ranking QPS the survivor carries within `max_utilisation`
  (what `regionctl bench saturation` measures, times the cap);
- `plan_utilisation`: the planner's mix on those cores (> 1: the plan's mix does not fit);
- `fitting_mix`: the most full ranking that fits: a share f at full ranking and the rest at the
  cheapest tier, with qps * (f * cpu_full + (1 - f) * cpu_cheapest) = cores * cap * 1000. This is
  the mix admission control should converge to; a game day reports its measured mix beside both.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from capacity.model import Calibration, TierMix, blend, mix_cpu_ms, require_number
from capacity.planner import plan_capacity, steady_qps_by_region
from capacity.settings import CapacitySettings
from regions.errors import InputError
from regions.topology import Topology


@dataclass(frozen=True)
class OverloadPrediction:
    failed: str
    survivor: str
    cores: float
    survivor_qps: float
    """The survivor's QPS after the loss (its own + its share of the lost region's)."""
    steady_qps: float
    """The survivor's QPS before the loss."""
    full_capacity_qps: float
    plan_mix: TierMix
    plan_utilisation: float
    fitting_mix: TierMix
    calibration_source: str

    @property
    def overload_factor(self) -> float:
        """Survivor QPS over its full-ranking capacity (> 1: beyond it)."""
        return self.survivor_qps / self.full_capacity_qps if self.full_capacity_qps > 0 else float("inf")

    def to_dict(self) -> dict[str, Any]:
        return {"failed": self.failed, "survivor": self.survivor, "cores": self.cores,
                "survivor_qps": self.survivor_qps, "steady_qps": self.steady_qps,
                "full_capacity_qps": self.full_capacity_qps, "overload_factor": self.overload_factor,
                "plan_mix": dict(self.plan_mix.shares), "plan_utilisation": self.plan_utilisation,
                "fitting_mix": dict(self.fitting_mix.shares), "calibration_source": self.calibration_source}


def fitting_mix(calibration: Calibration, *, qps: float, cores: float, utilisation: float) -> TierMix:
    """The most full ranking `cores` carry at `utilisation` for `qps`, the rest at the cheapest tier."""
    require_number("qps", qps)
    require_number("cores", cores, inclusive=False)
    full, cheap = calibration.cpu_ms("full"), calibration.cheapest_tier
    if qps == 0:
        return TierMix.only("full")
    budget_ms = cores * utilisation * 1000.0 / qps  # CPU ms each request may cost on average
    share = min(1.0, max(0.0, (budget_ms - calibration.cpu_ms(cheap)) / (full - calibration.cpu_ms(cheap))))
    if cheap == "full" or share >= 1.0:
        return TierMix.only("full")
    return TierMix({"full": share, cheap: 1.0 - share})


def predict_overload(topology: Topology, calibration: Calibration, settings: CapacitySettings, *, failed: str,
                     survivor: str, cores: float) -> OverloadPrediction:
    """See the module docstring; `settings.peak_qps` is the load the prediction is for."""
    require_number("cores", cores, inclusive=False)
    plan = plan_capacity(topology, calibration, settings)
    scenario = plan.scenario(failed)
    if survivor not in scenario.loads:
        raise InputError("survivor", f"{survivor!r} does not take {failed}'s traffic; takers: "
                                     f"{', '.join(sorted(scenario.loads)) or 'none'}")
    load = scenario.loads[survivor]
    steady = steady_qps_by_region(topology, settings.peak_qps)[survivor]
    moved = load.qps - steady
    degraded = blend(settings.steady_mix, TierMix.only(settings.failover.degraded_tier),
                     other_share=settings.failover.degraded_share)
    mix = blend(settings.steady_mix, degraded, other_share=moved / load.qps) if load.qps > 0 else settings.steady_mix
    cap = settings.failover.max_utilisation
    return OverloadPrediction(
        failed=failed, survivor=survivor, cores=cores, survivor_qps=load.qps, steady_qps=steady,
        full_capacity_qps=cores * cap * 1000.0 / calibration.cpu_ms("full"), plan_mix=mix,
        plan_utilisation=load.qps * mix_cpu_ms(calibration, mix) / (cores * 1000.0),
        fitting_mix=fitting_mix(calibration, qps=load.qps, cores=cores, utilisation=cap),
        calibration_source=calibration.source)


def for_local_stack(settings: CapacitySettings, *, load_qps: float) -> CapacitySettings:
    """The planner's settings for a local stack under `load_qps`: that load is the peak, one vCPU
    per instance (a local cell is one process on one core at most)."""
    return replace(settings, peak_qps=load_qps, instance=replace(settings.instance, vcpus=1))


__all__ = ["OverloadPrediction", "fitting_mix", "for_local_stack", "predict_overload"]
