"""Attribution: outcome events -> the impression that showed the item -> totals per variant. Pure.

Rule (last touch within a window). An outcome event (contracts.impressions.OUTCOME_OF_EVENT: a view
is a click, a cart an add-to-cart, a purchase a purchase with its price) of user U on item I at
time t is attributed to U's most recent impression that showed I at or before t, if it lies
within `window_s` (default 30 min: how long a slate can claim an outcome); when there is none,
to U's first impression showing I within `skew_s` (5 s) after t, which tolerates the client's
clock running behind the cell's (event `ts` is client time, impression `ts` the cell's). A slate
shown after the outcome never takes it from one shown before. An outcome no impression showed is not attributed (it
came from search, another page, or a slate older than the window). Events are counted once per
event id (an event may be in the region's log and, after a client retry to a peer, in a replica).

Per impression the outcome is binary (clicked or not, carted or not, purchased or not) plus its
revenue (the sum of attributed purchase prices), so that the rates are proportions of impressions
and the chi-squared test of online_metrics.significance applies. Totals also keep per-user sums
(see VariantTotals) for the variance of rates whose impressions are clustered by user; they merge
across regions (`VariantTotals.merge`).

Variant: `by="bundle_version"` groups by the bundle that ranked the answer; `by="arm"` groups by
"<experiment>/<arm>" (impressions in no experiment are left out; `experiment=` keeps one).
"""
from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, replace
from typing import Any, Iterable, Mapping

from contracts.events import Event
from contracts.impressions import OUTCOME_OF_EVENT, Impression
from regions.errors import InputError

__all__ = ["AttributionSettings", "VARIANT_KEYS", "VariantTotals", "attribute", "merge_totals", "variant_of"]

VARIANT_KEYS = ("bundle_version", "arm")


@dataclass(frozen=True)
class AttributionSettings:
    window_s: float = 1800.0
    """An outcome up to 30 min after the slate that showed the item is that slate's: a homepage
    visit, its clicks and the purchase in the same session fit well inside; longer windows mostly
    add outcomes the user would have had anyway."""
    skew_s: float = 5.0
    """Client clocks may be behind the cell's by a few seconds (contracts.events allows 300 s ahead,
    but a click before its slate by more than 5 s is not a reaction to it)."""

    def __post_init__(self) -> None:
        if not 0 < self.window_s <= 7 * 86400:
            raise InputError("window_s", f"must be in (0, 604800] seconds, got {self.window_s!r}")
        if not 0 <= self.skew_s <= 300:
            raise InputError("skew_s", f"must be in [0, 300] seconds, got {self.skew_s!r}")


PER_USER = ("clicked", "carted", "purchased", "revenue")
"""The outcomes whose per-user sums the totals keep (see VariantTotals)."""


