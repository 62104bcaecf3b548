"""Reports from synthetic load records: verdicts, timeline, JSON/Markdown/PNG."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, strategies as st

from chaos.measurement import Rpo, Rto, compute_rto
from chaos.report import (FAIL, NOT_APPLICABLE, NOT_MEASURED, PASS, Targets, build_report, overall, render_markdown,
                          summary_lines, timeline, to_requests, verdicts, write_report)

T0 = 1_800_000_000.0


def records(*, seconds: int = 60, rate: int = 10, bad: tuple[float, float] | None = None, empty_at: tuple[float, ...] = (),
            slow: tuple[float, float] | None = None) -> list[dict[str, Any]]:
    out = []
    for i in range(seconds * rate):
        offset = i / rate
        failing = bad is not None and bad[0] <= offset < bad[1]
        is_slow = slow is not None and slow[0] <= offset < slow[1]
        out.append({"t": T0 + offset, "kind": "homepage", "ok": not failing, "status": 503 if failing else 200,
                    "latency_ms": 400.0 if is_slow else 20.0, "tier": None if failing else ("full" if i % 4 else "segment"),
                    "region": "us-west", "slate_len": 0 if any(abs(offset - e) < 1e-9 for e in empty_at) else 8})
    return out


def rto_of(recs: list[dict[str, Any]], fault_offset: float) -> Rto:
    return compute_rto(to_requests(recs), fault_at=T0 + fault_offset)


def status_of(found: list[Any], name: str, kind: str) -> str:
    return next(v.status for v in found if v.name == name and v.kind == kind)


def test_good_game_day_passes_everything() -> None:
    recs = records(bad=(10, 13))
    rto = rto_of(recs, 10)
    found = verdicts(rto=rto, rpo=Rpo(seconds=0.5, lost=2, acknowledged=100, newest_durable_at=T0 + 9.5), empty_slates=0)
    assert rto.measured and rto.seconds == pytest.approx(3.0, abs=0.3)
    assert [v.status for v in found] == [PASS] * 5 and overall(found) == PASS


def test_bad_game_day_fails_targets_and_requirements() -> None:
    recs = records(bad=(10, 40), empty_at=(50.0,))  # recovery at 40 s leaves only 20 s of good load: not measured
    rto = rto_of(recs, 10)
    found = verdicts(rto=rto, rpo=Rpo(seconds=400.0, lost=900, acknowledged=1000, newest_durable_at=None), empty_slates=1)
    assert not rto.measured
    assert status_of(found, "RTO", "requirement") == NOT_MEASURED
    assert status_of(found, "RPO", "requirement") == FAIL and status_of(found, "RPO", "target") == FAIL
    assert status_of(found, "empty homepage slates", "target") == FAIL
    assert overall(found) == FAIL


@pytest.mark.parametrize("rto_s, rpo_s, empty, expected", [
    (0.0, 0.0, 0, [PASS, PASS, PASS, PASS, PASS]),
    (15.0, 2.0, 0, [PASS, PASS, PASS, PASS, PASS]),          # targets are "at most"
    (15.1, 2.1, 0, [PASS, PASS, FAIL, FAIL, PASS]),
    (599.9, 299.9, 0, [PASS, PASS, FAIL, FAIL, PASS]),
    (600.0, 300.0, 0, [FAIL, FAIL, FAIL, FAIL, PASS]),       # requirements are "strictly below"
    (1.0, None, 0, [PASS, NOT_APPLICABLE, PASS, NOT_APPLICABLE, PASS]),
    (None, 1.0, 3, [NOT_MEASURED, PASS, NOT_MEASURED, PASS, FAIL]),
])
def test_verdict_table(rto_s: float | None, rpo_s: float | None, empty: int, expected: list[str]) -> None:
    rto = Rto(measured=rto_s is not None, seconds=rto_s, recovered_at=None, reason="")
    rpo = None if rpo_s is None else Rpo(seconds=rpo_s, lost=0, acknowledged=0, newest_durable_at=None)
    assert [v.status for v in verdicts(rto=rto, rpo=rpo, empty_slates=empty)] == expected


@given(rto_s=st.floats(0, 2000), rpo_s=st.floats(0, 2000), empty=st.integers(0, 5))
def test_overall_fails_exactly_when_a_check_fails(rto_s: float, rpo_s: float, empty: int) -> None:
    t = Targets()
    found = verdicts(rto=Rto(True, rto_s, None, ""), rpo=Rpo(rpo_s, 0, 0, None), empty_slates=empty, targets=t)
    bad = rto_s > t.target_rto_s or rpo_s > t.target_rpo_s or empty > 0
    assert (overall(found) == FAIL) == bad


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
    rpo = Rpo(seconds=0.75, lost=3, acknowledged=120, newest_durable_at=T0 + 9.25)
    samples = [{"t": T0 + s, "weights": {"us": {"us-east": 50 if s < 12 else 0, "us-west": 50 if s < 12 else 100}}}
               for s in range(0, 60, 2)]
    report = build_report(experiment="region-loss", title="A region is lost", records=recs, fault_at=T0 + 10, rto=rto,
                          rpo=rpo, status="completed", samples=samples, notes=["synthetic"])

    paths = write_report(report, tmp_path)

    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = paths["md"].read_text()
    assert f"RTO: {rto.seconds:.2f} s" in md and "RPO: 0.75 s, 3 of 120 acknowledged events lost" in md
    assert "empty homepage slates 1" in md and "| RPO | target | <= 2 s | 0.75 | pass |" in md
    saved = json.loads(paths["json"].read_text())
    assert saved["verdict"] == FAIL  # the one empty slate breaks the promise
    assert saved["load"]["requests"] == len(recs) and saved["fault_offset_s"] == pytest.approx(10.0)
    assert saved["rpo"]["lost"] == 3 and len(saved["samples"]) == len(samples)
    assert summary_lines(saved)[0] == "region-loss: completed, verdict fail"


def test_markdown_says_when_rpo_does_not_apply() -> None:
    recs = records(seconds=40)
    report = build_report(experiment="stale-features", title="t", records=recs, fault_at=T0 + 1, rto=rto_of(recs, 1),
                          rpo=None, status="completed")
    assert "RPO: not applicable" in render_markdown(report) and report["verdict"] == PASS


def test_the_requirements_are_the_topologys_budgets() -> None:
    from regions.topology import Settings

    tight = Targets.of(Settings(rto_budget_s=30.0, rpo_budget_s=1.0))
    assert (tight.requirement_rto_s, tight.requirement_rpo_s) == (30.0, 1.0)
    rto, rpo = Rto(True, 45.0, None, ""), Rpo(0.5, 0, 0, None)
    by_default = {(v.name, v.kind): v.status for v in verdicts(rto=rto, rpo=rpo, empty_slates=0)}
    by_topology = {(v.name, v.kind): v.status for v in verdicts(rto=rto, rpo=rpo, empty_slates=0, targets=tight)}
    assert by_default[("RTO", "requirement")] == PASS and by_topology[("RTO", "requirement")] == FAIL
