"""Is one variant better than the other? Pure: two VariantTotals and a policy in, a Verdict out.

Per metric:
- ctr, add_to_cart, conversion (proportions of impressions): Pearson's chi-squared test on the 2x2
  table (with / without the outcome, per variant), `scipy.stats.chi2_contingency` with Yates'
  continuity correction, divided by the design effect of user clustering (first-order
  Rao-Scott): a user's impressions are not independent trials (someone who likes what a variant
  shows clicks on many of its slates, and each variant has its own users), so the plain test
  declares differences between identical variants far more often than alpha once users see
  several slates each (tests/online_metrics/test_significance.py measures it). The design effect
  is the cluster-robust (per-user) variance of the difference over its binomial variance, from the
  per-user sums VariantTotals keeps; at least 1;
- revenue per impression (not a proportion): a z-test with the same cluster-robust variance.

A winner is declared on the policy's primary metric only (one decision, one test, so the false
positive rate is the threshold), and only when:
1. each variant has at least `min_impressions` impressions from at least `min_users` users, and
2. the variants' impressions span at least `min_duration_s` (a day's rhythm, not one burst), and
3. the primary metric's p-value is below `alpha / looks`.
Otherwise the verdict is `insufficient_data` (1 or 2 unmet) or `no_difference` (3 unmet), with the
reasons. `looks` is how many times the caller plans to look at a running experiment: checking a
running test repeatedly and stopping at the first p < alpha inflates the false positive rate far
above alpha (measured in the same tests); dividing alpha by the planned number of looks
(Bonferroni) keeps it at or below alpha.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from online_metrics.attribution import VariantTotals
from regions.errors import InputError

__all__ = ["DecisionPolicy", "METRICS", "MetricTest", "PROPORTION_METRICS", "VERDICTS", "Verdict", "compare"]

PROPORTION_METRICS = ("ctr", "add_to_cart", "conversion")
METRICS = (*PROPORTION_METRICS, "revenue_per_impression")
VERDICTS = ("winner", "no_difference", "insufficient_data")


@dataclass(frozen=True)
class DecisionPolicy:
    alpha: float = 0.05
    """The false positive rate accepted for the one decision an experiment takes."""
    min_impressions: int = 1000
    """Per variant: below about a thousand impressions a CTR of a few percent has a confidence
    interval as wide as the lifts worth detecting."""
    min_users: int = 100
    """Per variant: the cluster-robust variance needs many users to be estimated (and a variant
    shown to a handful of users says little about the population)."""
    min_duration_s: float = 3600.0
    """An hour of traffic at least: one burst of one kind of user is not the population."""
    looks: int = 1
    """Planned looks at a running experiment; each look tests at alpha / looks (Bonferroni)."""
    primary: str = "ctr"
    """The metric that decides; the others are reported."""

    def __post_init__(self) -> None:
        if not 0 < self.alpha < 0.5:
            raise InputError("alpha", f"must be in (0, 0.5), got {self.alpha!r}")
        if isinstance(self.min_impressions, bool) or not isinstance(self.min_impressions, int) or self.min_impressions < 1:
            raise InputError("min_impressions", f"must be a whole number >= 1, got {self.min_impressions!r}")
        if isinstance(self.min_users, bool) or not isinstance(self.min_users, int) or self.min_users < 2:
            raise InputError("min_users", f"must be a whole number >= 2, got {self.min_users!r}")
        if not (isinstance(self.min_duration_s, (int, float)) and math.isfinite(self.min_duration_s) and self.min_duration_s >= 0):
            raise InputError("min_duration_s", f"must be a number of seconds >= 0, got {self.min_duration_s!r}")
        if isinstance(self.looks, bool) or not isinstance(self.looks, int) or not 1 <= self.looks <= 1000:
            raise InputError("looks", f"must be a whole number in [1, 1000], got {self.looks!r}")
        if self.primary not in METRICS:
            raise InputError("primary", f"unknown metric {self.primary!r}; allowed: {', '.join(METRICS)}")

    @property
    def threshold(self) -> float:
        return self.alpha / self.looks


@dataclass(frozen=True)
class MetricTest:
    metric: str
    value_a: float
    value_b: float
    p_value: float
    statistic: float
    test: str
    """"chi2" (Rao-Scott adjusted) or "cluster_z"; "none" when the test cannot run (no variance: p is 1)."""
    design_effect: float = 1.0
    """For chi2: the variance inflation by user clustering the statistic was divided by."""

    @property
    def better(self) -> str:
        """"a", "b" or "" (equal)."""
        return "a" if self.value_a > self.value_b else "b" if self.value_b > self.value_a else ""

    def to_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "a": round(self.value_a, 6), "b": round(self.value_b, 6),
                "p_value": self.p_value, "statistic": round(self.statistic, 4), "test": self.test,
                "design_effect": round(self.design_effect, 3)}


@dataclass(frozen=True)
class Verdict:
    verdict: str
    """One of VERDICTS."""
    winner: str | None
    """The winning variant's key when verdict == "winner"."""
    loser: str | None
    primary: str
    threshold: float
    reasons: tuple[str, ...]
    tests: tuple[MetricTest, ...]
    a: VariantTotals
    b: VariantTotals
    duration_s: float

    def test_of(self, metric: str) -> MetricTest:
        return next(t for t in self.tests if t.metric == metric)

    def to_dict(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "winner": self.winner, "loser": self.loser, "primary": self.primary,
                "threshold": self.threshold, "reasons": list(self.reasons), "duration_s": round(self.duration_s, 1),
                "tests": [t.to_dict() for t in self.tests], "a": self.a.to_dict(), "b": self.b.to_dict()}


