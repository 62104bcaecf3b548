"""Reports and verdicts from synthetic load records: bounds, invalid game days, timeline, JSON/Markdown/PNG."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, strategies as st

from chaos.measurement import MET, NOT_MEASURED as M_NOT_MEASURED, NOT_MET, QualityRto, Rpo, Rto, compute_rto, to_requests
from chaos.report import build_report, render_markdown, summary_lines, timeline, write_report
from chaos.verdicts import (
    FAIL, INVALID, NOT_APPLICABLE, NOT_MEASURED, PASS, Targets, invalid_reasons, overall, still_answering, verdicts,
)

T0 = 1_800_000_000.0


def records(*, seconds: int = 60, rate: int = 10, bad: tuple[float, float] | None = None, empty_at: tuple[float, ...] = (),
            slow: tuple[float, float] | None = None) -> list[dict[str, Any]]:
    out = []
    for i in range(seconds * rate):
        offset = i / rate
        failing = bad is not None and bad[0] <= offset < bad[1]
        is_slow = slow is not None and slow[0] <= offset < slow[1]
        empty = any(abs(offset - e) < 1e-9 for e in empty_at)
        lat = 400.0 if is_slow else 20.0
        out.append({"t": T0 + offset, "done": T0 + offset + lat / 1000, "kind": "homepage", "ok": not failing and not empty,
                    "status": 503 if failing else 200, "latency_ms": lat, "geo": "us", "empty": empty,
                    "tier": None if failing else ("full" if i % 4 else "segment"), "personalised": not failing and bool(i % 4),
                    "region": "us-west", "slate_len": 0 if empty else 8, "first_ok": not failing, "retries": int(failing)})
    return out


def rto_of(recs: list[dict[str, Any]], fault_offset: float) -> Rto:
    return compute_rto(to_requests(recs), fault_at=T0 + fault_offset)


def status_of(found: list[Any], name: str, kind: str) -> str:
    return next(v.status for v in found if v.name == name and v.kind == kind)


def _rpo(seconds: float | None, lost: int = 0, acked: int = 100) -> Rpo:
    return Rpo(status="measured" if seconds is not None else M_NOT_MEASURED, seconds=seconds, lost=lost, acknowledged=acked,
               newest_durable_at=None)


def test_good_game_day_passes_everything() -> None:
    recs = records(bad=(10, 13))
    rto = rto_of(recs, 10)
    found = verdicts(rto=rto, quality=None, rpo=_rpo(0.5, 2), region_lost=True, empty_slates=0)
    assert rto.measured and rto.seconds == 3.0
    assert [v.status for v in found] == [PASS] * 5 and overall(found) == PASS


def test_an_rto_never_met_fails_the_bounds_the_run_outlasted_only() -> None:
    recs = records(bad=(10, 60))
    rto = rto_of(recs, 10)
    assert rto.status == NOT_MET and rto.covered_s >= 30
    found = verdicts(rto=rto, quality=None, rpo=None, region_lost=False, empty_slates=0)
    assert status_of(found, "availability RTO", "target") == FAIL  # 15 s: the run outlasted it
    assert status_of(found, "availability RTO", "requirement") == NOT_MEASURED  # 10 min: it did not
    assert overall(found) == FAIL


def test_no_acknowledged_event_never_passes() -> None:
    found = verdicts(rto=Rto(MET, 0.0, T0, ""), quality=None, rpo=_rpo(None, acked=0), region_lost=True, empty_slates=0)
    assert status_of(found, "RPO", "requirement") == NOT_MEASURED and overall(found) != PASS


@pytest.mark.parametrize("rto_s, rpo_s, empty, expected", [
    (0.0, 0.0, 0, [PASS, PASS, PASS, PASS, PASS]),
    (15.0, 2.0, 0, [PASS, PASS, PASS, PASS, PASS]),          # targets are "at most"
    (15.1, 2.1, 0, [PASS, FAIL, PASS, FAIL, PASS]),
    (599.9, 299.9, 0, [PASS, FAIL, PASS, FAIL, PASS]),
    (600.0, 300.0, 0, [FAIL, FAIL, FAIL, FAIL, PASS]),       # requirements are "strictly below"
    (1.0, None, 0, [PASS, PASS, NOT_APPLICABLE, NOT_APPLICABLE, PASS]),
    (None, 1.0, 3, [NOT_MEASURED, NOT_MEASURED, PASS, PASS, FAIL]),
])
def test_verdict_table(rto_s: float | None, rpo_s: float | None, empty: int, expected: list[str]) -> None:
    rto = Rto(status=MET if rto_s is not None else M_NOT_MEASURED, seconds=rto_s, recovered_at=None, reason="")
    found = verdicts(rto=rto, quality=None, rpo=None if rpo_s is None else _rpo(rpo_s), region_lost=rpo_s is not None,
                     empty_slates=empty)
    assert [v.status for v in found] == expected


@pytest.mark.parametrize(("status", "seconds", "covered_s", "expected", "whole"), [
    (MET, 75.0, 200.0, PASS, PASS),  # personalisation back within the 120 s budget
    (MET, 150.0, 200.0, FAIL, FAIL),  # back, but after the budget
    (NOT_MET, None, 120.0, FAIL, FAIL),  # never back in a run that outlasted the budget
    (NOT_MET, None, 45.0, NOT_MEASURED, "incomplete"),  # never back, but the run was shorter than the budget
    (M_NOT_MEASURED, None, 0.0, NOT_MEASURED, "incomplete"),
])
def test_the_quality_rto_is_judged_against_its_budget(status: str, seconds: float | None, covered_s: float,
                                                      expected: str, whole: str) -> None:
    quality = QualityRto(status=status, seconds=seconds, baseline_share=0.9, reason="why", geographies=("us",),
                         covered_s=covered_s)
    found = verdicts(rto=Rto(MET, 0.0, T0, ""), quality=quality, rpo=None, region_lost=False, empty_slates=0)
    verdict = next(v for v in found if v.name == "quality RTO")
    assert (verdict.kind, verdict.limit, verdict.status, verdict.note) == ("target", "<= 120 s", expected, "why")
    assert overall(found) == whole


def test_the_quality_budget_comes_from_the_topology() -> None:
    from regions.topology import Settings

    quality = QualityRto(status=NOT_MET, seconds=None, baseline_share=0.9, reason="", geographies=("us",), covered_s=45.0)
    tight = Targets.of(Settings(quality_rto_budget_s=20.0))
    found = verdicts(rto=Rto(MET, 0.0, T0, ""), quality=quality, rpo=None, region_lost=False, empty_slates=0, targets=tight)
    assert tight.quality_rto_s == 20.0 and status_of(found, "quality RTO", "target") == FAIL and overall(found) == FAIL


@given(rto_s=st.floats(0, 2000), rpo_s=st.floats(0, 2000), empty=st.integers(0, 5))
def test_overall_fails_exactly_when_a_check_fails(rto_s: float, rpo_s: float, empty: int) -> None:
    t = Targets()
    found = verdicts(rto=Rto(MET, rto_s, None, ""), quality=None, rpo=_rpo(rpo_s), region_lost=True, empty_slates=empty, targets=t)
    bad = rto_s > t.target_rto_s or rpo_s > t.target_rpo_s or empty > 0
    assert (overall(found) == FAIL) == bad


GOOD_LOAD = {"valid": True, "invalid_reasons": []}
KILLED = [{"activity": {"type": "action", "name": "kill-us-east"}, "status": "succeeded", "output": {"at": T0}}]


def test_a_failed_fault_action_is_invalid_never_pass() -> None:
    runs = [{"activity": {"type": "action", "name": "kill-us-east"}, "status": "failed",
             "exception": ["Traceback", "ActivityFailed: kill_region failed: unknown region 'mars'\n"]}]
    reasons = invalid_reasons(method_runs=runs, fault_at=None, load=GOOD_LOAD, load_error=None, lost_region="mars",
                              lost_region_answers=0)
    assert any("kill-us-east" in r and "unknown region" in r for r in reasons)
    assert overall([], invalid=reasons) == INVALID


def test_a_short_load_and_an_unobserved_fault_are_invalid() -> None:
    short = {"valid": False, "invalid_reasons": ["the load sent 30.0 req/s, more than 2 % below its rate 40 req/s"]}
    assert invalid_reasons(method_runs=KILLED, fault_at=T0, load=short, load_error=None, lost_region=None,
                           lost_region_answers=0) == short["invalid_reasons"]
    recs = [{"kind": "homepage", "ok": True, "region": "us-east", "t": T0 + s, "done": T0 + s} for s in (1.0, 3.0, 4.0)]
    answers = still_answering(recs, region="us-east", fault_at=T0, until=None)
    assert answers == 2  # the one at +1 s was in flight
    reasons = invalid_reasons(method_runs=KILLED, fault_at=T0, load=GOOD_LOAD, load_error=None, lost_region="us-east",
                              lost_region_answers=answers)
    assert reasons and "still answered 2 reads" in reasons[0]
    assert invalid_reasons(method_runs=KILLED, fault_at=T0, load=GOOD_LOAD, load_error=None, lost_region="us-east",
                           lost_region_answers=0) == []


def test_a_steady_state_not_met_before_the_method_is_invalid_with_the_failing_probe() -> None:
    hypothesis = {"before": False, "after": None, "violations": ["before: routed-around: {'verdict': 'violated: x'}"]}
    reasons = invalid_reasons(method_runs=[], fault_at=None, load=GOOD_LOAD, load_error=None, lost_region=None,
                              lost_region_answers=0, hypothesis=hypothesis, unsettled="the stack did not settle within 20 s")
    assert reasons[0] == ("the steady state before the method was not met, so no fault was injected "
                          "(routed-around: {'verdict': 'violated: x'}); the stack did not settle within 20 s")
    assert "no fault action ran" in reasons and overall([], invalid=reasons) == INVALID
    met = {"before": True, "after": True, "violations": []}
    assert invalid_reasons(method_runs=KILLED, fault_at=T0, load=GOOD_LOAD, load_error=None, lost_region=None,
                           lost_region_answers=0, hypothesis=met, unsettled="ignored when the hypothesis held") == []


def test_timeline_buckets_cover_every_record() -> None:
    recs = records(seconds=5, bad=(1, 2), slow=(3, 4))
    buckets = timeline(recs, origin=T0)
    assert [b.t for b in buckets] == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert sum(b.requests for b in buckets) == len(recs)
    assert buckets[1].success_rate == 0.0 and buckets[1].tiers == {"error": 10}
    assert buckets[3].p99_ms == 400.0 and buckets[0].p99_ms == 20.0


def test_report_files_hold_the_numbers(tmp_path: Path) -> None:
    recs = records(bad=(10, 13), empty_at=(5.0,))
    rto = rto_of(recs, 10)
    rpo = Rpo(status="measured", seconds=0.75, lost=3, acknowledged=120, newest_durable_at=T0 + 9.25, lost_ids=("a", "b", "c"))
    samples = [{"t": T0 + s, "weights": {"us": {"us-east": 50 if s < 12 else 0, "us-west": 50 if s < 12 else 100}}}
               for s in range(0, 60, 2)]
    report = build_report(experiment="region-loss", title="A region is lost", records=recs, fault_at=T0 + 10, rto=rto,
                          rpo=rpo, status="completed", samples=samples, notes=["synthetic"])

    paths = write_report(report, tmp_path)

    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = paths["md"].read_text()
    assert f"availability RTO: {rto.seconds:.2f} s" in md and "RPO: 0.75 s, 3 of 120 acknowledged events lost" in md
    assert "lost event ids (first 3): a, b, c" in md
    assert "empty homepage slates 1" in md and "| RPO | target | <= 2 s | 0.75 | pass |" in md
    saved = json.loads(paths["json"].read_text())
    assert saved["verdict"] == FAIL  # the one empty slate breaks the promise
    assert saved["load"]["requests"] == len(recs) and saved["fault_offset_s"] == pytest.approx(10.0)
    assert saved["rpo"]["lost"] == 3 and len(saved["samples"]) == len(samples)
    assert summary_lines(saved)[0] == "region-loss: completed, verdict fail"


def test_an_invalid_report_says_why() -> None:
    recs = records(seconds=40)
    report = build_report(experiment="x", title="t", records=recs, fault_at=T0 + 1, rto=rto_of(recs, 1), rpo=None,
                          status="completed", invalid=["fault action 'kill' failed: boom"])
    assert report["verdict"] == INVALID and "**INVALID**: fault action 'kill' failed: boom" in render_markdown(report)
    assert "  INVALID: fault action 'kill' failed: boom" in summary_lines(report)


def test_markdown_says_when_rpo_does_not_apply() -> None:
    recs = records(seconds=40)
    report = build_report(experiment="stale-features", title="t", records=recs, fault_at=T0 + 1, rto=rto_of(recs, 1),
                          rpo=None, status="completed")
    assert "RPO: not applicable" in render_markdown(report) and report["verdict"] == PASS


def test_the_requirements_are_the_topologys_budgets() -> None:
    from regions.topology import Settings

    tight = Targets.of(Settings(rto_budget_s=30.0, rpo_budget_s=1.0))
    assert (tight.requirement_rto_s, tight.requirement_rpo_s) == (30.0, 1.0)
    rto, rpo = Rto(MET, 45.0, None, ""), _rpo(0.5)
    found = {t: verdicts(rto=rto, quality=None, rpo=rpo, region_lost=True, empty_slates=0, **({"targets": tight} if t else {}))
             for t in (False, True)}
    assert status_of(found[False], "availability RTO", "requirement") == PASS
    assert status_of(found[True], "availability RTO", "requirement") == FAIL
    assert status_of(found[False], "RPO", "requirement") == PASS and status_of(found[True], "RPO", "requirement") == PASS
    assert status_of(verdicts(rto=rto, quality=None, rpo=_rpo(1.5), region_lost=True, empty_slates=0, targets=tight),
                     "RPO", "requirement") == FAIL