"""Drill planning: pre-checks and a staged evacuation + failback plan for one region. Pure.

`plan_drill(snapshot, region=)` looks only at the snapshot: capacities, demand, health (with the
bundle version of each region's latest probe), replication lags and overrides. The driver executes
the steps in order: a SHIFT step is a steer override with the step's weights, DRAIN and UNDRAIN
are the operator actions of failover.safety, HOLD waits, FAILBACK steps are what the controller
does by itself after the undrain (the plan lists them so the report can time them). Before leaving
a step the driver waits `hold_s` and checks `evaluate_gates(fresh_snapshot, step)`.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from types import MappingProxyType
from typing import Mapping

from capacity.absorb import survivors_can_absorb
from failover.health import gate_failures
from failover.safety import request_drain
from failover.steering import Snapshot, decide, to_percent
from regions.errors import InputError


@dataclass(frozen=True, kw_only=True)
class Check:
    name: str
    passed: bool
    message: str


class StepKind(str, Enum):
    SHIFT = "shift"
    DRAIN = "drain"
    HOLD = "hold"
    UNDRAIN = "undrain"
    FAILBACK = "failback"


@dataclass(frozen=True, kw_only=True)
class DrillStep:
    kind: StepKind
    region: str
    share_percent: int
    """Share of its fair share the drilled region has after this step."""
    weights: Mapping[str, int]
    """Expected weights of the geography after this step (sum to 100)."""
    hold_s: float
    gates: tuple[str, ...]
    """Regions whose SLO gates must hold before the next step."""
    description: str


@dataclass(frozen=True, kw_only=True)
class DrillPlan:
    region: str
    geography: str
    checks: tuple[Check, ...]
    steps: tuple[DrillStep, ...]

    @property
    def ok(self) -> bool:
        """All pre-checks passed: the drill may start."""
        return all(c.passed for c in self.checks)

    @property
    def failed_checks(self) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if not c.passed)


def _staged_weights(snapshot: Snapshot, *, region: str, survivors: tuple[str, ...], percent: int) -> dict[str, int]:
    """Geography weights when `region` has `percent` % of its fair share and survivors share the rest."""
    geo = snapshot.topology.regions[region].geography
    members = sorted(r.name for r in snapshot.topology.regions_in(geo))
    caps = {r: snapshot.capacity_of(r) for r in (region, *survivors)}
    if not survivors:
        return {r: 100 if r == region else 0 for r in members}
    total = sum(caps.values()) or 1.0
    fair_region = caps[region] / total
    moved = fair_region * (100 - percent) / 100.0
    rest = sum(caps[r] for r in survivors)
    shares = {region: fair_region * percent / 100.0}
    for r in survivors:
        shares[r] = caps[r] / total + moved * (caps[r] / rest if rest > 0 else 1.0 / len(survivors))
    percents = to_percent(shares)
    return {r: percents.get(r, 0) for r in members}


def _capacity_check(snapshot: Snapshot, *, region: str, survivors: tuple[str, ...]) -> Check:
    s, geo = snapshot.settings, snapshot.topology.regions[region].geography
    demand = snapshot.demand_qps.get(geo)
    if demand is None:
        return Check(name="capacity", passed=False,
                     message=f"demand of geography {geo} is unknown; measure it (load generator or edge metrics) first")
    incoming = decide(snapshot).cross_geo
    extra = sum(snapshot.demand_qps.get(g, 0.0) for g, route in incoming.items() if route.via == geo)
    load = demand + extra
    room = sum(snapshot.capacity_of(r) for r in survivors) * s.max_utilization
    names = ", ".join(survivors) or "no survivor"
    detail = f"{load:.0f} QPS (incl. {extra:.0f} anonymous from other geographies)" if extra else f"{load:.0f} QPS"
    if load <= room and snapshot.calibration is not None:
        verdict = survivors_can_absorb(
            snapshot.topology, snapshot.calibration, failed_region=region,
            current_qps_by_region=_current_qps(snapshot, geo=geo),
            capacity_qps_by_region={r: snapshot.capacity_of(r) for r in snapshot.topology.regions},
        )
        if not verdict.ok:
            return Check(name="capacity", passed=False,
                         message="capacity model: " + "; ".join(verdict.reasons) + "; add capacity or drill at a quieter time")
    if load <= room:
        return Check(name="capacity", passed=True,
                     message=f"{names} can absorb {detail}: {room:.0f} QPS at {s.max_utilization:.0%} utilization")
    return Check(name="capacity", passed=False,
                 message=f"{names} can serve {room:.0f} QPS at {s.max_utilization:.0%} utilization but {geo} needs "
                         f"{detail}; add capacity or drill at a quieter time")


def _current_qps(snapshot: Snapshot, *, geo: str) -> dict[str, float]:
    """Each region's share of its geography's observed demand, by the current weights."""
    out: dict[str, float] = {}
    for g, demand in snapshot.demand_qps.items():
        weights = snapshot.current_weights.get(g, {})
        total = sum(weights.values()) or 0
        for r, w in weights.items():
            if total and r in snapshot.topology.regions:
                out[r] = out.get(r, 0.0) + demand * w / total
    return out


def _lag_check(snapshot: Snapshot, *, region: str, peers: tuple[str, ...]) -> Check:
    budget = snapshot.topology.settings.rpo_budget_s
    if not peers:
        return Check(name="replication", passed=False,
                     message=f"{region}'s interaction log has no copy in another region: an evacuation risks its data")
    problems, worst = [], 0.0
    for pair in [p for peer in peers for p in ((region, peer), (peer, region))]:
        lag = snapshot.replication_lag_s.get(pair)
        if lag is None:
            problems.append(f"no lag measured for {pair[0]} -> {pair[1]}")
        elif lag > budget:
            problems.append(f"{pair[0]} -> {pair[1]} lags {lag:.1f} s > RPO budget {budget:.0f} s")
        else:
            worst = max(worst, lag)
    if problems:
        return Check(name="replication", passed=False, message="; ".join(problems))
    return Check(name="replication", passed=True, message=f"worst lag {worst:.1f} s within RPO budget {budget:.0f} s")


def _bundle_check(snapshot: Snapshot, *, regions: tuple[str, ...]) -> Check:
    versions = {}
    for r in regions:
        probe = snapshot.health_of(r).last_probe
        versions[r] = probe.bundle_version if probe is not None else None
    unknown = sorted(r for r, v in versions.items() if not v)
    if unknown:
        return Check(name="bundle", passed=False, message=f"bundle version unknown for {', '.join(unknown)}; probe them first")
    if len(set(versions.values())) > 1:
        listing = ", ".join(f"{r}={v}" for r, v in sorted(versions.items()))
        return Check(name="bundle", passed=False, message=f"bundle versions differ ({listing}); promote one bundle everywhere first")
    return Check(name="bundle", passed=True, message=f"all of {', '.join(sorted(regions))} serve {next(iter(versions.values()))}")


def _checks(snapshot: Snapshot, *, region: str, survivors: tuple[str, ...], peers: tuple[str, ...]) -> list[Check]:
    geo = snapshot.topology.regions[region].geography
    checks = [Check(name="region-serving", passed=snapshot.usable(region),
                    message=f"{region} is {'usable' if snapshot.usable(region) else 'not serving'} "
                            f"({snapshot.health_of(region).state.value})")]
    try:
        request_drain(snapshot, region=region)
        checks.append(Check(name="safety", passed=True, message=f"draining {region} keeps {geo} served"))
    except InputError as exc:
        checks.append(Check(name="safety", passed=False, message=str(exc)))
    unhealthy = {r: gate_failures(snapshot.health_of(r), snapshot.settings) for r in survivors}
    bad = [f"{r}: {'; '.join(p)}" for r, p in sorted(unhealthy.items()) if p]
    checks.append(Check(name="survivors-healthy", passed=bool(survivors) and not bad,
                        message="; ".join(bad) if bad else (f"{', '.join(survivors)} healthy within SLO"
                                                            if survivors else f"no other usable region in {geo}")))
    checks.append(_capacity_check(snapshot, region=region, survivors=survivors))
    checks.append(_lag_check(snapshot, region=region, peers=peers))
    checks.append(_bundle_check(snapshot, regions=(region, *survivors)))
    steered = snapshot.overrides.steer_for(geo, now=snapshot.now)
    checks.append(Check(name="no-steer-override", passed=steered is None,
                        message=f"{geo} has an operator steer override; clear it first" if steered
                        else f"{geo} has no operator steer override"))
    return checks


def plan_drill(snapshot: Snapshot, *, region: str) -> DrillPlan:
    """Pre-checks and staged steps for evacuating `region` and failing it back."""
    if region not in snapshot.topology.regions:
        raise InputError("region", f"unknown region {region!r}; known regions: {', '.join(sorted(snapshot.topology.regions))}")
    s, geo = snapshot.settings, snapshot.topology.regions[region].geography
    peers = tuple(sorted(r.name for r in snapshot.topology.regions_in(geo) if r.name != region))
    survivors = tuple(r for r in peers if snapshot.usable(r))
    checks = _checks(snapshot, region=region, survivors=survivors, peers=peers)

    def step(kind: StepKind, percent: int, *, hold: float, gates: tuple[str, ...], text: str) -> DrillStep:
        weights = _staged_weights(snapshot, region=region, survivors=survivors, percent=percent)
        return DrillStep(kind=kind, region=region, share_percent=percent, weights=MappingProxyType(weights),
                         hold_s=hold, gates=gates, description=text)

    steps = []
    for pct in s.drill_shift_stages:
        if pct > 0:
            steps.append(step(StepKind.SHIFT, pct, hold=s.drill_hold_s, gates=survivors,
                              text=f"steer {region} to {pct} % of its fair share; survivors take the rest"))
        else:
            steps.append(step(StepKind.DRAIN, 0, hold=0.0, gates=survivors,
                              text=f"drain {region}: its traffic goes to {', '.join(survivors) or 'nobody'}"))
    steps.append(step(StepKind.HOLD, 0, hold=s.drill_hold_s, gates=survivors,
                      text=f"hold with {region} evacuated; measure survivors' p99 and error rate"))
    steps.append(step(StepKind.UNDRAIN, 0, hold=0.0, gates=(region,),
                      text=f"undrain {region} and clear the drill's steer override; the controller fails it back"))
    for index, pct in enumerate(s.failback_stages):
        steps.append(step(StepKind.FAILBACK, pct, hold=s.hold_for_stage(index), gates=(region, *survivors),
                          text=f"failback stage {index + 1}: {region} at {pct} % of its fair share"))
    return DrillPlan(region=region, geography=geo, checks=tuple(checks), steps=tuple(steps))


def evaluate_gates(snapshot: Snapshot, step: DrillStep) -> tuple[Check, ...]:
    """SLO gates of a step's regions on a fresh snapshot: healthy, error rate and p99 within the SLO."""
    out = []
    for r in step.gates:
        problems = gate_failures(snapshot.health_of(r), snapshot.settings)
        out.append(Check(name=f"gate {r}", passed=not problems,
                         message="; ".join(problems) or f"{r} healthy within SLO"))
    return tuple(out)
