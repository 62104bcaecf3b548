"""The routing table: the one contract between the controller (writer) and every edge (reader).

Stored under `contracts.store_keys.TABLE_KEY` as JSON (docs/interfaces.md, "Routing table"):

    {"version": 12, "updated_at": 1764000000.0, "fail_static": false,
     "geos": {"us": {"regions": {"us-east": 50, "us-west": 50}, "anonymous": false}, ...},
     "max_tier": {"us-east": {"tier": "cached", "fraction": 0.25}, ...}}

`render_table(table)` is the one writer's form, `parse_table(raw, topology)` the one reader's
validation; `parse_table(render_table(t), topology) == t`. Pure: no clock, network or environment.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping

from contracts.store_keys import TABLE_KEY
from contracts.tiers import TIER_NAMES
from regions.errors import InputError
from regions.topology import Topology


class RoutingTableError(InputError):
    """The routing table in the control store is malformed; the edge keeps its last good table."""



@dataclass(frozen=True, kw_only=True)
class GeoRoute:
    """Where the users of `geography` go. `anonymous`: the listed regions are another geography's."""

    geography: str
    regions: Mapping[str, int]
    anonymous: bool = False

    def usable(self) -> dict[str, int]:
        return {r: w for r, w in self.regions.items() if w > 0}


@dataclass(frozen=True, kw_only=True)
class TierLimit:
    """Ask `region` for at most `tier` in `fraction` of its requests (capacity-aware steering)."""

    tier: str
    fraction: float = 1.0


@dataclass(frozen=True, kw_only=True)
class RoutingTable:
    version: int
    updated_at: float
    fail_static: bool
    geos: Mapping[str, GeoRoute]
    max_tier: Mapping[str, TierLimit] = field(default_factory=lambda: MappingProxyType({}))

    def route(self, geography: str) -> GeoRoute:
        return self.geos[geography]


def default_table(topology: Topology) -> RoutingTable:
    """Version 0: equal weights over each geography's own regions (the edge before any controller)."""
    geos = {g: GeoRoute(geography=g, regions=MappingProxyType({r.name: 1 for r in topology.regions_in(g)}))
            for g in sorted(topology.geographies)}
    return RoutingTable(version=0, updated_at=0.0, fail_static=False, geos=MappingProxyType(geos))


def _int(value: Any, where: str, *, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise RoutingTableError(where, f"must be a whole number of at least {minimum}, got {value!r}")
    return value


def _parse_limit(value: Any, where: str) -> TierLimit:
    raw = {"tier": value} if isinstance(value, str) else value
    if not isinstance(raw, Mapping) or not isinstance(raw.get("tier"), str):
        raise RoutingTableError(where, f'must be a tier name or {{"tier": ..., "fraction": ...}}, got {value!r}')
    if raw["tier"] not in TIER_NAMES:
        raise RoutingTableError(where, f"unknown tier {raw['tier']!r}; allowed: {', '.join(TIER_NAMES)}")
    fraction = raw.get("fraction", 1.0)
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 <= fraction <= 1:
        raise RoutingTableError(f"{where}.fraction", f"must be a number in [0, 1], got {fraction!r}")
    return TierLimit(tier=raw["tier"], fraction=float(fraction))


def parse_table(raw: str | bytes | Mapping[str, Any], topology: Topology) -> RoutingTable:
    """Validate a routing table. A personal route naming a region of another geography is refused
    (residency); geographies the table leaves out get equal weights over their own regions."""
    if isinstance(raw, (str, bytes)):
        try:
            raw = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise RoutingTableError(TABLE_KEY, f"is not valid JSON ({exc}); the controller writes it, check its log") from exc
    if not isinstance(raw, Mapping):
        raise RoutingTableError(TABLE_KEY, f"must be a JSON object, got {type(raw).__name__}")
    version = _int(raw.get("version"), "version")
    updated_at = raw.get("updated_at", 0.0)
    if isinstance(updated_at, bool) or not isinstance(updated_at, (int, float)) or not math.isfinite(updated_at):
        raise RoutingTableError("updated_at", f"must be epoch seconds, got {updated_at!r}")
    fail_static = raw.get("fail_static", False)
    if not isinstance(fail_static, bool):
        raise RoutingTableError("fail_static", f"must be true or false, got {fail_static!r}")
    geos_raw = raw.get("geos", {})
    if not isinstance(geos_raw, Mapping):
        raise RoutingTableError("geos", f"must be an object of geography -> route, got {geos_raw!r}")
    geos = dict(default_table(topology).geos)
    for geo, body in geos_raw.items():
        where = f"geos.{geo}"
        if geo not in topology.geographies:
            raise RoutingTableError(where, f"unknown geography; known: {', '.join(sorted(topology.geographies))}")
        if not isinstance(body, Mapping) or not isinstance(body.get("regions", {}), Mapping):
            raise RoutingTableError(where, 'must be {"regions": {region: weight}, "anonymous": bool}')
        anonymous = body.get("anonymous", False)
        if not isinstance(anonymous, bool):
            raise RoutingTableError(f"{where}.anonymous", f"must be true or false, got {anonymous!r}")
        weights: dict[str, int] = {}
        for region, weight in body.get("regions", {}).items():
            rwhere = f"{where}.regions.{region}"
            if region not in topology.regions:
                raise RoutingTableError(rwhere, f"unknown region; known: {', '.join(sorted(topology.regions))}")
            if not anonymous and topology.regions[region].geography != geo:
                raise RoutingTableError(rwhere, f"is in geography {topology.regions[region].geography!r}; a route "
                                                f"with user ids must stay in {geo!r} (set anonymous: true)")
            weights[region] = _int(weight, rwhere)
        geos[geo] = GeoRoute(geography=geo, regions=MappingProxyType(dict(sorted(weights.items()))), anonymous=anonymous)
    limits_raw = raw.get("max_tier", {})
    if not isinstance(limits_raw, Mapping):
        raise RoutingTableError("max_tier", f"must be an object of region -> tier, got {limits_raw!r}")
    limits = {}
    for region, value in limits_raw.items():
        if region not in topology.regions:
            raise RoutingTableError(f"max_tier.{region}", f"unknown region; known: {', '.join(sorted(topology.regions))}")
        limits[region] = _parse_limit(value, f"max_tier.{region}")
    return RoutingTable(version=version, updated_at=float(updated_at), fail_static=fail_static,
                        geos=MappingProxyType(geos), max_tier=MappingProxyType(limits))


def render_table(table: RoutingTable) -> dict[str, Any]:
    """The JSON document of `table` (what the controller writes under TABLE_KEY)."""
    return {"version": table.version, "updated_at": table.updated_at, "fail_static": table.fail_static,
            "geos": {g: {"regions": dict(route.regions), "anonymous": route.anonymous} for g, route in table.geos.items()},
            "max_tier": {r: {"tier": lim.tier, "fraction": lim.fraction} for r, lim in table.max_tier.items()}}
