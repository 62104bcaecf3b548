"""Steering: `decide(snapshot) -> Steering`, the controller's pure traffic policy.

For every geography with a usable region (healthy or degraded, not drained) the result gives integer
weights per region summing to 100. They start from each region's capacity (its fair share), a degraded
region keeps `degraded_weight_factor` of it, a region failing back is held to 10 % -> 50 % -> 100 % of
it, an operator steer override replaces them, and when demand is known no region is given more than
`max_utilization` of its capacity while others have room (water-filling). What cannot be placed is
served by cheaper tiers: `max_tier` hints tell the edge which share of a region's requests should ask
for at most which tier. A geography with no usable region is routed to another geography, anonymously
(no user id crosses). When the probes of (nearly) every region fail at once the controller suspects
itself and keeps the last weights (fail-static), with an alert.

No clock, network or environment here: everything comes in the snapshot, everything goes out in the
result (including failback progress and the overrides still active, which the driver persists).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Mapping

from failover.health import HealthState, RegionHealth, gate_failures, initial_health
from failover.overrides import Overrides, SteerOverride
from failover.settings import ControllerSettings
from capacity.calibration import Calibration
from contracts.routing_table import GeoRoute, RoutingTable, TierLimit, render_table
from contracts.tiers import TIER_NAMES
from regions.topology import Topology

Weights = Mapping[str, Mapping[str, int]]


@dataclass(frozen=True, kw_only=True)
class FailbackProgress:
    """A region coming back: it gets failback_stages[stage] % of its fair share since `since`."""

    region: str
    stage: int
    since: float

    def percent(self, settings: ControllerSettings) -> int:
        return settings.failback_stages[min(self.stage, len(settings.failback_stages) - 1)]

    def to_dict(self) -> dict[str, Any]:
        return {"region": self.region, "stage": self.stage, "since": self.since}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> FailbackProgress:
        return cls(region=str(raw["region"]), stage=int(raw["stage"]), since=float(raw["since"]))


@dataclass(frozen=True, kw_only=True)
class Snapshot:
    """Everything one decision depends on. Missing health means no probe yet (healthy, as Envoy starts)."""

    topology: Topology
    health: Mapping[str, RegionHealth]
    now: float
    settings: ControllerSettings = field(default_factory=ControllerSettings)
    capacity_qps: Mapping[str, float] = field(default_factory=dict)
    """Measured capacity (full-ranking QPS) per region; topology's capacity_qps where missing."""
    demand_qps: Mapping[str, float] = field(default_factory=dict)
    """Observed demand per geography; a geography missing here has unknown demand."""
    current_weights: Weights = field(default_factory=dict)
    """The weights the edge uses now (the previous decision)."""
    overrides: Overrides = field(default_factory=Overrides)
    failback: Mapping[str, FailbackProgress] = field(default_factory=dict)
    replication_lag_s: Mapping[tuple[str, str], float] = field(default_factory=dict)
    calibration: Calibration | None = None
    """Measured CPU cost per tier (capacity/): drill pre-checks ask the capacity model with it."""
    """Lag of the interaction log per (source, target) pair of regions, used by drill planning."""

    def health_of(self, region: str) -> RegionHealth:
        return self.health.get(region) or initial_health(region, now=self.now)

    def capacity_of(self, region: str) -> float:
        return max(0.0, float(self.capacity_qps.get(region, self.topology.regions[region].capacity_qps)))

    def drained(self, region: str) -> bool:
        return (self.health_of(region).state is HealthState.DRAINED
                or self.overrides.is_drained(region, now=self.now))

    def _serves(self, region: str) -> bool:
        return self.health_of(region).usable and not self.drained(region)

    def ejected(self, region: str) -> bool:
        """A latency outlier (failover.outlier) loses its traffic while another region of its
        geography serves and is not an outlier itself: never the last one (a slow answer, cut by
        the edge's deadline, beats an anonymous one from another geography)."""
        if not self.health_of(region).outlier.ejected or not self._serves(region):
            return False
        geo = self.topology.regions[region].geography
        return any(self._serves(p.name) and not self.health_of(p.name).outlier.ejected
                   for p in self.topology.regions_in(geo) if p.name != region)

    def usable(self, region: str) -> bool:
        return self._serves(region) and not self.ejected(region)

    def usable_in(self, geography: str) -> tuple[str, ...]:
        return tuple(sorted(r.name for r in self.topology.regions_in(geography) if self.usable(r.name)))


