"""Business rules on a ranked list: stock, exclusions, duplicates, diversity, pins, boosts. Pure.

Applied by the ladder to the output of EVERY tier (full, cached, segment, popularity):

1. Candidates are the ranked items, then the ranked reserve (further down the same list). An
   item id seen a second time is dropped (its first occurrence wins, ranked before reserve).
2. Dropped: items unknown to the catalog (nothing to show), excluded items (the user's cart,
   already purchased), and out-of-stock items. Stock: the freshest `stock` mapping
   (item -> bool or count) wins; an item missing from it is trusted to the catalog's stock.
3. Boosts multiply the score per category and per brand (both apply); the ranked part and the
   reserve are each re-sorted by boosted score (stable), the reserve staying behind. A negative
   score (raw ranker margins) is divided instead, so a boost > 1 always moves an item up.
4. Diversity: at most `max_per_category` per category and `max_per_brand` per brand, taken
   greedily in candidate order. When that leaves the slate short, the caps are relaxed one step
   at a time (+1 each) over the candidates left, so the slate keeps its length while staying
   as diverse as the candidates allow. Pins count towards the caps.
5. Pins: item -> 0-based position. A pin is honoured when its item is in the catalog, in stock
   and not excluded (exclusions win: a campaign never re-shows what the user just bought), and
   its position is inside the slate; it need not be among the candidates. When the slate is
   full every active pin sits at its position; on a short slate it moves up to the end.

Result length = min(count, distinct available items), where available means in the catalog, in
stock and not excluded, among candidates and active pins. No duplicates, no out-of-stock item.
"""
from __future__ import annotations

import math
from collections import Counter as Tally
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Callable, Collection, Iterable, Iterator, Mapping, Sequence

from contracts.serving_plan import RULE_KEYS
from fallback_tiers.tiers import ScoredItem, TierOutput
from regions.errors import InputError

StockValue = bool | int
"""True/False, or a unit count (> 0 means in stock)."""


@dataclass(frozen=True)
class ItemMeta:
    category: str
    brand: str
    stock: StockValue = True
    """The catalog's stock (items.json); fresher values come in the `stock` mapping."""


