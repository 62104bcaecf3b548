"""The pieces of the game-day table: the fault window, steering time, the hypothesis read from a
chaoslib journal, and the row built from a game day's files."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chaos.measurement import first_rollback_at
from chaos.gameday_io import summarize_run, summarize_runs
from chaos.measurement import Rto
from chaos.report import build_report, hypothesis_of, weights_changed_after, window_summary
from chaos.verdicts import hypothesis_verdicts
from regions.errors import InputError


def _rec(t: float, *, tier: str | None = "full", ok: bool = True, items: int = 8, latency: float = 10.0) -> dict[str, Any]:
    return {"t": t, "kind": "homepage", "ok": ok, "tier": tier if ok else None, "slate_len": items, "latency_ms": latency}


def test_window_summary_counts_only_the_fault_window() -> None:
    records = [_rec(0.5), _rec(1.0, tier="segment"), _rec(1.5, ok=False), _rec(2.0, items=0), _rec(3.0, tier="popularity")]
    found = window_summary(records, start=1.0, end=3.0)
    assert found is not None
    assert found["requests"] == 3 and found["success_rate"] == pytest.approx(2 / 3) and found["empty_slates"] == 1
    assert found["tiers"] == {"segment": 1, "error": 1, "full": 1}
    assert window_summary(records, start=None, end=3.0) is None


@given(st.lists(st.floats(min_value=0, max_value=100), max_size=40), st.floats(0, 100), st.floats(0, 100))
def test_window_summary_never_counts_outside_the_window(times: list[float], a: float, b: float) -> None:
    start, end = min(a, b), max(a, b)
    found = window_summary([_rec(t) for t in times], start=start, end=end)
    assert found is not None and found["requests"] == sum(1 for t in times if start <= t < end)


@pytest.mark.parametrize(("samples", "fault_at", "expected"), [
    ([{"t": 0, "weights": {"us": {"a": 50, "b": 50}}}, {"t": 2, "weights": {"us": {"a": 50, "b": 50}}},
      {"t": 3.5, "weights": {"us": {"a": 0, "b": 100}}}], 1.0, 2.5),
    ([{"t": 0, "weights": {"us": {"a": 50}}}, {"t": 2, "weights": {"us": {"a": 50}}}], 1.0, None),
    ([{"t": 2, "weights": {"us": {"a": 0}}}], 1.0, None),               # nothing before the fault to compare with
    ([{"t": 0, "weights": {"us": {"a": 50}}}, {"t": 2, "error": "x"}, {"t": 4, "weights": {"us": {"a": 0}}}], 1.0, 3.0),
    ([{"t": 0, "weights": {"us": {"a": 50}}}], None, None),
])
def test_weights_changed_after(samples: list[dict[str, Any]], fault_at: float | None, expected: float | None) -> None:
    assert weights_changed_after(samples, fault_at=fault_at) == expected


def _journal(before: bool | None, after: bool | None, *, output: Any = {"verdict": "violated: x"}) -> dict[str, Any]:
    def state(met: bool) -> dict[str, Any]:
        return {"steady_state_met": met, "probes": [
            {"activity": {"name": "p"}, "status": "succeeded", "tolerance_met": met, "output": output}]}
    states = {"before": state(before) if before is not None else None, "after": state(after) if after is not None else None}
    return {"steady_states": states, "deviated": after is False,
            "rollbacks": [{"output": None}, {"output": {"at": 12.5}}]}


@pytest.mark.parametrize(("before", "after", "statuses"), [
    (True, True, ["pass", "pass"]), (True, False, ["pass", "fail"]),
    (False, None, ["fail", "not measured"]), (None, None, ["not measured", "not measured"]),
])
def test_hypothesis_verdicts_follow_the_journal(before: bool | None, after: bool | None, statuses: list[str]) -> None:
    hyp = hypothesis_of(_journal(before, after))
    assert [v.status for v in hypothesis_verdicts(hyp)] == statuses
    assert len(hyp["violations"]) == (before is False) + (after is False)
    assert hyp["deviated"] is (after is False)


def test_a_deviated_hypothesis_fails_the_game_day() -> None:
    rto = Rto(status="met", seconds=0.0, recovered_at=1.0, reason="")
    good = build_report(experiment="x", title="x", records=[_rec(1.0)], fault_at=1.0, rto=rto, rpo=None, status="completed",
                        hypothesis=hypothesis_of(_journal(True, True)))
    bad = build_report(experiment="x", title="x", records=[_rec(1.0)], fault_at=1.0, rto=rto, rpo=None, status="completed",
                       hypothesis=hypothesis_of(_journal(True, False)))
    assert good["verdict"] == "pass" and bad["verdict"] == "fail"


def test_first_rollback_at_skips_rollbacks_without_a_time() -> None:
    assert first_rollback_at(_journal(True, True)) == 12.5
    assert first_rollback_at({"rollbacks": []}) is None and first_rollback_at({}) is None


def test_summarize_runs_reads_each_game_day_dir(tmp_path: Path) -> None:
    run = tmp_path / "runs" / "x-1"
    run.mkdir(parents=True)
    records = [_rec(0.5), _rec(1.5, tier="segment"), _rec(13.0)]
    (run / "load.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    journal = _journal(True, True)
    (run / "journal.json").write_text(json.dumps(journal))
    rto = Rto(status="met", seconds=0.0, recovered_at=1.0, reason="")
    report = build_report(experiment="x", title="x", records=records, fault_at=1.0, rto=rto, rpo=None, status="completed",
                          samples=[{"t": 0.0, "weights": {"us": {"a": 50}}}, {"t": 3.0, "weights": {"us": {"a": 0}}}],
                          hypothesis=hypothesis_of(journal), fault_end=12.5)
    (run / "report.json").write_text(json.dumps(report))
    (tmp_path / "runs" / "not-a-run").mkdir()
    rows = summarize_runs(tmp_path / "runs")
    assert [r["experiment"] for r in rows] == ["x"]
    assert rows[0]["during_fault"]["tiers"] == {"segment": 1} and rows[0]["weights_changed_after_s"] == 2.0
    assert rows[0] == summarize_run(run)
    with pytest.raises(InputError):
        summarize_runs(tmp_path / "nowhere")


def test_markdown_table_has_one_row_per_game_day_with_the_reasons_of_an_invalid_one() -> None:
    from chaos.gameday_table import HEADERS, markdown, row_cells

    row = {"experiment": "region-loss", "rto_s": None, "rto_status": "not measured", "quality_rto_s": 12.0,
           "quality_rto_status": "met", "first_attempt_failure_rate": 0.0253, "rpo_s": 0.0, "lost": 2, "acknowledged": 30,
           "empty_slates": 0, "during_fault": {"requests": 10, "success_rate": 1.0, "p99_ms": 31.2, "tiers": {"full": 9, "segment": 1}},
           "weights_changed_after_s": 3.0, "hypothesis": {"before": False, "after": None}, "achieved_rate": 39.9,
           "p99_schedule_lag_ms": 6.7, "verdict": "invalid", "invalid_reasons": ["no fault action ran", "a|b"]}
    cells = row_cells(row)
    assert len(cells) == len(HEADERS)
    assert cells[1:6] == ["not measured", "12.00", "2.53", "0.00", "2/30"]
    assert cells[7] == "100.0%, 31 ms; full 90%, segment 10%" and cells[10] == "39.9, 7 ms"
    lines = markdown([row, {**row, "experiment": "ranking-latency", "invalid_reasons": [], "verdict": "pass"}]).splitlines()
    assert len(lines) == 4 and lines[0].count("|") == len(HEADERS) + 1
    assert lines[2].endswith("| invalid; no fault action ran; a\\|b |") and lines[3].endswith("| pass |")