@dataclass(frozen=True, kw_only=True)
class CrossGeoRoute:
    """Requests of `geography`'s users are served by `via`'s regions, without the user id."""

    geography: str
    via: str
    weights: Mapping[str, int]
    anonymous: bool = True


@dataclass(frozen=True, kw_only=True)
class TierHint:
    """Send `fraction` of the region's requests with max_tier=`max_tier`: load exceeds capacity."""

    region: str
    max_tier: str
    fraction: float
    load_qps: float
    capacity_qps: float


@dataclass(frozen=True, kw_only=True)
class Steering:
    weights: Weights
    cross_geo: Mapping[str, CrossGeoRoute]
    max_tier: Mapping[str, TierHint]
    failback: Mapping[str, FailbackProgress]
    overrides: Overrides
    """Overrides still active (expired ones removed): persist these."""
    reasons: tuple[tuple[str, str], ...]
    """(region or geography, why) for every change and every abnormal condition."""
    fail_static: bool = False
    alerts: tuple[str, ...] = ()

    def weight(self, geography: str, region: str) -> int:
        return self.weights.get(geography, {}).get(region, 0)

    def routing_table(self, *, version: int, updated_at: float) -> dict[str, Any]:
        """The edge's routing table for this decision, rendered by contracts.routing_table."""
        geos = {g: GeoRoute(geography=g, regions=MappingProxyType(dict(w))) for g, w in sorted(self.weights.items())}
        for g, route in sorted(self.cross_geo.items()):
            geos[g] = GeoRoute(geography=g, regions=MappingProxyType(dict(route.weights)), anonymous=True)
        limits = {r: TierLimit(tier=h.max_tier, fraction=h.fraction) for r, h in sorted(self.max_tier.items())}
        return render_table(RoutingTable(version=version, updated_at=updated_at, fail_static=self.fail_static,
                                         geos=MappingProxyType(geos), max_tier=MappingProxyType(limits)))


def to_percent(shares: Mapping[str, float]) -> dict[str, int]:
    """Integer percentages summing to 100, proportional to `shares` (largest remainder, ties by name)."""
    total = sum(max(0.0, s) for s in shares.values())
    if total <= 0:
        raise ValueError("to_percent needs at least one positive share")
    raw = {r: 100.0 * max(0.0, s) / total for r, s in shares.items()}
    result = {r: math.floor(v) for r, v in raw.items()}
    left = 100 - sum(result.values())
    for r in sorted((r for r in raw if raw[r] > 0), key=lambda r: (result[r] - raw[r], r))[:left]:
        result[r] += 1
    return dict(sorted(result.items()))


def water_fill(base: Mapping[str, float], upper: Mapping[str, float]) -> tuple[dict[str, float], float]:
    """Shares summing to at most 1, proportional to `base`, none above its `upper` bound.

    Returns the shares and what could not be placed (0 when the bounds leave enough room).
    """
    shares: dict[str, float] = {}
    free = sorted(base)
    remaining = 1.0
    while free and remaining > 1e-12:
        total = sum(base[r] for r in free)
        proposal = {r: remaining * (base[r] / total if total > 0 else 1 / len(free)) for r in free}
        over = [r for r in free if proposal[r] > upper[r] + 1e-12]
        if not over:
            shares.update(proposal)
            return shares, 0.0
        for r in over:
            shares[r] = upper[r]
            remaining -= upper[r]
        free = [r for r in free if r not in over]
    return {**shares, **{r: 0.0 for r in free}}, max(0.0, remaining)


