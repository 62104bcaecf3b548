"""Safety rules: validation of operator actions, and assertions over a steering result.

Like Route 53 ARC's safety rules, an operator change is checked against the whole picture before
it is accepted. Every function is pure: it takes a `Snapshot`, returns new `Overrides` (the
snapshot's are never changed) or raises `InputError` naming the field and what is allowed.

Rules
  1. A geography always keeps a serving region: draining the last usable (healthy or degraded,
     not drained) region of a geography is refused, with or without force. (Its users would lose
     personal recommendations; repair or undrain another region of the geography first.)
  2. Draining a region while another region of the same geography is already drained or
     unhealthy needs force=True.
  3. Overrides expire: default TTL `override_ttl_s` (24 h), at most `max_override_ttl_s`;
     a TTL must be a positive number of seconds. Draining a drained region renews its drain.
  4. Steer weights: known geography; only regions of that geography; integers 0..100 summing to
     100; no weight above 0 for a drained or unhealthy region. Regions left out get 0.
"""
from __future__ import annotations

import math
from typing import Mapping

from failover.health import HealthState
from failover.overrides import DrainOverride, Overrides, SteerOverride
from failover.steering import Snapshot, Steering
from regions.errors import InputError


def _ttl(snapshot: Snapshot, ttl_s: float | None) -> float:
    s = snapshot.settings
    if ttl_s is None:
        return s.override_ttl_s
    if isinstance(ttl_s, bool) or not isinstance(ttl_s, (int, float)) or not math.isfinite(ttl_s) or ttl_s <= 0:
        raise InputError("ttl_s", f"must be a positive number of seconds (default {s.override_ttl_s:g}), got {ttl_s!r}")
    if ttl_s > s.max_override_ttl_s:
        raise InputError("ttl_s", f"must be at most {s.max_override_ttl_s:g} s; renew the override instead, got {ttl_s:g}")
    return float(ttl_s)


def _known_region(snapshot: Snapshot, region: str, field: str = "region") -> str:
    if region not in snapshot.topology.regions:
        allowed = ", ".join(sorted(snapshot.topology.regions))
        raise InputError(field, f"unknown region {region!r}; known regions: {allowed}")
    return snapshot.topology.regions[region].geography


def _known_geography(snapshot: Snapshot, geography: str) -> None:
    if geography not in snapshot.topology.geographies:
        allowed = ", ".join(sorted(snapshot.topology.geographies))
        raise InputError("geography", f"unknown geography {geography!r}; known geographies: {allowed}")


def _out_of_service(snapshot: Snapshot, region: str) -> str | None:
    """'drained', 'unhealthy' or 'a latency outlier' when the region may not receive traffic, else None."""
    if snapshot.drained(region):
        return "drained"
    if snapshot.health_of(region).state is HealthState.UNHEALTHY:
        return "unhealthy"
    if snapshot.ejected(region):
        return "a latency outlier"
    return None


def request_drain(snapshot: Snapshot, *, region: str, force: bool = False, ttl_s: float | None = None,
                  reason: str = "") -> Overrides:
    """Overrides with `region` drained until now + ttl_s, after checking rules 1-3."""
    geo = _known_region(snapshot, region)
    ttl = _ttl(snapshot, ttl_s)
    others = sorted(r.name for r in snapshot.topology.regions_in(geo) if r.name != region)
    if snapshot.usable(region) and not any(snapshot.usable(r) for r in others):
        states = ", ".join(f"{r} {_out_of_service(snapshot, r) or 'unusable'}" for r in others) or "no other region"
        raise InputError(
            "region",
            f"draining {region} would leave geography {geo} without a serving region ({states}); "
            f"undrain or repair another region of {geo} first (force does not override this rule)",
        )
    down = [f"{r} is {_out_of_service(snapshot, r)}" for r in others if _out_of_service(snapshot, r)]
    if down and not force:
        raise InputError("force", f"{'; '.join(down)} in geography {geo}; pass force=True to drain {region} as well")
    drain = DrainOverride(region=region, created_at=snapshot.now, expires_at=snapshot.now + ttl,
                          reason=reason, forced=bool(down))
    return snapshot.overrides.with_drain(drain)


