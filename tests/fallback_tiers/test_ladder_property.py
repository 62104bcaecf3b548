"""Hypothesis: whatever fails, whatever the breakers and the deadline, the slate is never empty."""
from __future__ import annotations

from dataclasses import dataclass

from hypothesis import event, given, settings
from hypothesis import strategies as st

from fallback_tiers.breaker import BreakerStatus, CircuitBreaker
from fallback_tiers.deadline import Deadline
from fallback_tiers.ladder import Ladder, TierSpec
from fallback_tiers.settings import BreakerSettings, LadderSettings
from fallback_tiers.tiers import DependencyFailed, SkipReason, Tier, TierOutput, TierRequest, min_items
from serving.reranking import ItemMeta, RerankRules, in_stock, ladder_rules
from tests.fallback_tiers.virtual import VirtualClock

CATALOG = {f"i{n}": ItemMeta(category=f"c{n % 4}", brand=f"b{n % 3}", stock=n % 5) for n in range(120)}
"""Every fifth item is out of stock in the catalog (stock 0)."""
DEPS = {Tier.FULL: frozenset({"redis", "ranker"}), Tier.CACHED: frozenset({"redis"}), Tier.SEGMENT: frozenset()}
ITEM_IDS = st.lists(st.sampled_from(sorted(CATALOG)), max_size=40)
_LONG = [tuple(sorted(CATALOG, key=lambda i, k=k: (int(i[1:]) * (k + 7)) % 121)[:30]) for k in range(3)]
TIER_IDS = st.one_of(st.sampled_from(_LONG), ITEM_IDS.map(tuple), st.just(()))
"""A miss, a long list (enough to fill any slate), or anything."""


@dataclass(frozen=True)
class Behaviour:
    kind: str  # "ok", "timeout", "error"
    cost: float
    ids: tuple[str, ...]


BEHAVIOURS = st.builds(
    Behaviour,
    kind=st.sampled_from(["ok", "ok", "ok", "timeout", "error"]),
    cost=st.sampled_from([0.0, 0.001, 0.001, 0.02, 0.09, 0.12, 0.3]),
    ids=TIER_IDS,
)
BREAKER = st.sampled_from(["closed", "closed", "open", "half_open_ready", "one_from_open"])


def make_breaker(name: str, how: str, clock: VirtualClock) -> CircuitBreaker:
    breaker = CircuitBreaker(name, settings=BreakerSettings(failure_threshold=2, open_duration_s=5.0, min_failing_s=0.0), clock=clock)
    if how in ("open", "half_open_ready"):
        breaker.record_failure()
        breaker.record_failure()
        if how == "half_open_ready":
            clock.advance(5.0)
    elif how == "one_from_open":
        breaker.record_failure()
    return breaker


@settings(max_examples=300, deadline=None)
@given(
    behaviours=st.fixed_dictionaries({t: BEHAVIOURS for t in DEPS}),
    breaker_states=st.fixed_dictionaries({"redis": BREAKER, "ranker": BREAKER}),
    deadline_s=st.sampled_from([0.0, 0.001, 0.01, 0.05, 0.15, 0.15, 0.3]),
    user=st.sampled_from([None, "us-1", "us-1", "us-1"]),
    max_tier=st.sampled_from([Tier.FULL, Tier.FULL, Tier.CACHED, Tier.SEGMENT, Tier.POPULARITY]),
    count=st.integers(1, 20),
    fill=st.sampled_from([0.25, 0.8, 1.0]),
    fresh_stock=st.dictionaries(st.sampled_from(sorted(CATALOG)), st.integers(0, 3), max_size=30),
    popularity_extra=ITEM_IDS,
)
def test_slate_is_never_empty_and_always_explained(  # type: ignore[no-untyped-def]
    behaviours, breaker_states, deadline_s, user, max_tier, count, fill, fresh_stock, popularity_extra,
) -> None:
    clock = VirtualClock(0.0)
    breakers = {name: make_breaker(name, how, clock) for name, how in breaker_states.items()}
    called: list[Tier] = []

    def fetcher(tier: Tier, b: Behaviour):  # type: ignore[no-untyped-def]
        def fetch(request: TierRequest, budget_s: float) -> TierOutput:
            for name in DEPS[tier]:  # only ever called through admitting breakers
                assert breakers[name].state.status is not BreakerStatus.OPEN
            assert budget_s >= 0
            called.append(tier)
            clock.advance(b.cost)
            if b.kind == "timeout":
                raise TimeoutError()
            if b.kind == "error":
                raise ConnectionError()
            return TierOutput(items=tuple(TierOutput.from_ids(b.ids, count=len(b.ids)).items))
        return fetch

    # popularity: enough in-stock items for any count, whatever the fresh stock says
    in_stock_ids = [i for i in sorted(CATALOG) if in_stock(i, catalog=CATALOG, stock=fresh_stock)]
    assert len(in_stock_ids) >= count
    popularity = list(popularity_extra) + in_stock_ids

    def popular(request: TierRequest, budget_s: float) -> TierOutput:
        called.append(Tier.POPULARITY)
        return TierOutput.from_ids(popularity, count=request.count)

    specs = [TierSpec(t, fetcher(t, behaviours[t]), DEPS[t]) for t in DEPS] + [TierSpec(Tier.POPULARITY, popular)]
    ladder = Ladder(
        tiers=specs, breakers=breakers, settings=LadderSettings(min_fill_fraction=fill),
        post_process=ladder_rules(catalog=CATALOG, stock=fresh_stock, rules=RerankRules(max_per_brand=1)),
    )
    result = ladder.run(TierRequest(user, count, max_tier=max_tier), Deadline.start(deadline_s, clock=clock))

    event(f"served by {result.tier.value}")
    item_ids = [i.item_id for i in result.items]
    assert item_ids, "empty slate"
    assert len(item_ids) >= min_items(count, fill) and len(item_ids) <= count
    assert len(set(item_ids)) == len(item_ids)
    assert all(in_stock(i, catalog=CATALOG, stock=fresh_stock) for i in item_ids)
    if result.tier is Tier.POPULARITY:
        assert len(item_ids) == count  # the floor fills the slate when the catalog can
    assert [t for t, _ in result.skipped] == list(Tier.ladder()[: result.tier.rank])
    assert called[-1] is result.tier and len(called) == len(set(called))
    if user is None or max_tier is Tier.POPULARITY or deadline_s == 0.0:
        assert result.tier is Tier.POPULARITY and called == [Tier.POPULARITY]
    if not result.tier.is_floor:
        assert result.tier.rank >= max_tier.rank
        assert behaviours[result.tier].kind == "ok"


