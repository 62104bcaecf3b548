"""Re-ranking rules: tables for each rule, Hypothesis for the invariants of the slate."""
from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fallback_tiers.tiers import ScoredItem, TierOutput
from regions.errors import InputError
from serving.reranking import ItemMeta, RerankRules, boosted, in_stock, ladder_rules, rerank

CAT = {
    "a1": ItemMeta("shoes", "acme"), "a2": ItemMeta("shoes", "acme"), "a3": ItemMeta("shoes", "bolt"),
    "a4": ItemMeta("shoes", "bolt"), "b1": ItemMeta("hats", "acme"), "b2": ItemMeta("hats", "cask"),
    "c1": ItemMeta("bags", "dune"), "c2": ItemMeta("bags", "dune"), "z0": ItemMeta("bags", "zeta", stock=0),
}
LOOSE = RerankRules(max_per_category=99, max_per_brand=99)


def ranked(*ids: str) -> list[ScoredItem]:
    return [ScoredItem(i, float(len(ids) - n)) for n, i in enumerate(ids)]


def slate(*ids: str, **kwargs) -> list[str]:  # type: ignore[no-untyped-def]
    kwargs.setdefault("count", len(ids))
    kwargs.setdefault("rules", LOOSE)
    return [i.item_id for i in rerank(ranked(*ids), catalog=CAT, **kwargs)]


@pytest.mark.parametrize(
    ("item", "fresh", "expected"),
    [
        ("a1", {}, True),                    # unknown fresh stock: trust the catalog (in stock)
        ("z0", {}, False),                   # catalog says 0
        ("z0", {"z0": 3}, True),             # fresher count wins
        ("z0", {"z0": True}, True),
        ("a1", {"a1": False}, False),
        ("a1", {"a1": 0}, False),
        ("a1", {"a1": -2}, False),
        ("nope", {"nope": 5}, False),        # not in the catalog: nothing to show
    ],
)
def test_in_stock_table(item: str, fresh: dict[str, int | bool], expected: bool) -> None:
    assert in_stock(item, catalog=CAT, stock=fresh) is expected


@pytest.mark.parametrize(
    ("ids", "kwargs", "expected"),
    [
        (("a1", "z0", "b1"), {}, ["a1", "b1"]),                                      # out of stock
        (("a1", "z0", "b1"), {"stock": {"z0": 1, "b1": 0}}, ["a1", "z0"]),           # fresh stock
        (("a1", "a1", "b1", "a1"), {}, ["a1", "b1"]),                                # duplicates
        (("a1", "ghost", "b1"), {}, ["a1", "b1"]),                                   # unknown item
        (("a1", "b1", "c1"), {"exclude": {"b1"}}, ["a1", "c1"]),                      # cart / purchased
        (("a1", "b1", "c1"), {"count": 2}, ["a1", "b1"]),                             # truncation
        (("a1", "b1"), {"count": 0}, []),
    ],
)
def test_filter_table(ids: tuple[str, ...], kwargs: dict[str, object], expected: list[str]) -> None:
    assert slate(*ids, **kwargs) == expected


def test_duplicate_in_reserve_keeps_the_ranked_occurrence() -> None:
    out = rerank([ScoredItem("a1", 2.0)], reserve=[ScoredItem("b1", 9.0), ScoredItem("a1", 9.0)], count=3,
                 catalog=CAT, rules=LOOSE)
    assert out == (ScoredItem("a1", 2.0), ScoredItem("b1", 9.0))


@pytest.mark.parametrize(
    ("rules", "count", "expected"),
    [
        # two shoes at most: a3 waits until the slate needs it
        (RerankRules(max_per_category=2, max_per_brand=9), 4, ["a1", "a2", "b1", "b2"]),
        # one acme at most: a2 and b1 wait
        (RerankRules(max_per_category=9, max_per_brand=1), 4, ["a1", "a3", "b2", "c1"]),
        (RerankRules(max_per_category=1, max_per_brand=1), 3, ["a1", "b2", "c1"]),
        # not enough diversity for 6: both caps relax by one step at a time, rank order within a step
        (RerankRules(max_per_category=1, max_per_brand=1), 6, ["a1", "b2", "c1", "a2", "c2", "a3"]),
    ],
)
def test_diversity_table(rules: RerankRules, count: int, expected: list[str]) -> None:
    assert slate("a1", "a2", "a3", "b1", "b2", "c1", "c2", count=count, rules=rules) == expected


def test_all_of_one_category_still_fills_the_slate() -> None:
    assert slate("a4", "a3", "a2", "a1", rules=RerankRules(max_per_category=1, max_per_brand=1)) == [
        "a4", "a3", "a2", "a1"]


def test_reserve_backfills_before_diversity_is_relaxed() -> None:
    out = rerank(ranked("a1", "a2", "a3"), reserve=ranked("c1", "b2"), count=4, catalog=CAT,
                 rules=RerankRules(max_per_category=1, max_per_brand=2))
    assert [i.item_id for i in out] == ["a1", "c1", "b2", "a2"]


