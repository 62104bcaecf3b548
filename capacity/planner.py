"""The capacity planner: instances per region for steady state and for the loss of any one region.

Pure: `plan_capacity(topology, calibration, settings) -> Plan`. No clock, files or environment.

The model, stated once:

- Steady state. A geography's peak (peak_qps * peak_share) is split evenly over its regions and
  served with `settings.steady_mix` (full ranking by default). A region needs enough instances to
  carry that at `target_utilisation`.
- Loss of region F, geography G with other regions. F's traffic moves, evenly, to the other
  regions of G (personal data may not leave G). For `degraded_window_s` a share `degraded_share`
  of the moved requests is served by `degraded_tier`, the rest as in steady state. Survivors must
  carry that with the instances they already run, at no more than `max_utilisation` (the cap at
  which p99 still holds). After the window, replacement instances are running (`scale_out`) and
  all moved traffic is served as in steady state, at `target_utilisation` again.
- Loss of region F, the only region of G. G's users can no longer get personal results: the
  edge sends them, anonymously, to every region of the other geographies (evenly), served at
  `cross_geo_tier`. The plan sizes for that and names the broken constraint.
- The N-1 fleet runs, per region, the largest of the steady need and every single-loss need.
  Its hourly price over the peak QPS is the cost per request.
- Naive provisioning, for comparison: every region able to take the whole global peak at full
  ranking at `target_utilisation`.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Any, Mapping

from capacity.model import (
    Calibration,
    TierMix,
    blend,
    cores_for,
    instances_for,
    mix_cpu_ms,
    utilisation_of,
    within,
)
from capacity.settings import CapacitySettings
from regions.errors import InputError
from regions.topology import Topology

PERSONAL_FAILOVER = "personal-failover-in-geography"
NO_SURVIVOR = "no-survivor"
UTILISATION_CAP = "utilisation-cap"
LATENCY_SLO = "latency-slo"
COST_BUDGET = "cost-budget"


@dataclass(frozen=True)
class Breach:
    """A constraint the plan (or a failover) breaks, and a sentence saying how."""

    constraint: str
    message: str


@dataclass(frozen=True)
class RegionLoad:
    """The work one region carries in one situation."""

    qps: float
    cores: float
    tiers: tuple[str, ...]
    """Tiers that serve part of this load (for the latency check)."""


@dataclass(frozen=True)
class Scenario:
    """The loss of one region, seen by the N-1 fleet."""

    failed_region: str
    loads: Mapping[str, RegionLoad]
    """Survivors that carry more than in steady state; other survivors keep their steady load."""
    needed: Mapping[str, int]
    """Instances each of those survivors needs during the degraded window, at max_utilisation."""
    utilisation: Mapping[str, float]
    """Utilisation of those survivors with the plan's fleet, during the degraded window."""
    scale_out: Mapping[str, int]
    """Instances to add within the degraded window so moved traffic is served as in steady state."""
    breaches: tuple[Breach, ...]

    @property
    def ok(self) -> bool:
        return not self.breaches


@dataclass(frozen=True)
class RegionPlan:
    region: str
    geography: str
    steady_qps: float
    steady_cores: float
    steady_instances: int
    """What steady state alone would need."""
    instances: int
    """What the N-1 plan runs: enough for steady state and for the loss of any other region."""
    sized_for: str
    """'steady' or the name of the region whose loss needs the most here."""
    steady_utilisation: float
    """Utilisation of `instances` at steady peak."""