@settings(max_examples=150, deadline=None)
@given(
    kinds=st.fixed_dictionaries({t: st.sampled_from(["ok", "timeout", "error"]) for t in DEPS}),
    lists=st.fixed_dictionaries({t: TIER_IDS for t in DEPS}),
    within_budget=st.fixed_dictionaries({t: st.floats(0, 0.99) for t in DEPS}),
    count=st.integers(1, 20),
    fresh_stock=st.dictionaries(st.sampled_from(sorted(CATALOG)), st.integers(0, 3), max_size=30),
)
def test_the_best_working_tier_serves(kinds, lists, within_budget, count, fresh_stock) -> None:  # type: ignore[no-untyped-def]
    """Healthy breakers, time enough, every tier within its budget: no needless degradation."""
    clock = VirtualClock(0.0)
    settings_ = LadderSettings()
    rules = ladder_rules(catalog=CATALOG, stock=fresh_stock, rules=RerankRules(max_per_brand=1))

    def fetcher(tier: Tier):  # type: ignore[no-untyped-def]
        def fetch(request: TierRequest, budget_s: float) -> TierOutput:
            clock.advance(budget_s * within_budget[tier])
            if kinds[tier] == "timeout":
                raise TimeoutError()
            if kinds[tier] == "error":
                raise DependencyFailed("redis", "down")
            return TierOutput.from_ids(lists[tier], count=request.count)
        return fetch

    popularity = [i for i in sorted(CATALOG) if in_stock(i, catalog=CATALOG, stock=fresh_stock)]
    specs = [TierSpec(t, fetcher(t), DEPS[t]) for t in DEPS]
    specs.append(TierSpec(Tier.POPULARITY, lambda r, b: TierOutput.from_ids(popularity, count=r.count)))
    breakers = {n: CircuitBreaker(n, settings=BreakerSettings(failure_threshold=10), clock=clock)
                for n in ("redis", "ranker")}
    ladder = Ladder(tiers=specs, breakers=breakers, post_process=rules, settings=settings_)
    result = ladder.run(TierRequest("us-1", count), Deadline.start(0.150, clock=clock))

    expected: list[tuple[Tier, SkipReason]] = []
    for tier in DEPS:
        if kinds[tier] != "ok":
            expected.append((tier, SkipReason.TIMEOUT if kinds[tier] == "timeout" else SkipReason.ERROR))
            continue
        kept = len(rules(TierOutput.from_ids(lists[tier], count=count), count))
        if kept >= count:
            break
        expected.append((tier, SkipReason.EMPTY if kept == 0 else SkipReason.TOO_FEW))
    event(f"served by {result.tier.value}")
    assert result.skipped == tuple(expected)
    assert result.tier is Tier.ladder()[len(expected)]
    assert len(result.items) == count and not result.late
