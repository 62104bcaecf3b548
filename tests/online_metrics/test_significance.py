"""The verdict between two variants (online_metrics.significance), including that it can fail."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from online_metrics.attribution import VariantTotals
from online_metrics.significance import DecisionPolicy, compare
from regions.errors import InputError

T0 = 1_800_000_000.0
QUICK = DecisionPolicy(min_impressions=200, min_users=50, min_duration_s=0)


def from_users(name: str, n_u: np.ndarray, clicked_u: np.ndarray, revenue_u: np.ndarray | None = None, *,
               span_s: float = 7200.0) -> VariantTotals:
    """Totals of users with n_u impressions and clicked_u clicked impressions each (as attribute() sums them)."""
    n_u, clicked_u = np.asarray(n_u, dtype=float), np.asarray(clicked_u, dtype=float)
    rev = np.zeros_like(n_u) if revenue_u is None else np.asarray(revenue_u, dtype=float)
    buys = (rev > 0).astype(float)
    return VariantTotals(variant=name, impressions=int(n_u.sum()), clicked=int(clicked_u.sum()), purchased=int(buys.sum()),
                         clicks=int(clicked_u.sum()), revenue=float(rev.sum()), users=len(n_u), n_sq=float((n_u ** 2).sum()),
                         clicked_sq=float((clicked_u ** 2).sum()), clicked_x_n=float((clicked_u * n_u).sum()),
                         purchased_sq=float((buys ** 2).sum()), purchased_x_n=float((buys * n_u).sum()),
                         revenue_sq=float((rev ** 2).sum()), revenue_x_n=float((rev * n_u).sum()),
                         first_ts=T0, last_ts=T0 + span_s)


def totals(name: str, n: int, clicked: int, *, span_s: float = 7200.0) -> VariantTotals:
    """n users with one impression each, `clicked` of them clicked: independent impressions (the
    sums from_users would compute, without building the arrays)."""
    return VariantTotals(variant=name, impressions=n, clicked=clicked, clicks=clicked, users=n, n_sq=float(n),
                         clicked_sq=float(clicked), clicked_x_n=float(clicked), first_ts=T0, last_ts=T0 + span_s)


def test_a_clear_difference_names_the_better_variant_whichever_side_it_is_on() -> None:
    good, weak = totals("good", 2000, 400), totals("weak", 2000, 250)
    for a, b in ((good, weak), (weak, good)):
        verdict = compare(a, b, policy=QUICK)
        assert verdict.verdict == "winner" and verdict.winner == "good" and verdict.loser == "weak"
        assert verdict.test_of("ctr").p_value < 1e-6 and verdict.test_of("ctr").test == "chi2"


def test_equal_rates_are_no_difference() -> None:
    verdict = compare(totals("a", 2000, 300), totals("b", 2000, 300), policy=QUICK)
    assert verdict.verdict == "no_difference" and verdict.winner is None
    assert "is not below" in verdict.reasons[0]


def test_a_too_small_sample_is_insufficient_data_even_with_a_huge_effect() -> None:
    verdict = compare(totals("a", 150, 140), totals("b", 150, 5), policy=QUICK)
    assert verdict.verdict == "insufficient_data" and verdict.winner is None
    assert verdict.test_of("ctr").p_value < 1e-10  # the test alone would have declared a winner
    assert any("150 impressions" in r for r in verdict.reasons)


def test_a_too_short_run_is_insufficient_data() -> None:
    policy = DecisionPolicy(min_impressions=200, min_users=50, min_duration_s=3600)
    verdict = compare(totals("a", 5000, 1000, span_s=600), totals("b", 5000, 500, span_s=600), policy=policy)
    assert verdict.verdict == "insufficient_data" and any("span 600 s" in r for r in verdict.reasons)
    assert compare(totals("a", 5000, 1000), totals("b", 5000, 500), policy=policy).verdict == "winner"


def test_no_outcome_at_all_is_no_difference_not_an_error() -> None:
    verdict = compare(totals("a", 500, 0), totals("b", 500, 0), policy=QUICK)
    assert verdict.verdict == "no_difference" and verdict.test_of("ctr").test == "none"


def test_too_few_users_is_insufficient_data() -> None:
    few = from_users("a", np.full(20, 50), np.full(20, 40))
    verdict = compare(few, totals("b", 1000, 100), policy=QUICK)
    assert verdict.verdict == "insufficient_data" and any("20 users" in r for r in verdict.reasons)


def test_revenue_uses_the_cluster_robust_z_test_and_another_primary_metric_decides() -> None:
    rng = np.random.default_rng(1)
    a = from_users("a", np.ones(3000), np.zeros(3000), rng.binomial(1, 0.10, 3000) * 20.0)
    b = from_users("b", np.ones(3000), np.zeros(3000), rng.binomial(1, 0.05, 3000) * 20.0)
    verdict = compare(a, b, policy=DecisionPolicy(min_impressions=200, min_users=50, min_duration_s=0,
                                                  primary="revenue_per_impression"))
    assert verdict.test_of("revenue_per_impression").test == "cluster_z"
    assert verdict.verdict == "winner" and verdict.winner == "a"


def _simulate(rng: np.random.Generator, n: int, p: float) -> int:
    return int(rng.binomial(n, p))


def test_equal_arms_declare_a_winner_at_about_alpha_over_many_seeded_trials() -> None:
    """Must-fail check of the test itself: two arms with the SAME true CTR; the share of trials that
    declare a winner is the false positive rate and must be near alpha (Yates' correction makes it
    a little lower), not above it."""
    rng = np.random.default_rng(20261202)
    trials, n, p = 1500, 3000, 0.08
    winners = sum(compare(totals("a", n, _simulate(rng, n, p)), totals("b", n, _simulate(rng, n, p)), policy=QUICK).verdict == "winner"
                  for _ in range(trials))
    rate = winners / trials
    print(f"equal arms, independent impressions: {rate:.1%} false winners in {trials} trials (alpha 5 %)")
    assert 0.02 <= rate <= 0.065, rate


def test_users_who_see_many_slates_need_the_clustering_correction() -> None:
    """Must-fail check: two arms with the SAME variant, each shown to its own users, users differing
    in how much they like it (per-user CTR from a Beta), 10 slates per user. The plain chi-squared
    test declares a winner far more often than alpha; the design-effect-corrected one does not."""
    rng = np.random.default_rng(11)
    trials, users = 1000, 150
    plain = corrected = 0
    for _ in range(trials):
        arms = []
        for name in ("a", "b"):
            p_u = rng.beta(2.0, 3.0, users)
            arms.append(from_users(name, np.full(users, 10), rng.binomial(10, p_u)))
        a, b = arms
        _, p_plain, _, _ = stats.chi2_contingency([[a.clicked, a.impressions - a.clicked], [b.clicked, b.impressions - b.clicked]])
        plain += p_plain < 0.05
        corrected += compare(a, b, policy=QUICK).verdict == "winner"
    print(f"equal arms, 10 slates per user: plain chi-squared {plain / trials:.1%}, corrected {corrected / trials:.1%} "
          f"false winners in {trials} trials")
    assert plain / trials > 0.15, plain / trials
    assert 0.02 <= corrected / trials <= 0.07, corrected / trials


def test_peeking_inflates_false_positives_and_planned_looks_correct_it() -> None:
    """Looking 10 times at a running equal-arm test and stopping at the first 'winner' declares one
    far more often than alpha; with looks=10 in the policy it stays at or below alpha."""
    rng = np.random.default_rng(7)
    trials, per_look, looks, p = 400, 300, 10, 0.08

    def false_positives(policy: DecisionPolicy) -> float:
        hits = 0
        for _ in range(trials):
            ka = kb = 0
            for look in range(1, looks + 1):
                ka += _simulate(rng, per_look, p)
                kb += _simulate(rng, per_look, p)
                n = look * per_look
                if compare(totals("a", n, ka), totals("b", n, kb), policy=policy).verdict == "winner":
                    hits += 1
                    break
        return hits / trials

    naive = false_positives(DecisionPolicy(min_impressions=300, min_users=50, min_duration_s=0, looks=1))
    corrected = false_positives(DecisionPolicy(min_impressions=300, min_users=50, min_duration_s=0, looks=looks))
    print(f"10 looks at equal arms: {naive:.1%} false winners testing each look at alpha, {corrected:.1%} at alpha / 10")
    assert naive > 0.09, naive
    assert corrected <= 0.05, corrected


def test_bad_policy_and_input_name_the_field() -> None:
    for kwargs, field in (({"alpha": 0.7}, "alpha"), ({"min_impressions": 0}, "min_impressions"),
                          ({"looks": 0}, "looks"), ({"min_users": 1}, "min_users"), ({"primary": "dwell"}, "primary"), ({"min_duration_s": -1}, "min_duration_s")):
        with pytest.raises(InputError, match=f"^{field}:"):
            DecisionPolicy(**kwargs)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="^variant:"):
        compare(totals("a", 10, 1), totals("a", 10, 1))