@dataclass(frozen=True)
class RerankRules:
    max_per_category: int = 3
    """Three of one category in a 20-item homepage reads as a choice, four as a wall."""
    max_per_brand: int = 2
    """Brands are narrower than categories: two of one brand before others get a turn."""
    pins: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    """item id -> 0-based position (merchandising campaigns); none by default."""
    category_boosts: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))
    """category -> score multiplier (> 0); none by default: the ranker's order stands."""
    brand_boosts: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))
    """brand -> score multiplier (> 0); none by default."""

    def __post_init__(self) -> None:
        for name in ("max_per_category", "max_per_brand"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(name, f"{value!r} is not allowed; use an integer >= 1.")
        seen: dict[int, str] = {}
        for item, position in self.pins.items():
            if isinstance(position, bool) or not isinstance(position, int) or position < 0:
                raise InputError(f"pins[{item}]", f"{position!r} is not a position; use an integer >= 0.")
            if position in seen:
                raise InputError(f"pins[{item}]", f"position {position} is already pinned to {seen[position]!r}; "
                                                  "give each pinned item its own position.")
            seen[position] = item
        for name in ("category_boosts", "brand_boosts"):
            for key, boost in getattr(self, name).items():
                if not (isinstance(boost, (int, float)) and math.isfinite(boost) and boost > 0):
                    raise InputError(f"{name}[{key}]", f"{boost!r} is not allowed; use a finite multiplier > 0.")


    def with_overrides(self, overrides: Mapping[str, object]) -> "RerankRules":
        """These rules with some fields replaced (an experiment arm's `rules`, contracts.serving_plan.RULE_KEYS);
        InputError naming the field for an unknown key or a bad value."""
        return rules_from_mapping(overrides, base=self)


def rules_from_mapping(raw: Mapping[str, object], *, base: RerankRules = RerankRules()) -> RerankRules:
    """RerankRules from decoded JSON: caps are integers, pins item -> position, boosts key -> multiplier."""
    if not isinstance(raw, Mapping):
        raise InputError("rules", "must be an object")
    unknown = set(raw) - set(RULE_KEYS)
    if unknown:
        raise InputError(f"rules.{sorted(unknown)[0]}", f"unknown rule; allowed: {', '.join(RULE_KEYS)}")
    fields: dict[str, object] = {}
    for name in ("pins", "category_boosts", "brand_boosts"):
        if name in raw:
            value = raw[name]
            if not isinstance(value, Mapping):
                raise InputError(f"rules.{name}", "must be an object")
            fields[name] = MappingProxyType(dict(value))
    for name in ("max_per_category", "max_per_brand"):
        if name in raw:
            fields[name] = raw[name]
    try:
        return replace(base, **fields)  # type: ignore[arg-type]
    except InputError as exc:
        raise InputError(f"rules.{exc.field}", exc.reason) from exc


def in_stock(item_id: str, *, catalog: Mapping[str, ItemMeta], stock: Mapping[str, StockValue]) -> bool:
    """Freshest stock first, the catalog's otherwise; an item the catalog lacks is not sellable."""
    meta = catalog.get(item_id)
    if meta is None:
        return False
    value = stock.get(item_id, meta.stock)
    return bool(value) if isinstance(value, bool) else value > 0


def boosted(score: float, meta: ItemMeta, rules: RerankRules) -> float:
    factor = rules.category_boosts.get(meta.category, 1.0) * rules.brand_boosts.get(meta.brand, 1.0)
    if math.isnan(score):
        return -math.inf
    return score * factor if score >= 0 else score / factor


def rerank(
    ranked: Sequence[ScoredItem],
    *,
    count: int,
    catalog: Mapping[str, ItemMeta],
    stock: Mapping[str, StockValue] | None = None,
    rules: RerankRules | None = None,
    reserve: Sequence[ScoredItem] = (),
    exclude: Collection[str] = frozenset(),
) -> tuple[ScoredItem, ...]:
    """The slate: at most `count` items after every rule (see the module docstring)."""
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise InputError("count", f"{count!r} is not allowed; use an integer >= 0.")
    rules = rules or RerankRules()
    fresh = stock or {}
    excluded = frozenset(exclude)

    def available(item_id: str) -> bool:
        return item_id not in excluded and in_stock(item_id, catalog=catalog, stock=fresh)

    pins = sorted((pos, item) for item, pos in rules.pins.items() if pos < count and available(item))
    pinned = {item for _, item in pins}
    pin_scores: dict[str, float] = {}
    seen: set[str] = set(pinned)

    boosting = bool(rules.category_boosts or rules.brand_boosts)

    def ordered(part: Sequence[ScoredItem]) -> list[tuple[float, str]]:
        """Known, first occurrences, by boosted score (stable). Stock is checked lazily, later."""
        rows: list[tuple[float, str]] = []
        for cand in part:
            item_id = cand.item_id
            meta = catalog.get(item_id)
            if meta is None:
                continue
            if item_id in pinned and item_id not in pin_scores:
                pin_scores[item_id] = boosted(cand.score, meta, rules)
            if item_id in seen:
                continue
            seen.add(item_id)
            score = cand.score
            rows.append((boosted(score, meta, rules) if boosting or score != score else score, item_id))
        rows.sort(key=_score, reverse=True)
        return rows

    parts = (ordered(ranked), ordered(reserve))
    stream = (row for part in parts for row in part if available(row[1]))
    body = _diverse(stream, target=count - len(pins), catalog=catalog, rules=rules, pinned=[i for _, i in pins])
    slate = [ScoredItem(item_id, score) for score, item_id in body]
    for position, item_id in pins:
        slate.insert(min(position, len(slate)), ScoredItem(item_id, pin_scores.get(item_id, 0.0)))
    return tuple(slate)


def _score(row: tuple[float, str]) -> float:
    return row[0]


def _diverse(
    stream: Iterator[tuple[float, str]], *, target: int, catalog: Mapping[str, ItemMeta], rules: RerankRules,
    pinned: list[str],
) -> list[tuple[float, str]]:
    """Greedy picks under the caps; relax both caps while the slate is short.

    The first (strict) round reads the candidates lazily and stops once the slate is full, so a
    long reserve costs nothing when the top of the list suffices. Each further round relaxes the
    caps by one, or straight to the smallest slack that lets some candidate in, so every round
    picks at least one item: at most `target` + 1 rounds.
    """
    categories = Tally(catalog[i].category for i in pinned)
    brands = Tally(catalog[i].brand for i in pinned)

    def excess(item_id: str) -> int:
        meta = catalog[item_id]
        return max(categories[meta.category] - rules.max_per_category, brands[meta.brand] - rules.max_per_brand)

    picked: list[tuple[float, str]] = []
    left: Iterable[tuple[float, str]] = stream
    slack = 0
    while len(picked) < target:
        rest: list[tuple[float, str]] = []
        for row in left:
            if excess(row[1]) < slack:
                picked.append(row)
                meta = catalog[row[1]]
                categories[meta.category] += 1
                brands[meta.brand] += 1
                if len(picked) >= target:
                    break
            else:
                rest.append(row)
        if len(picked) >= target or not rest:
            break
        left = rest
        slack = max(slack + 1, min(excess(row[1]) for row in rest) + 1)
    return picked


def ladder_rules(
    *,
    catalog: Mapping[str, ItemMeta],
    stock: Mapping[str, StockValue] | None = None,
    rules: RerankRules | None = None,
    exclude: Collection[str] = frozenset(),
) -> Callable[[TierOutput, int], tuple[ScoredItem, ...]]:
    """The post-processing callable fallback_tiers.ladder.Ladder applies to every tier's output."""

    def apply(output: TierOutput, count: int) -> tuple[ScoredItem, ...]:
        return rerank(output.items, reserve=output.reserve, count=count, catalog=catalog, stock=stock,
                      rules=rules, exclude=exclude)

    return apply
