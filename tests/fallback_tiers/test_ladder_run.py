"""The ladder's loop on virtual time: every skip reason end to end, late answers, breakers, floor."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import pytest
from prometheus_client import CollectorRegistry

from fallback_tiers.breaker import BreakerState, BreakerStatus, CircuitBreaker
from fallback_tiers.deadline import Deadline
from fallback_tiers.ladder import Ladder, LadderResult, TierSpec
from fallback_tiers.settings import BreakerSettings, LadderSettings
from fallback_tiers.tiers import (
    DependencyFailed, ScoredItem, SkipReason, Tier, TierCounters, TierOutput, TierRequest,
)
from regions.errors import InputError, PermanentError
from serving.reranking import ItemMeta, ladder_rules
from tests.fallback_tiers.virtual import VirtualClock

F, C, S, P = Tier.FULL, Tier.CACHED, Tier.SEGMENT, Tier.POPULARITY
R = SkipReason
CATALOG = {f"i{n}": ItemMeta(category=f"c{n % 7}", brand=f"b{n % 11}") for n in range(200)}
OUT_OF_STOCK = {f"i{n}": False for n in range(0, 200, 10)}
DEPS = {F: frozenset({"redis", "ranker"}), C: frozenset({"redis"}), S: frozenset(), P: frozenset()}
FIRST_ID = {F: 1, C: 41, S: 81, P: 121}  # each tier's own id range, so the slate shows who served


def ids(tier: Tier, n: int) -> list[str]:
    return [f"i{FIRST_ID[tier] + k}" for k in range(n)]


@dataclass
class Scripted:
    """A tier callable: costs `cost` virtual seconds, then returns `n` ranked items or raises."""

    tier: Tier
    clock: VirtualClock
    n: int = 30
    cost: float = 0.001
    raises: BaseException | None = None
    calls: list[float] = field(default_factory=list)

    def __call__(self, request: TierRequest, budget_s: float) -> TierOutput:
        self.calls.append(budget_s)
        self.clock.advance(self.cost)
        if self.raises is not None:
            raise self.raises
        return TierOutput.from_ids(ids(self.tier, self.n), count=request.count)


@dataclass
class World:
    clock: VirtualClock
    tiers: dict[Tier, Scripted]
    breakers: dict[str, CircuitBreaker]
    processed: list[tuple[str, ...]]
    settings: LadderSettings = field(default_factory=LadderSettings)

    def ladder(self, only: set[Tier] | None = None) -> Ladder:
        rules = ladder_rules(catalog=CATALOG, stock=OUT_OF_STOCK)

        def post(output: TierOutput, count: int) -> tuple[ScoredItem, ...]:
            self.processed.append(tuple(i.item_id for i in output.items))
            return rules(output, count)

        specs = [TierSpec(t, fn, DEPS[t]) for t, fn in self.tiers.items() if only is None or t in only]
        return Ladder(tiers=specs, breakers=self.breakers, post_process=post, settings=self.settings)

    def run(self, request: TierRequest | None = None, *, deadline_s: float = 0.150,
            only: set[Tier] | None = None) -> LadderResult:
        deadline = Deadline.start(deadline_s, clock=self.clock)
        return self.ladder(only).run(request or TierRequest(user_id="us-1", count=10), deadline)


@pytest.fixture
def world() -> World:
    clock = VirtualClock()
    breakers = {name: CircuitBreaker(name, settings=BreakerSettings(min_failing_s=0.0), clock=clock) for name in ("redis", "ranker")}
    return World(clock=clock, tiers={t: Scripted(t, clock) for t in Tier}, breakers=breakers, processed=[])


def open_breaker(breaker: CircuitBreaker) -> None:
    for _ in range(breaker.settings.failure_threshold):
        breaker.record_failure()


# Each scenario makes FULL (or CACHED) not serve for one reason; (tier, reason) must be reported.
SCENARIOS: dict[SkipReason, tuple[Callable[[World], LadderResult], Tier]] = {
    R.MAX_TIER: (lambda w: w.run(TierRequest("us-1", 10, max_tier=Tier.SEGMENT)), F),
    R.ANONYMOUS: (lambda w: w.run(TierRequest(None, 10)), S),
    R.NOT_CONFIGURED: (lambda w: w.run(only={S, P}), C),
    R.BREAKER_OPEN: (lambda w: (open_breaker(w.breakers["ranker"]), w.run())[1], F),
    R.BUDGET: (lambda w: w.run(deadline_s=0.025), F),
    R.TIMEOUT: (lambda w: (setattr(w.tiers[F], "raises", TimeoutError("slow")), w.run())[1], F),
    R.ERROR: (lambda w: (setattr(w.tiers[F], "raises", RuntimeError("bug")), w.run())[1], F),
    R.EMPTY: (lambda w: (setattr(w.tiers[F], "n", 0), w.run())[1], F),
    R.TOO_FEW: (lambda w: (setattr(w.tiers[C], "n", 4), setattr(w.tiers[F], "n", 0), w.run())[2], C),
}


def test_every_skip_reason_has_a_scenario() -> None:
    assert set(SCENARIOS) == set(SkipReason)


@pytest.mark.parametrize("reason", list(SkipReason))
def test_skip_reason_end_to_end(world: World, reason: SkipReason) -> None:
    scenario, tier = SCENARIOS[reason]
    result = scenario(world)
    assert (tier, reason) in result.skipped
    assert [t for t, _ in result.skipped] == list(Tier.ladder()[: result.tier.rank])
    assert len(result.items) == 10
    assert {i.item_id for i in result.items} <= set(ids(result.tier, 200))


def test_full_serves_when_all_is_well(world: World) -> None:
    result = world.run()
    assert result.tier is F and result.skipped == () and not result.late
    assert world.tiers[F].calls == [pytest.approx(0.100)]
    assert result.elapsed_s == pytest.approx(0.001)
    assert not any(i.item_id in OUT_OF_STOCK for i in result.items)


def test_open_breaker_costs_no_time_and_is_not_called(world: World) -> None:
    open_breaker(world.breakers["redis"])
    before = world.clock.now
    result = world.run()
    assert result.tier is S
    assert result.skipped == ((F, R.BREAKER_OPEN), (C, R.BREAKER_OPEN))
    assert world.tiers[F].calls == [] and world.tiers[C].calls == []
    assert world.clock.now - before == pytest.approx(world.tiers[S].cost)


def test_late_answer_is_used_while_the_deadline_allows_but_counts_as_failure(world: World) -> None:
    world.tiers[F].cost = 0.120  # budget 100 ms, deadline 150 ms
    result = world.run()
    assert result.tier is F and result.late
    assert world.breakers["ranker"].state.failures == 1 and world.breakers["redis"].state.failures == 1


def test_late_answer_after_the_deadline_is_dropped_and_the_floor_answers(world: World) -> None:
    world.tiers[F].cost = 0.200
    result = world.run()
    assert result.tier is P
    assert result.skipped == ((F, R.TIMEOUT), (C, R.BUDGET), (S, R.BUDGET))
    assert world.tiers[P].calls == [0.0]
    assert len(result.items) == 10


def test_slow_dependency_opens_its_breaker_then_costs_nothing(world: World) -> None:
    world.tiers[F].cost = 0.120
    for _ in range(5):
        assert world.run().tier is F
    assert world.breakers["ranker"].status is BreakerStatus.OPEN
    result = world.run()
    assert result.tier is S  # redis's breaker opened with it: FULL blamed both
    assert len(world.tiers[F].calls) == 5


@pytest.mark.parametrize(
    ("error", "ranker_failures", "redis_failures"),
    [
        (DependencyFailed("ranker", "model not loaded"), 1, 0),
        (DependencyFailed("redis", "connection refused"), 0, 1),
        (DependencyFailed("consul", "not ours"), 1, 1),
        (RuntimeError("unknown"), 1, 1),
    ],
)
def test_failure_is_blamed_on_the_named_dependency(world: World, error: Exception, ranker_failures: int,
                                                   redis_failures: int) -> None:
    world.tiers[F].raises = error
    breakers = world.breakers
    assert world.run().tier is C
    assert breakers["ranker"].state.failures == ranker_failures
    assert breakers["redis"].state.failures == 0  # CACHED's success on redis reset it right after
    world.tiers[C].raises = RuntimeError("also down")  # now nothing resets redis: FULL's share shows
    assert world.run().tier is S
    assert breakers["redis"].state.failures == redis_failures + 1


def test_half_open_trial_is_not_wasted_on_a_tier_whose_other_dependency_is_open(world: World) -> None:
    open_breaker(world.breakers["redis"])
    world.clock.advance(5.0)  # redis may try one trial now
    open_breaker(world.breakers["ranker"])  # ranker just opened
    result = world.run()
    assert result.skipped[0] == (F, R.BREAKER_OPEN)
    assert result.tier is C  # the trial went to CACHED, and it succeeded
    assert world.breakers["redis"].state == BreakerState()


class _Racing(CircuitBreaker):
    """Peeks open-for-business, then refuses: another thread took the trial in between."""

    def would_allow(self) -> bool:
        return True

    def acquire(self) -> float | None:
        return None


def test_breaker_lost_between_peek_and_call_gives_the_trial_back(world: World) -> None:
    clock = world.clock
    redis = CircuitBreaker("redis", settings=BreakerSettings(failure_threshold=1, open_duration_s=1.0, min_failing_s=0.0), clock=clock)
    redis.record_failure()
    clock.advance(1.0)
    world.breakers = {"redis": redis, "ranker": _Racing("ranker", clock=clock)}
    result = world.run()
    assert result.skipped[0] == (F, R.BREAKER_OPEN)
    assert world.tiers[F].calls == []
    assert result.tier is C  # redis's trial was given back and CACHED used it
    assert redis.state == BreakerState()


def test_rules_apply_to_every_tier(world: World) -> None:
    world.tiers[F].raises = RuntimeError()
    world.tiers[C].n = 0
    world.tiers[S].n = 3
    result = world.run()
    assert result.tier is P
    assert world.processed == [(), tuple(ids(S, 3)), tuple(ids(P, 10))]
    assert not any(i.item_id in OUT_OF_STOCK for i in result.items)  # i121.. range has i130, i140 out of stock
    assert "i130" in ids(P, 10)


def test_rules_error_skips_the_tier_but_does_not_blame_its_dependency(world: World) -> None:
    calls = {"n": 0}
    base = world.ladder()

    def flaky(output: TierOutput, count: int) -> tuple[ScoredItem, ...]:
        calls["n"] += 1
        if calls["n"] == 1:
            raise KeyError("bad catalog row")
        return tuple(base.post_process(output, count))

    ladder = Ladder(tiers=base.tiers, breakers=base.breakers, post_process=flaky)
    result = ladder.run(TierRequest("us-1", 10), Deadline.start(0.150, clock=world.clock))
    assert result.skipped == ((F, R.ERROR),) and result.tier is C
    assert world.breakers["ranker"].state.failures == 0


def test_floor_answers_even_with_no_time_left_and_no_personal_tier(world: World) -> None:
    result = world.run(TierRequest("us-1", 10, max_tier=Tier.POPULARITY), deadline_s=0.0)
    assert result.tier is P and len(result.items) == 10
    assert all(not world.tiers[t].calls for t in (F, C, S))


@pytest.mark.parametrize("failure", [RuntimeError("corrupt list"), TimeoutError()])
def test_a_failing_floor_breaks_the_process_loudly(world: World, failure: Exception) -> None:
    world.tiers[P].raises = failure
    world.tiers[F].raises = RuntimeError()
    with pytest.raises(PermanentError) as info:
        world.run(TierRequest(None, 5))
    assert info.value.__cause__ is failure


def test_result_records_into_counters(world: World) -> None:
    registry = CollectorRegistry()
    counters = TierCounters.create(registry)
    world.tiers[F].raises = TimeoutError()
    world.run().record(counters)
    world.run(TierRequest(None, 3)).record(counters)
    get = registry.get_sample_value
    assert get("shopnow_tier_served_total", {"tier": "cached"}) == 1
    assert get("shopnow_tier_served_total", {"tier": "popularity"}) == 1
    assert get("shopnow_tier_skipped_total", {"tier": "full", "reason": "timeout"}) == 1
    assert get("shopnow_tier_skipped_total", {"tier": "full", "reason": "anonymous"}) == 1
    assert get("shopnow_tier_skipped_total", {"tier": "segment", "reason": "anonymous"}) == 1


@pytest.mark.parametrize(
    ("specs", "breakers", "field"),
    [
        ([TierSpec(F, lambda r, b: TierOutput(()), frozenset({"ranker"}))], {}, "breakers"),  # FULL's deps have no breaker
        ([TierSpec(S, lambda r, b: TierOutput(()))], {}, "tiers"),  # no floor
        ([TierSpec(P, lambda r, b: TierOutput(()), frozenset({"redis"}))], {"redis": None}, "tiers"),
        ([TierSpec(P, lambda r, b: TierOutput(())), TierSpec(P, lambda r, b: TierOutput(()))], {}, "tiers"),
    ],
)
def test_ladder_validation_names_the_field(specs, breakers, field) -> None:  # type: ignore[no-untyped-def]
    if specs[0].tier is F:
        specs = specs + [TierSpec(P, lambda r, b: TierOutput(()))]
    with pytest.raises(InputError) as info:
        Ladder(tiers=specs, breakers=breakers, post_process=lambda o, n: o.items)
    assert info.value.field == field