@dataclass(frozen=True)
class VariantTotals:
    """What one variant's impressions led to. Rates are per impression.

    Impressions of one user are not independent trials (a user who likes what a variant shows
    clicks on many of its slates), so the totals also keep sums over users u of n_u^2 and, for each
    outcome x in PER_USER, of x_u^2 and x_u * n_u (n_u: the user's impressions, x_u: their
    outcomes): the cluster-robust variance online_metrics.significance needs, and sums still add
    up across regions and time slices."""

    variant: str
    impressions: int = 0
    clicked: int = 0
    """Impressions with at least one attributed click."""
    carted: int = 0
    purchased: int = 0
    clicks: int = 0
    """Attributed click events (several per impression possible)."""
    revenue: float = 0.0
    users: int = 0
    """Distinct users (per region: a user seen by two regions counts in each)."""
    n_sq: float = 0.0
    clicked_sq: float = 0.0
    clicked_x_n: float = 0.0
    carted_sq: float = 0.0
    carted_x_n: float = 0.0
    purchased_sq: float = 0.0
    purchased_x_n: float = 0.0
    revenue_sq: float = 0.0
    revenue_x_n: float = 0.0
    first_ts: float = 0.0
    last_ts: float = 0.0
    """Times of the variant's first and last impression (0 when none)."""

    @property
    def ctr(self) -> float:
        return self.clicked / self.impressions if self.impressions else 0.0

    @property
    def add_to_cart_rate(self) -> float:
        return self.carted / self.impressions if self.impressions else 0.0

    @property
    def conversion_rate(self) -> float:
        return self.purchased / self.impressions if self.impressions else 0.0

    @property
    def revenue_per_impression(self) -> float:
        return self.revenue / self.impressions if self.impressions else 0.0

    def count_of(self, metric: str) -> int:
        """Impressions with the outcome of a proportion metric (ctr, add_to_cart, conversion)."""
        return {"ctr": self.clicked, "add_to_cart": self.carted, "conversion": self.purchased}[metric]

    def outcome_sums(self, outcome: str) -> tuple[float, float, float]:
        """(sum of x_u, sum of x_u^2, sum of x_u * n_u) of an outcome in PER_USER."""
        return float(getattr(self, outcome)), getattr(self, f"{outcome}_sq"), getattr(self, f"{outcome}_x_n")

    def merge(self, other: "VariantTotals") -> "VariantTotals":
        """The totals of both (e.g. the same variant in two regions)."""
        if other.variant != self.variant:
            raise InputError("variant", f"cannot merge totals of {self.variant!r} and {other.variant!r}")
        firsts = [t for t in (self.first_ts, other.first_ts) if t > 0]
        added = {name: getattr(self, name) + getattr(other, name) for name in _COUNTS + _SUMS}
        return replace(self, **added, first_ts=min(firsts, default=0.0), last_ts=max(self.last_ts, other.last_ts))

    def to_dict(self) -> dict[str, float | int | str]:
        """The counts and sums exactly (`from_dict` reads them back: the cell's /v1/online-metrics
        answer) and the rates, rounded, for people."""
        return {"variant": self.variant, **{name: getattr(self, name) for name in _COUNTS + _SUMS},
                "first_ts": self.first_ts, "last_ts": self.last_ts,
                "ctr": round(self.ctr, 5), "add_to_cart_rate": round(self.add_to_cart_rate, 5),
                "conversion_rate": round(self.conversion_rate, 5),
                "revenue_per_impression": round(self.revenue_per_impression, 4)}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> "VariantTotals":
        """Totals from `to_dict`'s JSON; InputError naming the field when one is missing or not a
        non-negative number."""
        if not isinstance(raw, Mapping) or not isinstance(raw.get("variant"), str) or not raw["variant"]:
            raise InputError("variant", "each totals object needs a non-empty string `variant`")
        values: dict[str, Any] = {}
        for name in _COUNTS + _SUMS + ("first_ts", "last_ts"):
            value = raw.get(name, 0)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise InputError(name, f"must be a non-negative number, got {value!r}")
            if name in _COUNTS and value != int(value):
                raise InputError(name, f"must be a whole number, got {value!r}")
            values[name] = int(value) if name in _COUNTS else float(value)
        return cls(variant=raw["variant"], **values)


_COUNTS = ("impressions", "clicked", "carted", "purchased", "clicks", "users")
_SUMS = ("revenue", "n_sq", *(f"{o}_{k}" for o in PER_USER for k in ("sq", "x_n")))


def variant_of(impression: Impression, by: str) -> str | None:
    """The impression's variant key, or None when it belongs to no variant of that kind."""
    if by == "bundle_version":
        return impression.bundle_version
    if by == "arm":
        return f"{impression.experiment}/{impression.arm}" if impression.experiment else None
    raise InputError("by", f"unknown variant key {by!r}; allowed: {', '.join(VARIANT_KEYS)}")


@dataclass
class _Outcome:
    clicks: int = 0
    carted: bool = False
    purchased: bool = False
    revenue: float = 0.0


