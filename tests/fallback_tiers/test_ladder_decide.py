"""The two pure decisions of the ladder: which tier next (choose_next), does it serve (judge)."""
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fallback_tiers.ladder import Attempt, BreakerReport, Choice, LadderView, Outcome, Verdict, choose_next, judge
from fallback_tiers.settings import LadderSettings
from fallback_tiers.tiers import SkipReason, Tier, TierRequest

F, C, S, P = Tier.FULL, Tier.CACHED, Tier.SEGMENT, Tier.POPULARITY
R = SkipReason
SETTINGS = LadderSettings()  # FULL: cap 100 ms, min 30 ms; CACHED: 20/3 ms; SEGMENT 5/0.5 ms; reserve 2 ms
ALL = {F: frozenset({"redis", "ranker"}), C: frozenset({"redis"}), S: frozenset(), P: frozenset()}
USER = TierRequest(user_id="us-1", count=10)


def view(request: TierRequest = USER, *, configured=ALL, open_deps=frozenset(), remaining=0.150,  # type: ignore[no-untyped-def]
         considered=()) -> LadderView:
    return LadderView(request=request, configured=configured, open_dependencies=frozenset(open_deps),
                      remaining_s=remaining, considered=tuple(considered))


@pytest.mark.parametrize(
    ("snapshot", "expected"),
    [
        (view(), Choice(F, 0.100)),
        (view(remaining=0.080), Choice(F, 0.078)),
        (view(remaining=0.031), Choice(C, 0.020, ((F, R.BUDGET),))),
        (view(remaining=0.004), Choice(S, 0.002, ((F, R.BUDGET), (C, R.BUDGET)))),
        (view(remaining=0.0), Choice(P, 0.0, ((F, R.BUDGET), (C, R.BUDGET), (S, R.BUDGET)))),
        (view(open_deps={"ranker"}), Choice(C, 0.020, ((F, R.BREAKER_OPEN),))),
        (view(open_deps={"redis"}), Choice(S, 0.005, ((F, R.BREAKER_OPEN), (C, R.BREAKER_OPEN)))),
        (view(open_deps={"unrelated"}), Choice(F, 0.100)),
        (view(TierRequest("us-1", 10, Tier.CACHED)), Choice(C, 0.020, ((F, R.MAX_TIER),))),
        (view(TierRequest("us-1", 10, Tier.POPULARITY)),
         Choice(P, 0.005, ((F, R.MAX_TIER), (C, R.MAX_TIER), (S, R.MAX_TIER)))),
        (view(TierRequest(None, 10)), Choice(P, 0.005, ((F, R.ANONYMOUS), (C, R.ANONYMOUS), (S, R.ANONYMOUS)))),
        (view(configured={P: frozenset()}),
         Choice(P, 0.005, ((F, R.NOT_CONFIGURED), (C, R.NOT_CONFIGURED), (S, R.NOT_CONFIGURED)))),
        (view(considered=[(F, R.TIMEOUT)], remaining=0.040), Choice(C, 0.020)),
        (view(considered=[(F, R.ERROR), (C, R.EMPTY)], remaining=0.040), Choice(S, 0.005)),
        (view(considered=[(F, R.ERROR), (C, R.EMPTY), (S, R.TOO_FEW)]), Choice(P, 0.005)),
        # precedence: max_tier before anonymous before configuration before breakers before budget
        (view(TierRequest(None, 10, Tier.CACHED), configured={P: frozenset()}, open_deps={"redis"}, remaining=0),
         Choice(P, 0.0, ((F, R.MAX_TIER), (C, R.ANONYMOUS), (S, R.ANONYMOUS)))),
        (view(configured={C: frozenset({"redis"}), P: frozenset()}, open_deps={"redis"}, remaining=0),
         Choice(P, 0.0, ((F, R.NOT_CONFIGURED), (C, R.BREAKER_OPEN), (S, R.NOT_CONFIGURED)))),
    ],
)
def test_choose_next_table(snapshot: LadderView, expected: Choice) -> None:
    got = choose_next(snapshot, settings=SETTINGS)
    assert got.tier is expected.tier
    assert got.skipped == expected.skipped
    assert got.budget_s == pytest.approx(expected.budget_s)


