"""A user's session state, and how one event changes it. Pure.

Training replays historical events through `apply_event` to build the state a user had at
each impression; the nearline feature updater applies live events with the same function; the
ranker's features are computed from this state (serving.features). One definition, no skew.

Stored in Redis as the hash regions.redis_keys.user_features(user_id) via `to_hash`/`from_hash`.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from statistics import median
from typing import Any, Callable, Mapping

import orjson

RECENT_ITEMS = 20
"""The requirement: last 20 items viewed."""
CART_ITEMS = 20
"""Carts beyond 20 items are rare; the oldest fall off."""
PRICE_HISTORY = 20
"""Median purchase price over the last 20 purchases: robust and bounded."""
AFFINITY_HALF_LIFE_S = 3 * 86400.0
"""Category interest fades over days, not minutes: a 3-day half-life by default; a data set may
declare its own (serving.time_constants), which every caller then passes as `half_life_s`."""

_WEIGHTS = {"impression": 0.0, "view": 1.0, "cart": 3.0, "purchase": 5.0}


@dataclass(frozen=True)
class UserState:
    recent_items: tuple[str, ...] = ()
    """Most recent first; views, carts and purchases count as viewed."""
    category_affinity: Mapping[str, float] = field(default_factory=dict)
    """Decayed weighted interaction count per category, as of `updated_at`."""
    cart: tuple[str, ...] = ()
    purchase_prices: tuple[float, ...] = ()
    updated_at: float = 0.0
    events_seen: int = 0

    @property
    def median_purchase_price(self) -> float:
        return float(median(self.purchase_prices)) if self.purchase_prices else 0.0

    def affinity_at(self, now: float, half_life_s: float = AFFINITY_HALF_LIFE_S) -> dict[str, float]:
        """Category affinity decayed to time `now`."""
        factor = _decay(now - self.updated_at, half_life_s)
        return {c: v * factor for c, v in self.category_affinity.items()}

    def to_hash(self) -> dict[str, str]:
        return {
            "recent_items": json.dumps(list(self.recent_items)),
            "category_affinity": json.dumps(dict(self.category_affinity)),
            "cart": json.dumps(list(self.cart)),
            "purchase_prices": json.dumps(list(self.purchase_prices)),
            "updated_at": repr(self.updated_at),
            "events_seen": str(self.events_seen),
        }

    @classmethod
    def from_hash(cls, raw: Mapping[str, str] | Mapping[bytes, bytes]) -> "UserState":
        if not raw:
            return cls()
        d = {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v) for k, v in raw.items()}
        return cls(
            recent_items=tuple(_loads(d.get("recent_items", "[]"))),
            category_affinity=dict(_loads(d.get("category_affinity", "{}"))),
            cart=tuple(_loads(d.get("cart", "[]"))),
            purchase_prices=tuple(float(p) for p in _loads(d.get("purchase_prices", "[]"))),
            updated_at=float(d.get("updated_at", 0.0)),
            events_seen=int(d.get("events_seen", 0)),
        )


def _loads(text: str) -> Any:
    """orjson on the request path; the standard parser for what orjson refuses (NaN, huge ints)."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def _decay(elapsed_s: float, half_life_s: float) -> float:
    return math.pow(0.5, max(elapsed_s, 0.0) / half_life_s)


def _push(items: tuple[str, ...], item: str, limit: int) -> tuple[str, ...]:
    return ((item,) + tuple(i for i in items if i != item))[:limit]


def apply_event(
    state: UserState, *, event_type: str, item_id: str, ts: float,
    category_of: Callable[[str], str | None], price: float = 0.0, half_life_s: float = AFFINITY_HALF_LIFE_S,
) -> UserState:
    """The state after one event. Events older than the state still count, without moving time back.
    `half_life_s`: the interest fade of the data set (serving.time_constants)."""
    weight = _WEIGHTS.get(event_type, 0.0)
    now = max(ts, state.updated_at)
    if weight == 0.0:
        return replace(state, events_seen=state.events_seen + 1)
    affinity = state.affinity_at(now, half_life_s)
    category = category_of(item_id)
    if category is not None:
        affinity[category] = affinity.get(category, 0.0) + weight * _decay(now - ts, half_life_s)
    recent = _push(state.recent_items, item_id, RECENT_ITEMS)
    cart = state.cart
    prices = state.purchase_prices
    if event_type == "cart":
        cart = _push(cart, item_id, CART_ITEMS)
    elif event_type == "purchase":
        cart = tuple(i for i in cart if i != item_id)
        if price > 0:
            prices = (prices + (float(price),))[-PRICE_HISTORY:]
    return UserState(
        recent_items=recent, category_affinity=affinity, cart=cart, purchase_prices=prices,
        updated_at=now, events_seen=state.events_seen + 1,
    )