def tier_hint(*, region: str, load_qps: float, capacity_qps: float, settings: ControllerSettings) -> TierHint | None:
    """The highest tier below full that, asked for by the smallest share of requests, fits the capacity."""
    if load_qps <= capacity_qps:
        return None
    for tier in TIER_NAMES[1:]:
        cost = settings.tier_cost(tier)
        if load_qps * cost <= capacity_qps:
            fraction = (load_qps - capacity_qps) / (load_qps * (1.0 - cost))
            return TierHint(region=region, max_tier=tier, fraction=min(1.0, math.ceil(round(fraction * 1000, 6)) / 1000),
                            load_qps=load_qps, capacity_qps=capacity_qps)
    return TierHint(region=region, max_tier=TIER_NAMES[-1], fraction=1.0, load_qps=load_qps, capacity_qps=capacity_qps)


def static_weights(snapshot: Snapshot, geography: str) -> dict[str, int]:
    """Capacity-proportional weights ignoring health (drained regions excluded while any other remains)."""
    regions = sorted(r.name for r in snapshot.topology.regions_in(geography))
    candidates = [r for r in regions if not snapshot.drained(r)] or regions
    caps = {r: snapshot.capacity_of(r) if r in candidates else 0.0 for r in regions}
    if sum(caps.values()) <= 0:
        caps = {r: 1.0 if r in candidates else 0.0 for r in regions}
    return to_percent(caps)


def _valid_weights(topology: Topology, geography: str, weights: Mapping[str, int] | None) -> bool:
    if not weights:
        return False
    names = {r.name for r in topology.regions_in(geography)}
    return set(weights) <= names and all(w >= 0 for w in weights.values()) and sum(weights.values()) == 100


def _fail_static(snapshot: Snapshot, why: str, active: Overrides, notes: list[tuple[str, str]]) -> Steering:
    weights: dict[str, Mapping[str, int]] = {}
    for geo in sorted(snapshot.topology.geographies):
        current = snapshot.current_weights.get(geo)
        if current is not None and _valid_weights(snapshot.topology, geo, current):
            weights[geo] = MappingProxyType(dict(sorted(current.items())))
        else:
            weights[geo] = MappingProxyType(static_weights(snapshot, geo))
            notes.append((geo, "fail-static without valid last weights: capacity-proportional weights"))
    alert = f"fail-static: {why}; keeping the last weights. Check the controller's own network before acting."
    return Steering(weights=MappingProxyType(weights), cross_geo=MappingProxyType({}), max_tier=MappingProxyType({}),
                    failback=MappingProxyType(dict(snapshot.failback)), overrides=active,
                    reasons=tuple(notes) + (("*", alert),), fail_static=True, alerts=(alert,))


def _advance_failback(snapshot: Snapshot, notes: list[tuple[str, str]]) -> dict[str, FailbackProgress]:
    s, now = snapshot.settings, snapshot.now
    progress: dict[str, FailbackProgress] = {}
    for name in sorted(snapshot.topology.regions):
        prev = snapshot.failback.get(name)
        if not snapshot.usable(name):
            if prev is not None:
                notes.append((name, "failback stopped: region no longer usable"))
            continue
        if prev is None:
            geo = snapshot.topology.regions[name].geography
            current = snapshot.current_weights.get(geo)
            if current is not None and current.get(name, 0) == 0:
                progress[name] = FailbackProgress(region=name, stage=0, since=now)
                notes.append((name, f"failback started at {s.failback_stages[0]} % of its fair share"))
            continue
        problems = gate_failures(snapshot.health_of(name), s)
        if problems:
            progress[name] = replace(prev, since=now)
            notes.append((name, f"failback held at {prev.percent(s)} %: " + "; ".join(problems)))
        elif now - prev.since >= s.hold_for_stage(prev.stage):
            nxt = prev.stage + 1
            if nxt >= len(s.failback_stages) - 1:
                notes.append((name, "failback complete: full fair share"))
            else:
                progress[name] = FailbackProgress(region=name, stage=nxt, since=now)
                notes.append((name, f"failback advanced to {s.failback_stages[nxt]} % (gates held {now - prev.since:.0f} s)"))
        else:
            progress[name] = prev
    for geo in sorted(snapshot.topology.geographies):
        usable = snapshot.usable_in(geo)
        while usable and all(r in progress for r in usable):
            lead = max(sorted(usable), key=lambda r: progress[r].stage)  # first (smallest name) on ties
            del progress[lead]
            notes.append((lead, f"failback complete: no other usable region in {geo} to carry the rest"))
    return progress


