"""Stage progression and gate evaluation (pure)."""
from dataclasses import replace

import pytest

from failover.rollout_gates import GatePolicy, StageFigures, VersionFigures, evaluate, figures_of
from failover.rollout_plan import GateResult, new_plan, parse_plan, parse_stages, progress, serving_plan_of
from online_metrics.attribution import VariantTotals
from regions.errors import InputError

PASS = GateResult("pass")
FAIL = GateResult("fail", ({"name": "slo_p99", "ok": False, "why": "slow"},))
WAIT = GateResult("insufficient")
POLICY = GatePolicy(min_requests=10, min_shadow=10, quality_min_impressions=100)


def _plan(stages: str = "shadow,10%,100%", hold: float = 5.0):
    return new_plan(geo="us", version="v2", baseline="v1", stages=stages, hold_s=hold, now=1000.0, actor="t")


def test_stages_parse_and_refuse() -> None:
    assert [s.percent for s in parse_stages("shadow,1%,10%,50%,100%")] == [0, 1, 10, 50, 100]
    for bad, field in (("10%,shadow,100%", "shadow"), ("10%,5%,100%", "increase"), ("shadow,50%", "100%"), ("x,100%", "stage")):
        with pytest.raises(InputError, match=field):
            parse_stages(bad)
    with pytest.raises(InputError, match="hold"):
        new_plan(geo="us", version="v2", baseline="v1", stages="100%", hold_s=0, now=0, actor="t")
    with pytest.raises(InputError, match="already serving"):
        new_plan(geo="us", version="v1", baseline="v1", stages="100%", hold_s=1, now=0, actor="t")


def test_a_plan_holds_advances_completes() -> None:
    plan = _plan()
    assert progress(plan, PASS, 1003.0).kind == "hold"  # the hold is not over
    step = progress(plan, PASS, 1005.0)
    assert step.kind == "advance" and step.plan.stage.name == "10%" and step.plan.stage_started_at == 1005.0
    step = progress(step.plan, PASS, 1010.0)
    assert step.kind == "advance" and step.plan.stage.percent == 100.0
    done = progress(step.plan, PASS, 1015.0)
    assert done.kind == "complete" and done.plan.state == "completed" and len(done.plan.evidence) == 3
    assert parse_plan(done.plan.to_json()) == done.plan


def test_a_gate_failing_rounds_in_a_row_rolls_back_with_its_evidence() -> None:
    assert progress(_plan(), FAIL, 1001.0, failures=1).kind == "hold"  # one blip is not a verdict
    assert progress(_plan(), FAIL, 1001.0, failures=2).kind == "hold"
    step = progress(_plan(), FAIL, 1001.0, failures=3)
    assert step.kind == "rollback" and step.plan.state == "rolled_back"
    assert "slo_p99" in step.reason and step.plan.evidence[-1]["checks"][0]["name"] == "slo_p99"


def test_missing_evidence_holds_then_rolls_back() -> None:
    plan = _plan()
    assert progress(plan, WAIT, 1010.0).kind == "hold"
    assert progress(plan, WAIT, 1026.0).kind == "rollback"


def test_serving_plan_follows_the_stage() -> None:
    plan = _plan()
    shadow = serving_plan_of(plan, None, revision=4)
    assert shadow.candidate == "v2" and shadow.canary_percent == 0 and shadow.shadow_percent > 0
    canary = serving_plan_of(progress(plan, PASS, 1005.0).plan, None, revision=5)
    assert canary.canary_percent == 10.0 and canary.rollout_id == plan.id
    assert serving_plan_of(replace(plan, state="rolled_back"), None, revision=6).candidate is None


def _good_figures(**cand):
    return StageFigures(candidate=VersionFigures(**{"requests": 40, "error_rate": 0.0, "p99_ms": 30.0, "p50_ms": 10.0,
                                                    "full_share": 0.95, **cand}),
                        serving=VersionFigures(requests=400, error_rate=0.0, p99_ms=28.0, p50_ms=9.0, full_share=0.96))


def _totals(name, impressions, clicked, carted, t0=0.0):
    return VariantTotals(variant=name, users=300, impressions=impressions, clicked=clicked, carted=carted, first_ts=t0, last_ts=t0 + 60)


def test_canary_gates_pass_a_good_candidate_and_stop_a_slow_or_degraded_one() -> None:
    stage = parse_stages("10%,100%")[0]
    quality = (_totals("v2", 500, 60, 20), _totals("v1", 5000, 610, 190))
    assert evaluate(stage, _good_figures(), quality, POLICY).verdict == "pass"
    slow = evaluate(stage, _good_figures(p50_ms=25.0), quality, POLICY)
    assert slow.verdict == "fail" and [c["name"] for c in slow.failed()] == ["latency_p50"]
    out_of_slo = evaluate(stage, _good_figures(p99_ms=200.0), quality, POLICY)
    assert [c["name"] for c in out_of_slo.failed()] == ["slo_p99"]
    degraded = evaluate(stage, _good_figures(full_share=0.5), quality, POLICY)
    assert [c["name"] for c in degraded.failed()] == ["tier_mix_full"]
    errors = evaluate(stage, _good_figures(error_rate=0.1), quality, POLICY)
    assert [c["name"] for c in errors.failed()] == ["slo_errors"]
    assert evaluate(stage, _good_figures(requests=3), quality, POLICY).verdict == "insufficient"