@dataclass(frozen=True)
class Plan:
    settings: CapacitySettings
    calibration: Calibration
    regions: Mapping[str, RegionPlan]
    scenarios: tuple[Scenario, ...]
    naive_instances_per_region: int
    breaches: tuple[Breach, ...]
    """Every constraint the plan breaks, the scenarios' included; empty when feasible."""

    @property
    def feasible(self) -> bool:
        return not self.breaches

    @property
    def total_instances(self) -> int:
        return sum(r.instances for r in self.regions.values())

    @property
    def steady_only_instances(self) -> int:
        return sum(r.steady_instances for r in self.regions.values())

    @property
    def hourly_usd(self) -> float:
        return self.total_instances * self.settings.instance.hourly_usd

    @property
    def cost_per_request_usd(self) -> float:
        return self.hourly_usd / (self.settings.peak_qps * 3600.0)

    @property
    def naive_instances(self) -> int:
        return self.naive_instances_per_region * len(self.regions)

    @property
    def naive_hourly_usd(self) -> float:
        return self.naive_instances * self.settings.instance.hourly_usd

    @property
    def saving(self) -> float:
        """Share of the naive hourly cost the N-1 plan does not spend."""
        return 1.0 - self.total_instances / self.naive_instances if self.naive_instances else 0.0

    def scenario(self, failed_region: str) -> Scenario:
        """The loss of `failed_region`; InputError when the plan has no such region."""
        for s in self.scenarios:
            if s.failed_region == failed_region:
                return s
        known = ", ".join(sorted(self.regions))
        raise InputError("failed_region", f"unknown region {failed_region!r}; known regions: {known}")


def steady_qps_by_region(topology: Topology, peak_qps: float) -> dict[str, float]:
    """Peak QPS of each region in steady state: its geography's share, split evenly."""
    out: dict[str, float] = {}
    for geo in topology.geographies.values():
        members = topology.regions_in(geo.name)
        for region in members:
            out[region.name] = peak_qps * geo.peak_share / len(members)
    return out


def tier_cost_usd(calibration: Calibration, settings: CapacitySettings, tier: str) -> float:
    """Price of one request of `tier` on a fully busy instance: the floor no plan can beat."""
    vcpu_seconds = calibration.cpu_ms(tier) / 1000.0
    return vcpu_seconds * settings.instance.hourly_usd / (settings.instance.vcpus * 3600.0)


def _moved_loads(
    topology: Topology,
    calibration: Calibration,
    *,
    settings: CapacitySettings,
    failed: str,
    moved_mix: TierMix,
) -> tuple[dict[str, RegionLoad], tuple[Breach, ...]]:
    """Loads of the survivors that take F's traffic, plus the residency breach when it must leave G."""
    steady = steady_qps_by_region(topology, settings.peak_qps)
    steady_cpu = mix_cpu_ms(calibration, settings.steady_mix)
    geo = topology.region(failed).geography
    moved_qps = steady[failed]
    inside = [r.name for r in topology.regions_in(geo) if r.name != failed]
    if inside:
        takers, mix, breaches = inside, moved_mix, ()
    else:
        takers = sorted(r.name for r in topology.regions.values() if r.geography != geo)
        mix = TierMix.only(settings.failover.cross_geo_tier)
        if takers:
            others = ", ".join(sorted({topology.region(t).geography for t in takers}))
            message = (
                f"{geo}: only one region ({failed}), personal traffic cannot fail over inside the geography; "
                f"its users would be served anonymously by {others} regions ({', '.join(takers)}) "
                f"at the {settings.failover.cross_geo_tier} tier"
            )
            breaches = (Breach(PERSONAL_FAILOVER, message),)
        else:
            message = f"{failed} is the only region: when it is lost only the edge's own popularity list answers"
            breaches = (Breach(NO_SURVIVOR, message),)
    share = moved_qps / len(takers) if takers else 0.0
    steady_tiers = settings.steady_mix.tiers_used()
    loads = {
        t: RegionLoad(
            qps=steady[t] + share,
            cores=cores_for(steady[t], steady_cpu) + cores_for(share, mix_cpu_ms(calibration, mix)),
            tiers=tuple(dict.fromkeys((*steady_tiers, *mix.tiers_used()))),
        )
        for t in takers
    }
    return loads, breaches


def _latency_breaches(topology: Topology, calibration: Calibration, tiers: set[str]) -> tuple[Breach, ...]:
    deadline = topology.settings.request_deadline_ms
    return tuple(
        Breach(
            LATENCY_SLO,
            f"{tier} tier p99 is {calibration.p99_ms(tier):g} ms in the calibration ({calibration.source}), "
            f"above the {deadline:g} ms cell deadline",
        )
        for tier in sorted(tiers)
        if calibration.p99_ms(tier) > deadline
    )