def _geo_shares(snapshot: Snapshot, geo: str, *, demand: float | None, active: Overrides,
                progress: Mapping[str, FailbackProgress], notes: list[tuple[str, str]]) -> dict[str, float]:
    s = snapshot.settings
    usable = snapshot.usable_in(geo)
    override = active.steer_for(geo, now=snapshot.now)
    if override is not None:
        kept = {r: float(override.weights.get(r, 0)) for r in usable}
        if sum(kept.values()) > 0:
            lost = sorted(r for r, w in override.weights.items() if w > 0 and r not in usable)
            if lost:
                notes.append((geo, f"steer override names unusable {', '.join(lost)}; its weight goes to the others"))
            notes.append((geo, f"operator steer override until {override.expires_at:.0f}: {override.reason or 'no reason given'}"))
            return kept
        notes.append((geo, "steer override ignored: every region it names is unusable"))
    base = {}
    for r in usable:
        factor = s.degraded_weight_factor if snapshot.health_of(r).state is HealthState.DEGRADED else 1.0
        base[r] = snapshot.capacity_of(r) * factor
    if sum(base.values()) <= 0:
        base = {r: 1.0 for r in usable}
    fair = {r: b / sum(base.values()) for r, b in base.items()}
    upper = {r: fair[r] * progress[r].percent(s) / 100.0 if r in progress else 1.0 for r in usable}
    cap_bound = {r: snapshot.capacity_of(r) * s.max_utilization / demand if demand else math.inf for r in usable}
    limits = {r: min(upper[r], cap_bound[r]) for r in usable}
    shares, short = water_fill(base, limits)
    if short > 1e-9:
        carriers = [r for r in usable if r not in progress] or list(usable)
        caps = {r: snapshot.capacity_of(r) or 1.0 for r in carriers}
        for r in carriers:
            shares[r] += short * caps[r] / sum(caps.values())
        notes.append((geo, f"demand {demand or 0:.0f} QPS exceeds usable capacity: the excess is served by cheaper tiers"))
    return shares


def decide(snapshot: Snapshot) -> Steering:
    """The weights, cross-geography routes and tier hints for this snapshot (see the module docstring)."""
    s, topo, now = snapshot.settings, snapshot.topology, snapshot.now
    notes: list[tuple[str, str]] = []
    active = snapshot.overrides.active(now)
    for gone in snapshot.overrides.expired(now):
        subject = gone.geography if isinstance(gone, SteerOverride) else gone.region
        notes.append((subject, f"override expired at {gone.expires_at:.0f}"))
    regions = sorted(topo.regions)
    failing = [r for r in regions if snapshot.health_of(r).last_probe_failed]
    if len(failing) / len(regions) >= s.fail_static_threshold:
        return _fail_static(snapshot, f"probes to {len(failing)} of {len(regions)} regions fail at once", active, notes)
    if not any(snapshot.usable(r) for r in regions):
        return _fail_static(snapshot, "no region is usable anywhere", active, notes)

    progress = _advance_failback(snapshot, notes)
    serving = [g for g in sorted(topo.geographies) if snapshot.usable_in(g)]
    routes, load_in, alerts = _route_stranded(snapshot, serving)
    weights: dict[str, Mapping[str, int]] = {}
    for g in serving:
        shares = _geo_shares(snapshot, g, demand=load_in[g], active=active, progress=progress, notes=notes)
        percent = to_percent(shares)
        weights[g] = MappingProxyType({r: percent.get(r, 0) for r in sorted(x.name for x in topo.regions_in(g))})
    cross = {g: CrossGeoRoute(geography=g, via=v, weights=weights[v]) for g, v in routes.items()}
    hints = _tier_hints(snapshot, weights=weights, load_in=load_in, notes=notes)
    reasons = _explain(snapshot, weights=weights, progress=progress) + notes
    reasons += [(g, a) for g, a in zip(sorted(routes), alerts)]
    return Steering(weights=MappingProxyType(weights), cross_geo=MappingProxyType(cross),
                    max_tier=MappingProxyType(hints), failback=MappingProxyType(progress), overrides=active,
                    reasons=tuple(reasons), fail_static=False, alerts=tuple(alerts))