@given(
    user=st.sampled_from([None, "us-1"]),
    max_tier=st.sampled_from(list(Tier)),
    configured=st.sets(st.sampled_from([F, C, S])),
    open_deps=st.sets(st.sampled_from(["redis", "ranker"])),
    remaining=st.floats(0, 0.3, allow_nan=False),
    already=st.integers(0, 3),
)
def test_choice_is_below_what_was_considered_and_explains_every_tier(  # type: ignore[no-untyped-def]
    user, max_tier, configured, open_deps, remaining, already,
) -> None:
    considered = tuple((t, R.ERROR) for t in Tier.ladder()[:already])
    snapshot = view(TierRequest(user, 5, max_tier), configured={**{t: ALL[t] for t in configured}, P: frozenset()},
                    open_deps=open_deps, remaining=remaining, considered=considered)
    choice = choose_next(snapshot, settings=SETTINGS)
    assert [t for t, _ in considered + choice.skipped] + [choice.tier] == list(Tier.ladder()[: choice.tier.rank + 1])
    assert 0 <= choice.budget_s <= SETTINGS.stage_budget_s[choice.tier]
    if not choice.tier.is_floor:
        assert user is not None and choice.tier.rank >= max_tier.rank and choice.tier in configured
        assert not (ALL[choice.tier] & open_deps)
        assert choice.budget_s >= SETTINGS.min_budget_s[choice.tier]
        assert choice.budget_s <= remaining - SETTINGS.floor_reserve_s


A = Attempt
OK, FAIL = BreakerReport.SUCCESS, BreakerReport.FAILURE


@pytest.mark.parametrize(
    ("attempt", "verdict"),
    [
        (A(F, Outcome.RETURNED, 10, kept=10, remaining_s=0.05), Verdict(True, None, OK)),
        (A(F, Outcome.RAISED_TIMEOUT, 10), Verdict(False, R.TIMEOUT, FAIL)),
        (A(F, Outcome.RAISED_ERROR, 10), Verdict(False, R.ERROR, FAIL)),
        (A(F, Outcome.RULES_ERROR, 10, remaining_s=0.05), Verdict(False, R.ERROR, OK)),
        (A(F, Outcome.RULES_ERROR, 10, late=True, remaining_s=0.05), Verdict(False, R.ERROR, FAIL)),
        (A(C, Outcome.RETURNED, 10, kept=0, remaining_s=0.05), Verdict(False, R.EMPTY, OK)),
        (A(C, Outcome.RETURNED, 10, kept=9, remaining_s=0.05), Verdict(False, R.TOO_FEW, OK)),
        # late but the deadline allows: used, and the breaker records a failure
        (A(F, Outcome.RETURNED, 10, kept=10, late=True, remaining_s=0.01), Verdict(True, None, FAIL)),
        (A(F, Outcome.RETURNED, 10, kept=10, late=True, remaining_s=0.0), Verdict(False, R.TIMEOUT, FAIL)),
        (A(S, Outcome.RETURNED, 10, kept=3, late=True, remaining_s=0.01), Verdict(False, R.TOO_FEW, FAIL)),
        # the floor serves whatever it has, even late past the deadline
        (A(P, Outcome.RETURNED, 10, kept=0, late=True, remaining_s=0.0), Verdict(True, None, FAIL)),
        (A(P, Outcome.RETURNED, 10, kept=4, remaining_s=0.0), Verdict(True, None, OK)),
    ],
)
def test_judge_table(attempt: Attempt, verdict: Verdict) -> None:
    assert judge(attempt, settings=SETTINGS) == verdict


@pytest.mark.parametrize(("fraction", "kept", "serves"), [(0.5, 5, True), (0.5, 4, False), (0.1, 1, True)])
def test_judge_honours_min_fill(fraction: float, kept: int, serves: bool) -> None:
    settings = LadderSettings(min_fill_fraction=fraction)
    verdict = judge(A(S, Outcome.RETURNED, 10, kept=kept, remaining_s=1.0), settings=settings)
    assert verdict.serves is serves
    assert verdict.reason is (None if serves else R.TOO_FEW)