def attribute(impressions: Iterable[Impression], events: Iterable[Event], *, by: str = "bundle_version",
              experiment: str | None = None, settings: AttributionSettings = AttributionSettings()) -> dict[str, VariantTotals]:
    """Totals per variant of `impressions`, with `events` attributed to them (see the module docstring).
    Events of other types (impression) are ignored; `experiment` keeps only that experiment's impressions."""
    if by not in VARIANT_KEYS:
        raise InputError("by", f"unknown variant key {by!r}; allowed: {', '.join(VARIANT_KEYS)}")
    kept: list[tuple[Impression, str]] = []
    seen_ids: set[str] = set()
    for imp in impressions:
        key = variant_of(imp, by)
        if key is None or (experiment is not None and imp.experiment != experiment) or imp.impression_id in seen_ids:
            continue
        seen_ids.add(imp.impression_id)
        kept.append((imp, key))
    kept.sort(key=lambda pair: pair[0].ts)
    shown: dict[tuple[str, str], tuple[list[float], list[int]]] = {}
    for n, (imp, _) in enumerate(kept):
        for item in dict.fromkeys(imp.items):
            times, rows = shown.setdefault((imp.user_id, item), ([], []))
            times.append(imp.ts)
            rows.append(n)
    outcomes: dict[int, _Outcome] = {}
    counted: set[str] = set()
    for event in events:
        outcome = OUTCOME_OF_EVENT.get(event.type)
        if outcome is None or event.event_id in counted:
            continue
        times_rows = shown.get((event.user_id, event.item_id))
        if times_rows is None:
            continue
        times, rows = times_rows
        last = bisect.bisect_right(times, event.ts) - 1  # the latest slate shown at or before the outcome
        if last >= 0 and times[last] >= event.ts - settings.window_s:
            chosen = last
        elif last + 1 < len(times) and times[last + 1] <= event.ts + settings.skew_s:
            chosen = last + 1  # none before it: the client's clock is behind, the next slate within the skew
        else:
            continue
        counted.add(event.event_id)
        got = outcomes.setdefault(rows[chosen], _Outcome())
        if outcome == "click":
            got.clicks += 1
        elif outcome == "add_to_cart":
            got.carted = True
        else:
            got.purchased = True
            got.revenue += float(event.price)
    per_user: dict[tuple[str, str], list[float]] = {}
    spans: dict[str, list[float]] = {}
    clicks: dict[str, int] = {}
    for n, (imp, key) in enumerate(kept):
        got = outcomes.get(n) or _Outcome()
        u = per_user.setdefault((key, imp.user_id), [0.0, 0.0, 0.0, 0.0, 0.0])  # n, clicked, carted, purchased, revenue
        u[0] += 1
        u[1] += got.clicks > 0
        u[2] += got.carted
        u[3] += got.purchased
        u[4] += got.revenue
        clicks[key] = clicks.get(key, 0) + got.clicks
        span = spans.setdefault(key, [imp.ts, imp.ts])
        span[1] = imp.ts
    acc: dict[str, dict[str, float]] = {}
    for (key, _), (n_u, *xs) in per_user.items():
        a = acc.setdefault(key, {name: 0.0 for name in _COUNTS + _SUMS})
        a["impressions"] += n_u
        a["users"] += 1
        a["n_sq"] += n_u * n_u
        for outcome, x in zip(PER_USER, xs):
            a[outcome] += x
            a[f"{outcome}_sq"] += x * x
            a[f"{outcome}_x_n"] += x * n_u
    return {key: VariantTotals(variant=key, **{name: (int(round(a[name])) if name in _COUNTS else float(a[name]))
                                               for name in _COUNTS + _SUMS if name != "clicks"},
                               clicks=clicks[key], first_ts=spans[key][0], last_ts=spans[key][1])
            for key, a in sorted(acc.items())}


def merge_totals(parts: Iterable[Mapping[str, VariantTotals]]) -> dict[str, VariantTotals]:
    """Per-variant totals of several regions (or time slices) added up."""
    out: dict[str, VariantTotals] = {}
    for part in parts:
        for key, totals in part.items():
            out[key] = out[key].merge(totals) if key in out else totals
    return dict(sorted(out.items()))