def _route_stranded(snapshot: Snapshot, serving: list[str]) -> tuple[dict[str, str], dict[str, float | None], list[str]]:
    """Geographies without a usable region -> the serving geography with the most spare capacity.

    Returns the routes, the load per serving geography (own demand plus anonymous demand routed
    to it; None when its own demand is unknown) and one alert per stranded geography.
    """
    s, topo = snapshot.settings, snapshot.topology
    load_in: dict[str, float | None] = {g: snapshot.demand_qps.get(g) for g in serving}
    spare = {g: sum(snapshot.capacity_of(r) * s.max_utilization for r in snapshot.usable_in(g)) - (load_in[g] or 0.0)
             for g in serving}
    routes: dict[str, str] = {}
    alerts: list[str] = []
    for g in sorted(set(topo.geographies) - set(serving)):
        via = max(serving, key=lambda v: spare[v])  # serving is sorted: the smallest name wins ties
        routes[g] = via
        extra = snapshot.demand_qps.get(g, 0.0)
        spare[via] -= extra
        own = load_in[via]
        if own is not None:
            load_in[via] = own + extra
        drained_ok = sorted(r.name for r in topo.regions_in(g)
                            if snapshot.drained(r.name) and snapshot.health_of(r.name).probed is HealthState.HEALTHY)
        undrain = f"; drained but healthy: {', '.join(drained_ok)} (consider undrain)" if drained_ok else ""
        alerts.append(f"geography {g} has no usable region: its users are served anonymously by {via}{undrain}")
    return routes, load_in, alerts


def _tier_hints(snapshot: Snapshot, *, weights: Weights, load_in: Mapping[str, float | None],
                notes: list[tuple[str, str]]) -> dict[str, TierHint]:
    """A hint for every region whose planned load exceeds max_utilization of its capacity."""
    s, hints = snapshot.settings, {}
    for g, geo_weights in sorted(weights.items()):
        load = load_in.get(g)
        if load is None:
            continue
        for r, w in geo_weights.items():
            cap = snapshot.capacity_of(r) * s.max_utilization
            hint = tier_hint(region=r, load_qps=load * w / 100.0, capacity_qps=cap, settings=s)
            if hint is not None and w > 0:
                hints[r] = hint
                notes.append((r, f"load {hint.load_qps:.0f} QPS > {cap:.0f} QPS: {hint.fraction:.1%} of requests "
                                 f"ask for at most tier {hint.max_tier!r}"))
    return hints


def _explain(snapshot: Snapshot, *, weights: Weights, progress: Mapping[str, FailbackProgress]) -> list[tuple[str, str]]:
    """One reason per region whose weight changed from the snapshot's current weights."""
    out: list[tuple[str, str]] = []
    for g in sorted(snapshot.topology.geographies):
        old = snapshot.current_weights.get(g, {})
        for region in sorted(r.name for r in snapshot.topology.regions_in(g)):
            before, after = old.get(region), weights.get(g, {}).get(region, 0)
            if before == after:
                continue
            h = snapshot.health_of(region)
            if snapshot.drained(region):
                why = "drained by operator"
            elif snapshot.ejected(region):
                why = f"latency outlier: {h.outlier.reason}"
            elif not h.usable:
                why = f"{h.state.value}: {h.reason}"
            elif region in progress:
                why = f"failing back at {progress[region].percent(snapshot.settings)} % of its fair share"
            else:
                why = f"{h.state.value}; share of the usable capacity of {g}"
            out.append((region, f"{'none' if before is None else f'{before} %'} -> {after} % of {g}: {why}"))
    return out