@pytest.mark.parametrize(
    ("pins", "kwargs", "expected"),
    [
        ({"c2": 0}, {}, ["c2", "a1", "b1", "c1"]),                          # not among the candidates
        ({"c1": 0}, {}, ["c1", "a1", "b1", "b2"]),                          # moved up, not duplicated
        ({"c1": 3, "b2": 1}, {}, ["a1", "b2", "b1", "c1"]),
        ({"z0": 0}, {}, ["a1", "b1", "c1", "b2"]),                          # out of stock: not honoured
        ({"z0": 0}, {"stock": {"z0": 2}}, ["z0", "a1", "b1", "c1"]),        # back in stock: honoured
        ({"c2": 1}, {"exclude": {"c2"}}, ["a1", "b1", "c1", "b2"]),         # exclusions win over pins
        ({"c2": 4}, {}, ["a1", "b1", "c1", "b2"]),                          # beyond the slate: ignored
        ({"c2": 3}, {"count": 4, "extra": ("a1", "b1")}, ["a1", "b1", "c2"]),         # short slate: moves up
    ],
)
def test_pins_table(pins: dict[str, int], kwargs: dict[str, object], expected: list[str]) -> None:
    ids = kwargs.pop("extra", ("a1", "b1", "c1", "b2"))
    assert isinstance(ids, tuple)
    rules = RerankRules(max_per_category=99, max_per_brand=99, pins=pins)
    assert slate(*ids, rules=rules, count=kwargs.pop("count", 4), **kwargs) == expected[: 4]


def test_pin_only_slate_when_there_are_no_candidates() -> None:
    out = rerank([], count=2, catalog=CAT, rules=RerankRules(pins={"c2": 1}))
    assert out == (ScoredItem("c2", 0.0),)


def test_pins_count_towards_the_caps() -> None:
    rules = RerankRules(max_per_category=1, max_per_brand=9, pins={"a4": 2})
    assert slate("a1", "b1", "c1", count=4, rules=rules) == ["b1", "c1", "a4", "a1"]


@pytest.mark.parametrize(
    ("score", "factor", "expected"),
    [(2.0, 1.5, 3.0), (-2.0, 2.0, -1.0), (0.0, 3.0, 0.0), (float("nan"), 2.0, float("-inf"))],
)
def test_boost_moves_up_whatever_the_sign(score: float, factor: float, expected: float) -> None:
    rules = RerankRules(category_boosts={"hats": factor})
    assert boosted(score, CAT["b1"], rules) == expected


@pytest.mark.parametrize(
    ("rules", "expected"),
    [
        (RerankRules(max_per_category=9, max_per_brand=9), ["a1", "c1", "b1"]),
        (RerankRules(max_per_category=9, max_per_brand=9, category_boosts={"hats": 2.0}), ["b1", "a1", "c1"]),
        (RerankRules(max_per_category=9, max_per_brand=9, brand_boosts={"dune": 1.6}), ["c1", "a1", "b1"]),
        # both multiply: b1 1.0 * 1.2 * 1.2 = 1.44 beats a1 1.3 * 0.9 * 1.2 = 1.404 (one alone would not)
        (RerankRules(max_per_category=9, max_per_brand=9, category_boosts={"hats": 1.2, "shoes": 0.9},
                     brand_boosts={"acme": 1.2}), ["b1", "a1", "c1"]),
    ],
)
def test_boosts_table(rules: RerankRules, expected: list[str]) -> None:
    items = [ScoredItem("a1", 1.3), ScoredItem("c1", 1.1), ScoredItem("b1", 1.0)]
    assert [i.item_id for i in rerank(items, count=3, catalog=CAT, rules=rules)] == expected


def test_boost_does_not_lift_reserve_over_ranked() -> None:
    rules = RerankRules(max_per_category=9, max_per_brand=9, category_boosts={"bags": 100.0})
    out = rerank([ScoredItem("a1", 1.0)], reserve=[ScoredItem("c1", 1.0)], count=2, catalog=CAT, rules=rules)
    assert [i.item_id for i in out] == ["a1", "c1"] and out[1].score == 100.0


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: RerankRules(max_per_category=0), "max_per_category"),
        (lambda: RerankRules(max_per_brand=True), "max_per_brand"),
        (lambda: RerankRules(pins={"a1": -1}), "pins[a1]"),
        (lambda: RerankRules(pins={"a1": 2, "b1": 2}), "pins[b1]"),
        (lambda: RerankRules(category_boosts={"hats": 0.0}), "category_boosts[hats]"),
        (lambda: RerankRules(brand_boosts={"acme": float("inf")}), "brand_boosts[acme]"),
        (lambda: rerank([], count=-1, catalog=CAT), "count"),
    ],
)
def test_invalid_rules_name_the_field(build, field: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InputError) as info:
        build()
    assert info.value.field == field