def test_the_latency_gate_stops_a_candidate_slower_by_a_ratio_even_when_the_medians_are_a_few_ms() -> None:
    """Figures of a stack run (tests/test_rollout_stack.py, quiet host): a 10x-trees bundle ranked
    with a median of 8.4 ms against the serving bundle's 3.2 ms; an identical one 3.4 against 3.6."""
    stage = parse_stages("20%,100%")[0]
    quality = (_totals("v2", 500, 60, 20), _totals("v1", 5000, 610, 190))
    fast_serving = dict(serving=VersionFigures(requests=400, error_rate=0.0, p99_ms=26.0, p50_ms=3.19, full_share=1.0))
    slow = evaluate(stage, replace(_good_figures(p50_ms=8.39, full_share=1.0), **fast_serving), quality, POLICY)
    assert [c["name"] for c in slow.failed()] == ["latency_p50"]
    same = replace(_good_figures(p50_ms=3.41, full_share=1.0),
                   serving=VersionFigures(requests=400, error_rate=0.0, p99_ms=26.0, p50_ms=3.58, full_share=1.0))
    assert evaluate(stage, same, quality, POLICY).verdict == "pass"


def test_the_100_percent_stage_is_judged_against_absolute_limits() -> None:
    stage = parse_stages("100%")[0]
    alone = StageFigures(candidate=VersionFigures(requests=40, error_rate=0.0, p99_ms=30.0, full_share=0.95))
    assert evaluate(stage, alone, None, POLICY).verdict == "pass"
    slow = StageFigures(candidate=VersionFigures(requests=40, error_rate=0.0, p99_ms=400.0, full_share=0.95))
    assert [c["name"] for c in evaluate(stage, slow, None, POLICY).failed()] == ["slo_p99"]
    degraded = StageFigures(candidate=VersionFigures(requests=40, error_rate=0.02, p99_ms=30.0, full_share=0.5))
    assert {c["name"] for c in evaluate(stage, degraded, None, POLICY).failed()} == {"slo_errors", "tier_mix_full"}


def test_quality_gate_stops_a_candidate_with_significantly_lower_ctr() -> None:
    stage = parse_stages("10%,100%")[0]
    worse = (_totals("v2", 1000, 40, 10), _totals("v1", 5000, 600, 200))
    result = evaluate(stage, _good_figures(), worse, POLICY)
    assert result.verdict == "fail" and {c["name"] for c in result.failed()} == {"quality_ctr", "quality_add_to_cart"}
    few = (_totals("v2", 20, 0, 0), _totals("v1", 5000, 600, 200))
    assert evaluate(stage, _good_figures(), few, POLICY).verdict == "insufficient"
    assert evaluate(stage, _good_figures(), None, POLICY).verdict == "insufficient"


def test_shadow_gates() -> None:
    stage = parse_stages("shadow,100%")[0]
    good = {"compared": 60, "errors": 0, "rank_corr": 0.8, "overlap_at_8": 0.7, "serving_p99_ms": 20.0, "candidate_p99_ms": 24.0,
            "latency_ratio_p50": 1.05}
    assert evaluate(stage, StageFigures(shadow=good), None, POLICY).verdict == "pass"
    inverted = {**good, "rank_corr": -0.3, "overlap_at_8": 0.05}
    assert {c["name"] for c in evaluate(stage, StageFigures(shadow=inverted), None, POLICY).failed()} == {
        "shadow_rank_correlation", "shadow_overlap_at_8"}
    slow = {**good, "latency_ratio_p50": 2.6}
    assert [c["name"] for c in evaluate(stage, StageFigures(shadow=slow), None, POLICY).failed()] == ["shadow_latency_ratio"]
    out_of_slo = {**good, "candidate_p99_ms": 400.0}
    assert [c["name"] for c in evaluate(stage, StageFigures(shadow=out_of_slo), None, POLICY).failed()] == ["shadow_p99"]
    assert evaluate(stage, StageFigures(shadow={"compared": 3}), None, POLICY).verdict == "insufficient"


def test_figures_add_the_cells_up() -> None:
    cell = lambda n, p99, full, rev=3: {"revision": rev, "by_version": {  # noqa: E731
        "v2": {"requests": n, "error_rate": 0.0, "p99_ms": p99, "tier_mix": {"full": full}},
        "v1": {"requests": 10 * n, "error_rate": 0.01, "p99_ms": 20.0, "tier_mix": {"full": 1.0}}},
        "shadow": {"candidate": "v2", "compared": n, "errors": 0, "rank_corr": 0.5, "overlap_at_8": 0.5,
                   "serving_p99_ms": 10.0, "candidate_p99_ms": p99}}
    fig = figures_of([cell(10, 30.0, 1.0), cell(30, 50.0, 0.5), cell(99, 900.0, 0.0, rev=2)], candidate="v2",
                     baseline="v1", revision=3)
    assert fig.candidate.requests == 40 and fig.candidate.p99_ms == 50.0
    assert fig.candidate.full_share == pytest.approx(0.625) and fig.serving.error_rate == pytest.approx(0.01)
    assert fig.shadow["compared"] == 40 and fig.shadow["rank_corr"] == pytest.approx(0.5)
