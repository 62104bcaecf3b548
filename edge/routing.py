"""The edge's routing decisions, pure: plan where a request goes.

Inputs are the routing table (contracts.routing_table, parsed from the control store key
`routing/table` written by the controller leader; docs/interfaces.md), the topology and a routing key (the user id); out comes a
`RoutePlan`, the ordered attempts the edge makes:

    1. up to `personal_tries` regions of the user's home geography, with the user id, chosen by
       weighted rendezvous hashing on the user id over the regions with weight > 0 (the same
       user lands on the same region while the weights allow it: its caches stay warm);
    2. then up to `cross_geo_tries` regions of another geography, ANONYMOUSLY (no user id):
       the table's cross-geography route when it marks the geography `anonymous`, else the
       other geographies' own weights;
    3. then the edge's last-resort popularity list (not an attempt: the edge serves it).

Events never leave the home geography: `plan_events` lists only its regions.
No clock, network or environment here (the settings are edge.settings.EdgeSettings).
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Mapping

from contracts.routing_table import RoutingTable
from contracts.tiers import TIER_NAMES
from edge.ejection import demote
from edge.settings import EdgeSettings
from regions.topology import Topology


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
    if limit is None or limit.tier == TIER_NAMES[0]:
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
                 personal: bool, settings: EdgeSettings, demoted: frozenset[str] = frozenset()) -> RoutePlan:
    """Where a read goes, in order (see the module docstring). `personal`: the request has a user id.
    `demoted`: cells this edge has ejected (edge.ejection): last of their part of the plan, so a
    geography's other region gets the first attempt (and a demoted cell may fall off `tries`)."""
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
        add(demote(rendezvous_order(key, route.usable()), demoted), anonymous=not personal,
            tries=settings.personal_tries, first_role="primary")
    if route.anonymous:
        elsewhere = route.usable()
    else:
        elsewhere = {}
        for geo in sorted(table.geos):
            other = table.geos[geo]
            if geo != home_geography and not other.anonymous:
                elsewhere.update(other.usable())
    add(demote(rendezvous_order(key, elsewhere), demoted), anonymous=True, tries=settings.cross_geo_tries,
        first_role="cross-geo")
    return RoutePlan(home_geography=home_geography, attempts=tuple(attempts))


def plan_events(table: RoutingTable, topology: Topology, *, key: str, home_geography: str,
                demoted: frozenset[str] = frozenset()) -> tuple[str, ...]:
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
    return demote(weighted + rest, demoted)


def attempt_budget_ms(remaining_ms: float, *, attempts_left: int, settings: EdgeSettings,
                      share: float | None = None) -> float:
    """What one attempt may spend: the whole rest for the last one, else `share` of it (reads:
    `first_attempt_share`; event batches pass `events_first_attempt_share`). 0 when less than
    `min_attempt_ms` would be left for it (skip to the last resort)."""
    share = settings.first_attempt_share if share is None else share
    budget = remaining_ms if attempts_left <= 1 else remaining_ms * share
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
    geography: str = ""
    """The user's home geography (the edge computed it: the cell need not); "" when anonymous."""


def cell_call(attempt: Attempt, *, surface: str, user_id: str | None, product_id: str = "",
              cart_items: tuple[str, ...] = (), count: int, budget_ms: float, settings: EdgeSettings,
              home_geography: str = "") -> CellCall:
    """The request for `attempt`; an anonymous attempt never carries the user id nor its geography."""
    anonymous = attempt.anonymous or not user_id
    return CellCall(region=attempt.region, surface=surface, user_id="" if attempt.anonymous else (user_id or ""),
                    product_id=product_id, cart_items=cart_items, count=count,
                    deadline_ms=max(1.0, budget_ms - settings.cell_margin_ms), max_tier=attempt.max_tier,
                    anonymous=anonymous, geography="" if anonymous else home_geography)