def test_ladder_rules_adapts_a_tier_output() -> None:
    apply = ladder_rules(catalog=CAT, stock={"a1": 0}, rules=LOOSE, exclude={"b1"})
    out = apply(TierOutput(items=tuple(ranked("a1", "b1", "c1")), reserve=tuple(ranked("b2", "c2"))), 3)
    assert [i.item_id for i in out] == ["c1", "b2", "c2"]


# -- properties ------------------------------------------------------------------------------

N_ITEMS = 16
ITEMS = [f"i{n}" for n in range(N_ITEMS)]
CATALOGS = st.lists(
    st.tuples(st.sampled_from("ABCD"), st.sampled_from("wxyz"), st.sampled_from([True, False, 0, 1, 2])),
    min_size=N_ITEMS, max_size=N_ITEMS,
).map(lambda rows: {i: ItemMeta(category=c, brand=b, stock=k) for i, (c, b, k) in zip(ITEMS, rows)})
CANDIDATES = st.lists(
    st.tuples(st.sampled_from(ITEMS + ["ghost1", "ghost2"]), st.integers(-50, 50)),
    max_size=20,
).map(lambda rows: [ScoredItem(i, score / 10) for i, score in rows])


@st.composite
def cases(draw):  # type: ignore[no-untyped-def]
    catalog = draw(CATALOGS)
    positions = draw(st.lists(st.integers(0, 12), unique=True, max_size=3))
    pinned_ids = draw(st.lists(st.sampled_from(ITEMS), unique=True, min_size=len(positions),
                               max_size=len(positions)))
    rules = RerankRules(
        max_per_category=draw(st.integers(1, 3)), max_per_brand=draw(st.integers(1, 3)),
        pins=dict(zip(pinned_ids, positions)),
        category_boosts=draw(st.dictionaries(st.sampled_from("ABCD"), st.sampled_from([0.5, 1.5, 4.0]))),
        brand_boosts=draw(st.dictionaries(st.sampled_from("wxyz"), st.sampled_from([0.25, 2.0]))),
    )
    return dict(
        ranked=draw(CANDIDATES), reserve=draw(CANDIDATES), count=draw(st.integers(0, 12)), catalog=catalog,
        stock=draw(st.dictionaries(st.sampled_from(ITEMS), st.sampled_from([True, False, -1, 0, 1, 2]))),
        rules=rules, exclude=frozenset(draw(st.lists(st.sampled_from(ITEMS), max_size=4))),
    )


@settings(max_examples=200, deadline=None)
@given(case=cases())
def test_slate_invariants(case) -> None:  # type: ignore[no-untyped-def]
    out = rerank(case["ranked"], reserve=case["reserve"], count=case["count"], catalog=case["catalog"],
                 stock=case["stock"], rules=case["rules"], exclude=case["exclude"])
    ids = [i.item_id for i in out]
    catalog, rules = case["catalog"], case["rules"]

    def available(i: str) -> bool:
        return i not in case["exclude"] and in_stock(i, catalog=catalog, stock=case["stock"])

    active_pins = {i: p for i, p in rules.pins.items() if p < case["count"] and available(i)}
    pool = {c.item_id for c in case["ranked"] + case["reserve"] if available(c.item_id)} | set(active_pins)

    assert len(ids) == len(set(ids)), "duplicate"
    assert all(available(i) for i in ids), "out of stock, excluded or unknown"
    assert len(ids) == min(case["count"], len(pool))
    assert set(active_pins) <= set(ids), "active pin missing"
    if len(ids) == case["count"]:
        assert all(ids[p] == i for i, p in active_pins.items()), "pin not at its position"
    # diversity is relaxed only if needed: if a cap is exceeded, nothing left out would have fit
    cats = Counter(catalog[i].category for i in ids)
    brands = Counter(catalog[i].brand for i in ids)
    # pins are placed whatever the caps say; a cap is relaxed for an unpinned item only if needed
    over = any(i not in active_pins and (cats[catalog[i].category] > rules.max_per_category
                                         or brands[catalog[i].brand] > rules.max_per_brand) for i in ids)
    if over:
        for i in pool - set(ids):
            assert cats[catalog[i].category] >= rules.max_per_category or \
                brands[catalog[i].brand] >= rules.max_per_brand


@settings(max_examples=60, deadline=None)
@given(case=cases())
def test_unpinned_items_keep_candidate_order_when_caps_never_bind(case) -> None:  # type: ignore[no-untyped-def]
    rules = RerankRules(max_per_category=99, max_per_brand=99)
    out = rerank(case["ranked"], count=case["count"], catalog=case["catalog"], stock=case["stock"], rules=rules)
    scores = [i.score for i in out]
    assert scores == sorted(scores, reverse=True)
