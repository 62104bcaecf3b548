"""The gates between rollout stages: does the candidate behave as well as the serving bundle? Pure.

    figures_of(views, candidate=..., baseline=..., revision=...) -> StageFigures   (the cells'
        /readyz "rollout" sections of one geography, added up: requests and error rates weighted
        by requests, p99 the worst cell's, tier mix weighted, shadow comparisons weighted; a cell
        still on another serving-plan revision is left out: its figures are of another stage.
        Cells start their per-version figures afresh at each revision)
    evaluate(stage, figures, quality, policy) -> failover.rollout_plan.GateResult

Gates (each check: name, ok True/False/None, value, limit, why):
- shadow stage: enough comparisons; the candidate's shadow error rate; its rank correlation with
  the serving slate and its overlap@8 (a candidate that ranks unlike the serving bundle is stopped
  before anyone sees it); its latency: the median per-request ratio of its time to the serving
  bundle's on the same request (robust on a busy host), and its shadow p99 against the SLO.
- canary stages: enough candidate requests; latency: the candidate's median against the serving
  bundle's on the same cells at the same time (ratio, plus a small slack), its p99 against the cell
  SLO (a p99 of a few hundred requests on a busy host is too noisy to compare two bundles by); its
  error rate; tier mix: its share of fully ranked answers
  (a slow or failing ranker falls back to cheaper tiers); online quality proxies: CTR and
  add-to-cart per impression, candidate vs serving, from the interaction log (online_metrics:
  chi-squared at alpha / looks, minimum impressions): significantly worse fails.
- the 100 % stage has no concurrent control (every user has the candidate): the candidate is judged
  against the absolute limits (cell SLO p99, error budget, min_full_share), quality is not judged.
Any check False -> "fail"; else any None (not enough evidence yet) -> "insufficient"; else "pass".
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from failover.rollout_plan import GateResult, Stage
from online_metrics.attribution import VariantTotals
from online_metrics.significance import DecisionPolicy, compare


@dataclass(frozen=True)
class GatePolicy:
    min_requests: int = 50
    """Candidate homepage requests (all cells of the geography) before its SLO and tier mix are judged."""
    min_shadow: int = 50
    p50_ratio: float = 1.5
    p50_slack_ms: float = 1.0
    """Candidate median <= serving median x ratio + slack. The slack only absorbs rounding of
    sub-millisecond medians: the serving median of the test stack is about 3 ms, so 5 ms (the old
    value) let a 10x-trees bundle with a 2.6x median (8.4 ms against 3.2 ms) through the canary
    on a quiet host; identical bundles' medians measured within 0.5 ms of each other."""
    slo_p99_ms: float = 150.0
    """The cell's deadline: a candidate whose p99 passes it is out of SLO whatever the serving bundle does."""
    error_slack: float = 0.01
    full_share_drop: float = 0.10
    min_full_share: float = 0.80
    """At 100 % (no control left): at least 80 % of answers fully ranked."""
    """Candidate's share of answers ranked at tier full may be at most 10 points below the serving one's."""
    min_rank_corr: float = 0.2
    min_overlap_at_8: float = 0.25
    max_shadow_error_rate: float = 0.05
    max_latency_ratio: float = 1.5
    """Shadow: the median over requests of candidate time / serving time on the same request."""
    quality_min_impressions: int = 200
    quality_min_users: int = 30
    """Distinct users per bundle before the quality test runs (online_metrics: impressions of one user are correlated)."""
    alpha: float = 0.05
    looks: int = 1
    """Looks at the quality test over the rollout (Bonferroni, online_metrics.significance)."""
    require_quality: bool = True
    """Canary stages wait for the quality verdict (enough impressions) before passing."""


@dataclass(frozen=True)
class VersionFigures:
    requests: int = 0
    error_rate: float = 0.0
    p99_ms: float = 0.0
    p50_ms: float = 0.0
    full_share: float = 0.0


@dataclass(frozen=True)
class StageFigures:
    candidate: VersionFigures = VersionFigures()
    serving: VersionFigures = VersionFigures()
    shadow: Mapping[str, Any] = field(default_factory=dict)


def _merge(rows: list[Mapping[str, Any]]) -> VersionFigures:
    total = sum(int(r.get("requests", 0)) for r in rows)
    if not total:
        return VersionFigures()
    weight = lambda key: sum(float(r.get(key, 0.0)) * int(r.get("requests", 0)) for r in rows) / total  # noqa: E731
    full = sum(float((r.get("tier_mix") or {}).get("full", 0.0)) * int(r.get("requests", 0)) for r in rows) / total
    return VersionFigures(requests=total, error_rate=weight("error_rate"), full_share=full, p50_ms=weight("p50_ms"),
                          p99_ms=max(float(r.get("p99_ms", 0.0)) for r in rows))