def plan_capacity(
    topology: Topology, calibration: Calibration, settings: CapacitySettings | None = None
) -> Plan:
    """Size every region for steady state and for the loss of any single region (see module doc)."""
    settings = settings or CapacitySettings()
    vcpus = settings.instance.vcpus
    target, cap = settings.target_utilisation, settings.failover.max_utilisation
    steady_qps = steady_qps_by_region(topology, settings.peak_qps)
    steady_cpu = mix_cpu_ms(calibration, settings.steady_mix)
    steady_cores = {r: cores_for(q, steady_cpu) for r, q in steady_qps.items()}
    instances = {r: instances_for(cores=c, vcpus=vcpus, utilisation=target) for r, c in steady_cores.items()}
    sized_for = dict.fromkeys(instances, "steady")
    degraded = blend(settings.steady_mix, TierMix.only(settings.failover.degraded_tier),
                     other_share=settings.failover.degraded_share)

    during: dict[str, tuple[dict[str, RegionLoad], tuple[Breach, ...]]] = {}
    after: dict[str, dict[str, RegionLoad]] = {}
    for failed in topology.regions:
        during[failed] = _moved_loads(topology, calibration, settings=settings, failed=failed, moved_mix=degraded)
        after[failed] = _moved_loads(
            topology, calibration, settings=settings, failed=failed, moved_mix=settings.steady_mix
        )[0]
        for region, load in during[failed][0].items():
            need = instances_for(cores=load.cores, vcpus=vcpus, utilisation=cap)
            if need > instances[region]:
                instances[region], sized_for[region] = need, failed

    scenarios = []
    used_tiers = set(settings.steady_mix.tiers_used())
    for failed, (loads, residency) in during.items():
        needed = {r: instances_for(cores=l.cores, vcpus=vcpus, utilisation=cap) for r, l in loads.items()}
        util = {r: utilisation_of(cores=l.cores, instances=instances[r], vcpus=vcpus) for r, l in loads.items()}
        over = tuple(
            Breach(UTILISATION_CAP, f"{r} would run at {u:.0%} of its {instances[r]} instances when {failed} is "
                                    f"lost, above the {cap:.0%} cap where p99 holds; it needs {needed[r]}")
            for r, u in sorted(util.items())
            if not within(u, cap)
        )
        scale_out = {
            r: max(0, instances_for(cores=l.cores, vcpus=vcpus, utilisation=target) - instances[r])
            for r, l in after[failed].items()
        }
        for load in loads.values():
            used_tiers.update(load.tiers)
        scenarios.append(Scenario(
            failed_region=failed,
            loads=MappingProxyType(loads),
            needed=MappingProxyType(needed),
            utilisation=MappingProxyType(util),
            scale_out=MappingProxyType(scale_out),
            breaches=residency + over,
        ))

    regions = {
        name: RegionPlan(
            region=name,
            geography=region.geography,
            steady_qps=steady_qps[name],
            steady_cores=steady_cores[name],
            steady_instances=instances_for(cores=steady_cores[name], vcpus=vcpus, utilisation=target),
            instances=instances[name],
            sized_for=sized_for[name],
            steady_utilisation=utilisation_of(cores=steady_cores[name], instances=instances[name], vcpus=vcpus),
        )
        for name, region in topology.regions.items()
    }
    naive = instances_for(cores=cores_for(settings.peak_qps, calibration.cpu_ms("full")), vcpus=vcpus,
                          utilisation=target)
    breaches = [b for s in scenarios for b in s.breaches]
    breaches.extend(_latency_breaches(topology, calibration, used_tiers))
    plan = Plan(
        settings=settings,
        calibration=calibration,
        regions=MappingProxyType(regions),
        scenarios=tuple(scenarios),
        naive_instances_per_region=naive,
        breaches=tuple(breaches),
    )
    if plan.cost_per_request_usd > settings.budget_usd_per_request:
        over_budget = Breach(COST_BUDGET, f"cost per request at peak is ${plan.cost_per_request_usd:.3g}, above the "
                                          f"${settings.budget_usd_per_request:g} budget")
        plan = replace(plan, breaches=(*plan.breaches, over_budget))
    return plan