def _cluster_variance(t: VariantTotals, outcome: str) -> float:
    """Cluster-robust (by user) variance of the rate x / n: k/(k-1) * sum_u (x_u - R n_u)^2 / n^2."""
    if t.impressions == 0 or t.users < 2:
        return 0.0
    x, x_sq, x_n = t.outcome_sums(outcome)
    r = x / t.impressions
    spread = max(x_sq - 2 * r * x_n + r * r * t.n_sq, 0.0)
    return t.users / (t.users - 1) * spread / t.impressions ** 2


def design_effect(a: VariantTotals, b: VariantTotals, outcome: str) -> float:
    """How much clustering by user inflates the variance of the difference of two proportions,
    compared with independent impressions (at least 1). The chi-squared statistic is divided by it
    (first-order Rao-Scott correction)."""
    rates = [(float(getattr(t, outcome)) / t.impressions, t.impressions) for t in (a, b) if t.impressions]
    binomial = sum(r * (1 - r) / n for r, n in rates)
    if binomial <= 0:
        return 1.0
    return max((_cluster_variance(a, outcome) + _cluster_variance(b, outcome)) / binomial, 1.0)


_OUTCOME_OF_METRIC = {"ctr": "clicked", "add_to_cart": "carted", "conversion": "purchased"}


def _proportion_test(metric: str, a: VariantTotals, b: VariantTotals) -> MetricTest:
    ka, kb = a.count_of(metric), b.count_of(metric)
    va = ka / a.impressions if a.impressions else 0.0
    vb = kb / b.impressions if b.impressions else 0.0
    table = np.array([[ka, a.impressions - ka], [kb, b.impressions - kb]], dtype=np.float64)
    if a.impressions == 0 or b.impressions == 0 or table[:, 0].sum() == 0 or table[:, 1].sum() == 0:
        return MetricTest(metric, va, vb, 1.0, 0.0, "none")  # nobody (or everybody) had the outcome: nothing to tell apart
    chi2, _, _, _ = stats.chi2_contingency(table, correction=True)
    deff = design_effect(a, b, _OUTCOME_OF_METRIC[metric])
    adjusted = float(chi2) / deff
    return MetricTest(metric, va, vb, float(stats.chi2.sf(adjusted, 1)), adjusted, "chi2", deff)


def _revenue_test(a: VariantTotals, b: VariantTotals) -> MetricTest:
    va, vb = a.revenue_per_impression, b.revenue_per_impression
    var = _cluster_variance(a, "revenue") + _cluster_variance(b, "revenue")
    if a.users < 2 or b.users < 2 or var <= 0:
        return MetricTest("revenue_per_impression", va, vb, 1.0, 0.0, "none")
    z = (va - vb) / math.sqrt(var)
    return MetricTest("revenue_per_impression", va, vb, float(2 * stats.norm.sf(abs(z))), float(z), "cluster_z")


def compare(a: VariantTotals, b: VariantTotals, *, policy: DecisionPolicy = DecisionPolicy(),
            duration_s: float | None = None) -> Verdict:
    """The verdict between variants `a` and `b`. `duration_s` defaults to the span of their
    impressions (first to last, both variants together)."""
    if a.variant == b.variant:
        raise InputError("variant", f"compare two different variants, got {a.variant!r} twice")
    if duration_s is None:
        firsts = [t.first_ts for t in (a, b) if t.impressions]
        lasts = [t.last_ts for t in (a, b) if t.impressions]
        duration_s = max(lasts) - min(firsts) if firsts else 0.0
    tests = tuple([_proportion_test(m, a, b) for m in PROPORTION_METRICS] + [_revenue_test(a, b)])
    reasons = [f"{t.variant} has {t.impressions} impressions; at least {policy.min_impressions} per variant are needed"
               for t in (a, b) if t.impressions < policy.min_impressions]
    reasons += [f"{t.variant} was shown to {t.users} users; at least {policy.min_users} per variant are needed"
                for t in (a, b) if t.users < policy.min_users]
    if duration_s < policy.min_duration_s:
        reasons.append(f"the impressions span {duration_s:.0f} s; at least {policy.min_duration_s:.0f} s are needed")
    primary = next(t for t in tests if t.metric == policy.primary)
    common = dict(primary=policy.primary, threshold=policy.threshold, tests=tests, a=a, b=b, duration_s=duration_s)
    if reasons:
        return Verdict(verdict="insufficient_data", winner=None, loser=None, reasons=tuple(reasons), **common)
    if primary.p_value >= policy.threshold or not primary.better:
        return Verdict(verdict="no_difference", winner=None, loser=None, reasons=(
            f"{policy.primary}: {primary.value_a:.4f} vs {primary.value_b:.4f}, p = {primary.p_value:.3g} is not below "
            f"{policy.threshold:.3g} (alpha {policy.alpha:g} / {policy.looks} looks)",), **common)
    win, lose = (a, b) if primary.better == "a" else (b, a)
    return Verdict(verdict="winner", winner=win.variant, loser=lose.variant, reasons=(
        f"{policy.primary}: {win.variant} {primary.value_a if win is a else primary.value_b:.4f} vs {lose.variant} "
        f"{primary.value_b if win is a else primary.value_a:.4f}, p = {primary.p_value:.3g} < {policy.threshold:.3g}",), **common)