def request_undrain(snapshot: Snapshot, *, region: str) -> Overrides:
    """Overrides without the drain of `region` (steering then fails it back gradually)."""
    _known_region(snapshot, region)
    if not snapshot.drained(region):
        drained = ", ".join(sorted(r for r in snapshot.topology.regions if snapshot.drained(r))) or "none"
        raise InputError("region", f"{region} is not drained; drained regions: {drained}")
    return snapshot.overrides.without_drain(region)


def validate_weights(snapshot: Snapshot, *, geography: str, weights: Mapping[str, int]) -> dict[str, int]:
    """The full weights of `geography` (missing regions 0) after checking rule 4."""
    _known_geography(snapshot, geography)
    members = sorted(r.name for r in snapshot.topology.regions_in(geography))
    if not isinstance(weights, Mapping) or not weights:
        raise InputError("weights", f"give a weight per region of {geography} ({', '.join(members)}) summing to 100")
    for region, weight in sorted(weights.items()):
        geo = _known_region(snapshot, region, field=f"weights.{region}")
        if geo != geography:
            raise InputError(f"weights.{region}", f"{region} is in geography {geo}, not {geography}; "
                                                  f"allowed regions: {', '.join(members)}")
        if isinstance(weight, bool) or not isinstance(weight, int) or not 0 <= weight <= 100:
            raise InputError(f"weights.{region}", f"must be an integer percentage 0..100, got {weight!r}")
        down = _out_of_service(snapshot, region)
        if weight > 0 and down:
            raise InputError(f"weights.{region}", f"{region} is {down} and may only get 0; "
                                                  f"undrain or repair it first")
    total = sum(weights.values())
    if total != 100:
        raise InputError("weights", f"must sum to 100, they sum to {total}")
    return {r: int(weights.get(r, 0)) for r in members}


def request_steer(snapshot: Snapshot, *, geography: str, weights: Mapping[str, int], ttl_s: float | None = None,
                  reason: str = "") -> Overrides:
    """Overrides with operator weights for `geography` until now + ttl_s."""
    full = validate_weights(snapshot, geography=geography, weights=weights)
    ttl = _ttl(snapshot, ttl_s)
    steer = SteerOverride(geography=geography, weights=full, created_at=snapshot.now,
                          expires_at=snapshot.now + ttl, reason=reason)
    return snapshot.overrides.with_steer(steer)


def clear_steer(snapshot: Snapshot, *, geography: str) -> Overrides:
    """Overrides without the steer override of `geography`."""
    _known_geography(snapshot, geography)
    if snapshot.overrides.steer_for(geography, now=snapshot.now) is None:
        steered = ", ".join(sorted(snapshot.overrides.active(snapshot.now).steer)) or "none"
        raise InputError("geography", f"{geography} has no active steer override; steered geographies: {steered}")
    return snapshot.overrides.without_steer(geography)


def check_steering(snapshot: Snapshot, steering: Steering) -> tuple[str, ...]:
    """Assertions every steering result must satisfy before the driver applies it (empty when all hold)."""
    topo, problems = snapshot.topology, []
    for geo, weights in sorted(steering.weights.items()):
        members = {r.name for r in topo.regions_in(geo)} if geo in topo.geographies else set()
        if not members:
            problems.append(f"weights name unknown geography {geo}")
            continue
        if sum(weights.values()) != 100 or any(w < 0 for w in weights.values()):
            problems.append(f"weights of {geo} sum to {sum(weights.values())}, not 100")
        for region, weight in sorted(weights.items()):
            if region not in members:
                problems.append(f"weights of {geo} name {region}, which is not in {geo}: personal data would cross")
            elif weight > 0 and not steering.fail_static and not snapshot.usable(region):
                problems.append(f"{region} gets {weight} % but is {_out_of_service(snapshot, region) or 'unusable'}")
    for geo, route in sorted(steering.cross_geo.items()):
        if not route.anonymous:
            problems.append(f"cross-geography route of {geo} is not anonymous")
        if route.via == geo or any(topo.regions[r].geography == geo for r, w in route.weights.items() if w > 0):
            problems.append(f"cross-geography route of {geo} does not leave {geo}")
        if geo in steering.weights:
            problems.append(f"{geo} has both weights and a cross-geography route")
    if not steering.fail_static:
        for geo in sorted(topo.geographies):
            if snapshot.usable_in(geo) and geo not in steering.weights:
                problems.append(f"{geo} has usable regions but no weights")
    return tuple(problems)