def figures_of(views: Iterable[Mapping[str, Any]], *, candidate: str, baseline: str | None,
               revision: int | None = None) -> StageFigures:
    cand: list[Mapping[str, Any]] = []
    base: list[Mapping[str, Any]] = []
    shadows: list[Mapping[str, Any]] = []
    for view in views:
        if revision is not None and view.get("revision") != revision:
            continue
        by_version = view.get("by_version") or {}
        if candidate in by_version:
            cand.append(by_version[candidate])
        if baseline and baseline in by_version:
            base.append(by_version[baseline])
        shadow = view.get("shadow") or {}
        if shadow.get("candidate") == candidate and shadow.get("compared"):
            shadows.append(shadow)
    compared = sum(int(s["compared"]) for s in shadows)
    shadow: dict[str, Any] = {"compared": compared, "errors": sum(int(s.get("errors", 0)) for s in shadows)}
    ok = [s for s in shadows if "rank_corr" in s]
    ok_n = sum(int(s["compared"]) - int(s.get("errors", 0)) for s in ok)
    if ok_n:
        for key in ("rank_corr", "overlap_at_8", "latency_ratio_p50"):
            if all(key in s for s in ok):
                shadow[key] = sum(float(s[key]) * (int(s["compared"]) - int(s.get("errors", 0))) for s in ok) / ok_n
    if shadows:
        shadow["serving_p99_ms"] = max(float(s.get("serving_p99_ms", 0.0)) for s in shadows)
        shadow["candidate_p99_ms"] = max(float(s.get("candidate_p99_ms", 0.0)) for s in shadows)
    return StageFigures(candidate=_merge(cand), serving=_merge(base), shadow=shadow)


def _check(name: str, ok: bool | None, value: Any, limit: Any, why: str) -> dict[str, Any]:
    return {"name": name, "ok": ok, "value": value, "limit": limit, "why": why}


def _shadow_checks(shadow: Mapping[str, Any], policy: GatePolicy) -> list[dict[str, Any]]:
    compared = int(shadow.get("compared", 0))
    if compared < policy.min_shadow:
        return [_check("shadow_sample", None, compared, policy.min_shadow, f"{compared} shadow comparisons so far")]
    error_rate = int(shadow.get("errors", 0)) / compared
    checks = [_check("shadow_errors", error_rate <= policy.max_shadow_error_rate, round(error_rate, 4),
                     policy.max_shadow_error_rate, f"the candidate failed {error_rate:.1%} of shadow scorings")]
    if "rank_corr" in shadow:
        rho, overlap = float(shadow["rank_corr"]), float(shadow["overlap_at_8"])
        checks.append(_check("shadow_rank_correlation", rho >= policy.min_rank_corr, round(rho, 4), policy.min_rank_corr,
                             f"Spearman rho of the serving slate under the candidate {rho:.2f}"))
        checks.append(_check("shadow_overlap_at_8", overlap >= policy.min_overlap_at_8, round(overlap, 4),
                             policy.min_overlap_at_8, f"overlap@8 with the serving slate {overlap:.2f}"))
    if "latency_ratio_p50" in shadow:
        ratio = float(shadow["latency_ratio_p50"])
        checks.append(_check("shadow_latency_ratio", ratio <= policy.max_latency_ratio, round(ratio, 3),
                             policy.max_latency_ratio, f"the candidate takes {ratio:.2f}x the serving bundle's time (median)"))
    serving_ms, cand_ms = float(shadow.get("serving_p99_ms", 0.0)), float(shadow.get("candidate_p99_ms", 0.0))
    checks.append(_check("shadow_p99", cand_ms <= policy.slo_p99_ms, round(cand_ms, 2), policy.slo_p99_ms,
                         f"candidate p99 {cand_ms:.1f} ms in shadow (serving {serving_ms:.1f} ms)"))
    return checks


