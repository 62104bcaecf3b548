"""The edge's routing decisions, pure: parse the routing table, plan where a request goes.

Inputs are the routing table (control store key `routing/table`, written by the controller
leader; docs/interfaces.md), the topology and a routing key (the user id); out comes a
`RoutePlan`, the ordered attempts the edge makes:

    1. up to `personal_tries` regions of the user's home geography, with the user id, chosen by
       weighted rendezvous hashing on the user id over the regions with weight > 0 (the same
       user lands on the same region while the weights allow it: its caches stay warm);
    2. then up to `cross_geo_tries` regions of another geography, ANONYMOUSLY (no user id):
       the table's cross-geography route when it marks the geography `anonymous`, else the
       other geographies' own weights;
    3. then the edge's last-resort popularity list (not an attempt: the edge serves it).

Events never leave the home geography: `plan_events` lists only its regions.
No clock, network or environment here; the environment is read by the CLI, which hands the
mapping to `settings_from_env`.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field, fields, replace
from types import MappingProxyType
from typing import Any, Mapping

from regions.errors import InputError
from regions.topology import Topology

TABLE_KEY = "routing/table"
"""Control store key of the routing table (docs/interfaces.md)."""
TIERS: tuple[str, ...] = ("full", "cached", "segment", "popularity")
"""The cell's degradation ladder, most expensive first (same names as the cell answer's `tier`)."""
ENV_PREFIX = "REGIONCTL_EDGE_"


class RoutingTableError(InputError):
    """The routing table in the control store is malformed; the edge keeps its last good table."""


@dataclass(frozen=True, kw_only=True)
class EdgeSettings:
    """How the edge spends a request's budget and watches the table; each default carries its reason."""

    poll_interval_s: float = 0.15
    """Read `routing/table` every 150 ms: a new table is in use well within the 1 s steering promise."""
    personal_tries: int = 2
    """The chosen region, then ONE retry on another region of the same geography."""
    cross_geo_tries: int = 1
    """One anonymous ask to another geography before the edge's own popularity list."""
    first_attempt_share: float = 0.6
    """A slow first cell may use 60 % of the budget, leaving time for the retry (and its ladder)."""
    min_attempt_ms: float = 5.0
    """Below 5 ms a cell cannot answer over gRPC; serve the last-resort list instead of trying."""
    cell_margin_ms: float = 3.0
    """The cell is told its deadline 3 ms before the gRPC deadline, so its answer can travel back."""
    events_deadline_ms: float = 1000.0
    """Event writes are not on the homepage path; a second covers a Redis AOF write and one retry."""
    default_count: int = 20
    """Homepage slate length when the client does not say."""
    max_count: int = 100
    """Same bound as a cell's HTTP API: `count` outside 1..100 is refused with 422."""
    transport: str = "grpc"
    """gRPC to the cells (one HTTP/2 connection each, deadlines built in); "http" uses their HTTP API."""

    def __post_init__(self) -> None:
        for name in ("poll_interval_s", "min_attempt_ms", "events_deadline_ms"):
            if not getattr(self, name) > 0:
                raise InputError(name, f"must be greater than 0, got {getattr(self, name)!r}")
        if self.cell_margin_ms < 0:
            raise InputError("cell_margin_ms", f"must be 0 or more, got {self.cell_margin_ms!r}")
        for name in ("personal_tries", "cross_geo_tries", "default_count", "max_count"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < (1 if "count" in name else 0):
                raise InputError(name, f"must be a whole number of at least {1 if 'count' in name else 0}, got {value!r}")
        if not 0 < self.first_attempt_share <= 1:
            raise InputError("first_attempt_share", f"must be in (0, 1], got {self.first_attempt_share!r}")
        if self.transport not in ("grpc", "http"):
            raise InputError("transport", f"{self.transport!r} is not a transport; use grpc or http")
        if self.default_count > self.max_count:
            raise InputError("default_count", f"must not exceed max_count ({self.max_count}), got {self.default_count}")


def settings_from_env(environ: Mapping[str, str], base: EdgeSettings | None = None) -> EdgeSettings:
    """`base` with `REGIONCTL_EDGE_<FIELD>` values of `environ` applied; unknown keys are refused."""
    base = base or EdgeSettings()
    known = {f.name: getattr(base, f.name) for f in fields(base)}
    changes: dict[str, Any] = {}
    for key in sorted(k for k in environ if k.startswith(ENV_PREFIX)):
        name = key[len(ENV_PREFIX):].lower()
        if name not in known:
            allowed = ", ".join(ENV_PREFIX + n.upper() for n in sorted(known))
            raise InputError(key, f"unknown edge setting; allowed: {allowed}")
        kind = type(known[name])
        try:
            changes[name] = kind(environ[key])
        except ValueError as exc:
            raise InputError(key, f"must be {'an integer' if kind is int else 'a number'}, got {environ[key]!r}") from exc
    return replace(base, **changes)


# -- the routing table ---------------------------------------------------------------------------

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
    if raw["tier"] not in TIERS:
        raise RoutingTableError(where, f"unknown tier {raw['tier']!r}; allowed: {', '.join(TIERS)}")
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


# -- choosing regions ------------------------------------------------------------------------------

def unit_hash(*parts: str) -> float:
    """A stable number in (0, 1) from the parts (blake2b: the same on every edge and every run)."""
    digest = hashlib.blake2b("\x1f".join(parts).encode(), digest_size=8).digest()
    return (int.from_bytes(digest, "big") + 0.5) / 2.0**64


def rendezvous_order(key: str, weights: Mapping[str, int]) -> tuple[str, ...]:
    """Regions with weight > 0, best first, by weighted rendezvous hashing on `key`.

    Score = w / -ln(u(key, region)); the first region is chosen with probability w / sum(w), and
    changing one region's weight only moves keys to or from that region.
    """
    scored = [(w / -math.log(unit_hash(key, r)), r) for r, w in weights.items() if w > 0]
    return tuple(r for _, r in sorted(scored, key=lambda s: (-s[0], s[1])))


def tier_for(table: RoutingTable, *, region: str, key: str) -> str:
    """The `max_tier` to send: the region's limit for its `fraction` of keys, else "" (full ladder)."""
    limit = table.max_tier.get(region)
    if limit is None or limit.tier == TIERS[0]:
        return ""
    return limit.tier if unit_hash(key, "max_tier", region) < limit.fraction else ""


@dataclass(frozen=True, kw_only=True)
class Attempt:
    region: str
    anonymous: bool
    """True: the request carries no user id (another geography, or no user at all)."""
    max_tier: str
    role: str
    """"primary", "retry" or "cross-geo": for the answer's `tried` list and the metrics."""


@dataclass(frozen=True, kw_only=True)
class RoutePlan:
    home_geography: str
    attempts: tuple[Attempt, ...]


def plan_request(table: RoutingTable, topology: Topology, *, key: str, home_geography: str,
                 personal: bool, settings: EdgeSettings) -> RoutePlan:
    """Where a read goes, in order (see the module docstring). `personal`: the request has a user id."""
    route = table.route(home_geography)
    attempts: list[Attempt] = []
    seen: set[str] = set()

    def add(regions: tuple[str, ...], *, anonymous: bool, tries: int, first_role: str) -> None:
        for region in [r for r in regions if r not in seen][:tries]:
            seen.add(region)
            role = first_role if not attempts else ("retry" if first_role == "primary" else first_role)
            attempts.append(Attempt(region=region, anonymous=anonymous, max_tier=tier_for(table, region=region, key=key),
                                    role=role))

    if not route.anonymous:
        add(rendezvous_order(key, route.usable()), anonymous=not personal, tries=settings.personal_tries,
            first_role="primary")
    if route.anonymous:
        elsewhere = route.usable()
    else:
        elsewhere = {}
        for geo in sorted(table.geos):
            other = table.geos[geo]
            if geo != home_geography and not other.anonymous:
                elsewhere.update(other.usable())
    add(rendezvous_order(key, elsewhere), anonymous=True, tries=settings.cross_geo_tries, first_role="cross-geo")
    return RoutePlan(home_geography=home_geography, attempts=tuple(attempts))


def plan_events(table: RoutingTable, topology: Topology, *, key: str, home_geography: str) -> tuple[str, ...]:
    """Regions that may store `key`'s events, in order: only the home geography's, never another's.

    First the regions the table gives weight (rendezvous order, as for reads); then the home
    geography's other regions (drained or off the table) as a last chance to store durably rather
    than refuse: a drained region still replicates to its peers. Empty only for a geography
    without regions, which the topology does not allow.
    """
    route = table.route(home_geography)
    own = {r.name for r in topology.regions_in(home_geography)}
    weighted = rendezvous_order(key, {r: w for r, w in route.usable().items() if r in own}) if not route.anonymous else ()
    rest = rendezvous_order(key, {r: 1 for r in own if r not in weighted})
    return weighted + rest


def attempt_budget_ms(remaining_ms: float, *, attempts_left: int, settings: EdgeSettings) -> float:
    """What one attempt may spend: the whole rest for the last one, else `first_attempt_share` of it.
    0 when less than `min_attempt_ms` would be left for it (skip to the last resort)."""
    budget = remaining_ms if attempts_left <= 1 else remaining_ms * settings.first_attempt_share
    return budget if budget >= settings.min_attempt_ms else 0.0


@dataclass(frozen=True, kw_only=True)
class CellCall:
    """The fields of one RecommendRequest the edge sends (transport-independent)."""

    region: str
    surface: str
    user_id: str
    product_id: str
    cart_items: tuple[str, ...]
    count: int
    deadline_ms: float
    max_tier: str
    anonymous: bool


def cell_call(attempt: Attempt, *, surface: str, user_id: str | None, product_id: str = "",
              cart_items: tuple[str, ...] = (), count: int, budget_ms: float, settings: EdgeSettings) -> CellCall:
    """The request for `attempt`; an anonymous attempt never carries the user id."""
    return CellCall(region=attempt.region, surface=surface, user_id="" if attempt.anonymous else (user_id or ""),
                    product_id=product_id, cart_items=cart_items, count=count,
                    deadline_ms=max(1.0, budget_ms - settings.cell_margin_ms), max_tier=attempt.max_tier,
                    anonymous=attempt.anonymous or not user_id)