def region_headroom(plan: Plan, region: str) -> float:
    """Full-ranking QPS `region` can take on top of its steady peak and stay within max_utilisation."""
    r = _region_of(plan, region)
    spare = r.instances * plan.settings.instance.vcpus * plan.settings.failover.max_utilisation - r.steady_cores
    return max(0.0, spare * 1000.0 / plan.calibration.cpu_ms("full"))


def plan_capacity_qps(plan: Plan) -> dict[str, float]:
    """Full-ranking QPS each region of the plan serves within max_utilisation (for survivors_can_absorb)."""
    per_core = 1000.0 / plan.calibration.cpu_ms("full")
    cap = plan.settings.failover.max_utilisation
    return {n: r.instances * plan.settings.instance.vcpus * cap * per_core for n, r in plan.regions.items()}


def _region_of(plan: Plan, region: str) -> RegionPlan:
    try:
        return plan.regions[region]
    except KeyError:
        known = ", ".join(sorted(plan.regions))
        raise InputError("region", f"unknown region {region!r}; known regions: {known}") from None


def plan_to_dict(plan: Plan) -> dict[str, Any]:
    """A JSON-ready view of the plan (what `regionctl capacity plan --json` prints)."""
    s = plan.settings
    return {
        "feasible": plan.feasible,
        "breaches": [{"constraint": b.constraint, "message": b.message} for b in plan.breaches],
        "inputs": {
            "peak_qps": s.peak_qps,
            "target_utilisation": s.target_utilisation,
            "instance": {"name": s.instance.name, "vcpus": s.instance.vcpus, "hourly_usd": s.instance.hourly_usd},
            "failover": {
                "degraded_share": s.failover.degraded_share,
                "degraded_tier": s.failover.degraded_tier,
                "degraded_window_s": s.failover.degraded_window_s,
                "cross_geo_tier": s.failover.cross_geo_tier,
                "max_utilisation": s.failover.max_utilisation,
            },
            "steady_mix": dict(s.steady_mix.shares),
            "calibration": {
                "machine": plan.calibration.machine,
                "source": plan.calibration.source,
                "cpu_ms": {t: c.cpu_ms for t, c in plan.calibration.tiers.items()},
            },
        },
        "regions": {
            n: {
                "geography": r.geography,
                "steady_qps": r.steady_qps,
                "steady_instances": r.steady_instances,
                "instances": r.instances,
                "sized_for": r.sized_for,
                "steady_utilisation": r.steady_utilisation,
                "headroom_qps": region_headroom(plan, n),
            }
            for n, r in plan.regions.items()
        },
        "scenarios": {
            sc.failed_region: {
                "ok": sc.ok,
                "survivors": {
                    r: {
                        "qps": load.qps,
                        "needed": sc.needed[r],
                        "utilisation": sc.utilisation[r],
                        "scale_out": sc.scale_out.get(r, 0),
                    }
                    for r, load in sc.loads.items()
                },
                "breaches": [{"constraint": b.constraint, "message": b.message} for b in sc.breaches],
            }
            for sc in plan.scenarios
        },
        "cost": {
            "total_instances": plan.total_instances,
            "steady_only_instances": plan.steady_only_instances,
            "hourly_usd": plan.hourly_usd,
            "cost_per_request_usd": plan.cost_per_request_usd,
            "budget_usd_per_request": s.budget_usd_per_request,
            "within_budget": plan.cost_per_request_usd <= s.budget_usd_per_request,
            "naive_instances": plan.naive_instances,
            "naive_hourly_usd": plan.naive_hourly_usd,
            "naive_definition": "every region able to take the whole global peak at full ranking at target utilisation",
            "saving": plan.saving,
        },
    }
