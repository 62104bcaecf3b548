"""What a user has already consumed, and what each surface may therefore not show again. Pure.

A user's seen set is {item_id: ts of the latest qualifying event}: compact (capped at
`SeenPolicy.max_items`, newest kept), kept beside the 20-item session state (online: the sorted
set regions.redis_keys.seen_items(user) in the user's home region; offline: replayed from the
events by `seen_sets`). A surface's policy says which items of that set to exclude at `now`:

    excluded(seen, now, policy, parent_of)   items whose latest qualifying event is younger than
                                             window_days, unless their parent category is
                                             repeatable (consumables: milk is bought every week)

Training writes the policies into the bundle (seen_policy.json); the offline evaluation and the
cell apply that same file with this same function, so offline and online exclusions agree.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Mapping

import numpy as np

from contracts.events import EVENT_TYPES
from regions.errors import InputError

DAY = 86400.0
SURFACES = ("home", "similar", "cart")


@dataclass(frozen=True)
class SeenPolicy:
    """One surface's rule; each default carries its reason."""

    kinds: tuple[str, ...] = ("purchase",)
    """Events that make an item 'consumed': a view is not a reason to hide an item."""
    window_days: float = 90.0
    """A durable good bought in the last quarter is not bought again; math.inf = never again."""
    repeatable_parents: tuple[str, ...] = ()
    """Parent categories of consumables, whose items may be recommended again at once."""
    repeat_all: bool = False
    """Every item is a consumable (a grocery catalog): nothing is excluded."""
    max_items: int = 500
    """Seen items kept per user (newest first): bounded memory in Redis, months of purchases."""

    def __post_init__(self) -> None:
        bad = [k for k in self.kinds if k not in EVENT_TYPES]
        if bad:
            raise InputError("seen_policy.kinds", f"unknown event type(s) {bad}; allowed: {', '.join(EVENT_TYPES)}")
        if not (self.window_days > 0):
            raise InputError("seen_policy.window_days", f"must be > 0 (math.inf = forever), got {self.window_days}")
        if self.max_items < 1:
            raise InputError("seen_policy.max_items", f"must be >= 1, got {self.max_items}")

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["window_days"] = None if math.isinf(self.window_days) else self.window_days
        return d

    @staticmethod
    def from_json(raw: Mapping[str, Any]) -> "SeenPolicy":
        allowed = set(SeenPolicy.__dataclass_fields__)
        unknown = sorted(set(raw) - allowed)
        if unknown:
            raise InputError("seen_policy", f"unknown field(s) {unknown}; allowed: {', '.join(sorted(allowed))}")
        d = dict(raw)
        if "window_days" in d:
            d["window_days"] = math.inf if d["window_days"] is None else float(d["window_days"])
        for key in ("kinds", "repeatable_parents"):
            if key in d:
                d[key] = tuple(d[key])
        return SeenPolicy(**d)


@dataclass(frozen=True)
class SeenPolicies:
    """The policy of each surface (home page, similar items, cart)."""

    home: SeenPolicy = field(default_factory=SeenPolicy)
    similar: SeenPolicy = field(default_factory=SeenPolicy)
    cart: SeenPolicy = field(default_factory=SeenPolicy)

    @staticmethod
    def same(policy: SeenPolicy) -> "SeenPolicies":
        return SeenPolicies(home=policy, similar=policy, cart=policy)

    def of(self, surface: str) -> SeenPolicy:
        if surface not in SURFACES:
            raise InputError("surface", f"unknown surface {surface!r}; allowed: {', '.join(SURFACES)}")
        return getattr(self, surface)

    @property
    def kinds(self) -> tuple[str, ...]:
        """Events recorded in the seen set: the union over surfaces."""
        return tuple(k for k in EVENT_TYPES if any(k in self.of(s).kinds for s in SURFACES))

    @property
    def max_items(self) -> int:
        return max(self.of(s).max_items for s in SURFACES)

    def to_json(self) -> dict[str, Any]:
        return {s: self.of(s).to_json() for s in SURFACES}

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=1, sort_keys=True)

    @staticmethod
    def from_json(raw: Mapping[str, Any]) -> "SeenPolicies":
        unknown = sorted(set(raw) - set(SURFACES))
        if unknown:
            raise InputError("seen_policy", f"unknown surface(s) {unknown}; allowed: {', '.join(SURFACES)}")
        return SeenPolicies(**{s: SeenPolicy.from_json(raw[s]) for s in SURFACES if s in raw})


def record(seen: Mapping[str, float], *, event_type: str, item_id: str, ts: float,
           policies: SeenPolicies) -> dict[str, float]:
    """The seen set after one event (unchanged when the event kind is not recorded)."""
    out = dict(seen)
    if event_type not in policies.kinds:
        return out
    out[item_id] = max(ts, out.get(item_id, -math.inf))
    if len(out) > policies.max_items:
        newest = sorted(out.items(), key=lambda kv: (-kv[1], kv[0]))[: policies.max_items]
        out = dict(newest)
    return out


def excluded(seen: Mapping[str, float], *, now: float, policy: SeenPolicy,
             parent_of: Callable[[str], str | None]) -> frozenset[str]:
    """Items of `seen` that `policy` forbids showing at `now`."""
    if policy.repeat_all or not seen:
        return frozenset()
    horizon = now - policy.window_days * DAY
    repeatable = set(policy.repeatable_parents)
    return frozenset(i for i, ts in seen.items() if ts > horizon and (not repeatable or parent_of(i) not in repeatable))


ONLINE_KINDS = ("view", "cart", "purchase")
"""Events the feature updater records in the online seen set: impressions are too many to keep
(four per session) and say nothing was consumed. A policy naming "impression" (the MovieLens
import's "rated and disliked") therefore applies offline only."""


def member(event_type: str, item_id: str) -> str:
    """The online seen set's member for an event (regions.redis_keys.seen_items)."""
    return f"{event_type}:{item_id}"


def from_members(pairs, *, kinds) -> dict[str, float]:
    """[(member, ts)] as stored online -> {item_id: latest ts} over the events of `kinds`."""
    out: dict[str, float] = {}
    wanted = set(kinds)
    for raw, ts in pairs:
        text = raw.decode() if isinstance(raw, bytes) else str(raw)
        kind, _, item = text.partition(":")
        if kind in wanted and item:
            out[item] = max(float(ts), out.get(item, -math.inf))
    return out


def seen_sets(*, users: np.ndarray, items: np.ndarray, kinds: np.ndarray, ts: np.ndarray,
              item_ids, policies: SeenPolicies) -> dict[int, dict[str, float]]:
    """Offline: {user index: seen set} from event columns (the same content `record` builds event by event)."""
    codes = [EVENT_TYPES.index(k) for k in policies.kinds]
    keep = np.isin(kinds, codes)
    u, i, t = users[keep], items[keep], ts[keep]
    order = np.lexsort((-t, u))  # per user, newest first
    out: dict[int, dict[str, float]] = {}
    cap = policies.max_items
    for n in order:
        per = out.setdefault(int(u[n]), {})
        key = item_ids[int(i[n])]
        if key not in per and len(per) < cap:
            per[key] = float(t[n])
    return out