def _absolute_checks(cand: VersionFigures, policy: GatePolicy) -> list[dict[str, Any]]:
    if cand.requests < policy.min_requests:
        return [_check("canary_sample", None, {"candidate": cand.requests}, policy.min_requests,
                       f"{cand.requests} candidate requests so far")]
    return [
        _check("slo_p99", cand.p99_ms <= policy.slo_p99_ms, round(cand.p99_ms, 2), policy.slo_p99_ms,
               f"candidate p99 {cand.p99_ms:.1f} ms against the cell SLO"),
        _check("slo_errors", cand.error_rate <= policy.error_slack, round(cand.error_rate, 4), policy.error_slack,
               f"candidate error rate {cand.error_rate:.2%}"),
        _check("tier_mix_full", cand.full_share >= policy.min_full_share, round(cand.full_share, 4), policy.min_full_share,
               f"{cand.full_share:.0%} of candidate answers fully ranked"),
    ]


def _slo_checks(fig: StageFigures, policy: GatePolicy) -> list[dict[str, Any]]:
    cand, serving = fig.candidate, fig.serving
    if cand.requests < policy.min_requests or serving.requests < policy.min_requests:
        return [_check("canary_sample", None, {"candidate": cand.requests, "serving": serving.requests},
                       policy.min_requests, f"{cand.requests} candidate / {serving.requests} serving requests so far")]
    limit = serving.p50_ms * policy.p50_ratio + policy.p50_slack_ms
    return [
        _check("latency_p50", cand.p50_ms <= limit, round(cand.p50_ms, 2), round(limit, 2),
               f"candidate median {cand.p50_ms:.1f} ms against the serving {serving.p50_ms:.1f} ms"),
        _check("slo_p99", cand.p99_ms <= policy.slo_p99_ms, round(cand.p99_ms, 2), policy.slo_p99_ms,
               f"candidate p99 {cand.p99_ms:.1f} ms against the cell SLO (serving {serving.p99_ms:.1f} ms)"),
        _check("slo_errors", cand.error_rate <= serving.error_rate + policy.error_slack, round(cand.error_rate, 4),
               round(serving.error_rate + policy.error_slack, 4), f"candidate error rate {cand.error_rate:.2%}"),
        _check("tier_mix_full", cand.full_share >= serving.full_share - policy.full_share_drop, round(cand.full_share, 4),
               round(serving.full_share - policy.full_share_drop, 4),
               f"{cand.full_share:.0%} of candidate answers fully ranked against {serving.full_share:.0%}"),
    ]


def quality_checks(candidate: VariantTotals | None, serving: VariantTotals | None, policy: GatePolicy) -> list[dict[str, Any]]:
    """CTR and add-to-cart per impression: fail when the candidate is significantly worse."""
    if candidate is None or serving is None:
        return [_check("quality_sample", None if policy.require_quality else True, 0, policy.quality_min_impressions,
                       "no attributed impressions yet")]
    verdict = compare(candidate, serving, policy=DecisionPolicy(alpha=policy.alpha, min_impressions=policy.quality_min_impressions,
                                                                min_users=policy.quality_min_users, min_duration_s=0.0, looks=policy.looks, primary="ctr"))
    if verdict.verdict == "insufficient_data":
        return [_check("quality_sample", None if policy.require_quality else True,
                       {"candidate": candidate.impressions, "serving": serving.impressions},
                       policy.quality_min_impressions, "; ".join(verdict.reasons))]
    checks = []
    for metric in ("ctr", "add_to_cart"):
        test = verdict.test_of(metric)
        worse = test.value_a < test.value_b and test.p_value < verdict.threshold
        checks.append(_check(f"quality_{metric}", not worse, round(test.value_a, 5), round(test.value_b, 5),
                             f"candidate {test.value_a:.4f} vs serving {test.value_b:.4f} per impression, "
                             f"p={test.p_value:.3g} (threshold {verdict.threshold:.3g})"))
    return checks


def evaluate(stage: Stage, figures: StageFigures, quality: tuple[VariantTotals | None, VariantTotals | None] | None,
             policy: GatePolicy = GatePolicy()) -> GateResult:
    if stage.shadow:
        checks = _shadow_checks(figures.shadow, policy)
    elif stage.percent >= 100.0:
        checks = _absolute_checks(figures.candidate, policy)
    else:
        checks = _slo_checks(figures, policy) + quality_checks(*(quality or (None, None)), policy)
    if any(c["ok"] is False for c in checks):
        verdict = "fail"
    elif any(c["ok"] is None for c in checks):
        verdict = "insufficient"
    else:
        verdict = "pass"
    return GateResult(verdict=verdict, checks=tuple(checks))


__all__ = ["GatePolicy", "StageFigures", "VersionFigures", "evaluate", "figures_of", "quality_checks"]
