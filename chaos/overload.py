"""The overload verdict: did the SLO hold through the WHOLE run, and on which tiers. Pure.

An overload game day (a survivor taking its lost peer's traffic beyond its full-ranking
capacity) is judged on every request the load sent, not on a recovery window: cells must degrade
before they fail, so there is nothing to recover from. Targets: p99 <= 180 ms and success >=
99.9 % (chaos.measurement's SLO), latency from each request's scheduled send (chaos.load). The
tier mix of the homepages (and of the survivor's homepages) is reported beside the capacity
model's prediction (capacity.overload), which the caller passes in.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from capacity.calibration import load_calibration
from capacity.overload import for_local_stack, predict_overload
from capacity.settings import CapacitySettings
from chaos.measurement import SLO_P99_MS, SLO_SUCCESS
from chaos.report import window_summary
from chaos.verdicts import FAIL, NOT_MEASURED, PASS, Verdict

OVERLOAD_TAG = "overload"
"""Experiments with this tag are judged through the whole run as well (chaos.gameday)."""


def whole_run(records: Sequence[Mapping[str, Any]], *, region: str | None = None) -> dict[str, Any]:
    """Requests, success rate, p99, empty slates and tier mix of every record (window_summary over
    the whole run), and the homepage tier shares, of all homepages and of those `region` answered."""
    starts = [float(r["t"]) for r in records if "t" in r]
    summary = window_summary(records, start=min(starts), end=max(starts) + 1.0) if starts else {
        "start": None, "end": None, "requests": 0, "success_rate": None, "p99_ms": None, "empty_slates": 0, "tiers": {}}
    homepages = [r for r in records if r.get("kind") == "homepage" and r.get("ok")]
    summary["homepage_mix"] = shares(r.get("tier") for r in homepages)
    if region is not None:
        summary["region"] = region
        summary["region_mix"] = shares(r.get("tier") for r in homepages if r.get("region") == region)
    return summary


def shares(tiers: Any) -> dict[str, float]:
    counts: dict[str, int] = {}
    for tier in tiers:
        key = str(tier)
        counts[key] = counts.get(key, 0) + 1
    total = sum(counts.values())
    return {k: n / total for k, n in sorted(counts.items())} if total else {}


def overload_verdicts(summary: Mapping[str, Any], *, p99_ms: float = SLO_P99_MS,
                      success: float = SLO_SUCCESS) -> list[Verdict]:
    """Whole-run p99 and success against the SLO (targets, inclusive)."""
    p99, rate = summary.get("p99_ms"), summary.get("success_rate")
    return [
        Verdict("whole-run p99", "target", f"<= {p99_ms:g} ms", p99,
                NOT_MEASURED if p99 is None else (PASS if p99 <= p99_ms else FAIL)),
        Verdict("whole-run success", "target", f">= {success:.1%}", rate,
                NOT_MEASURED if rate is None else (PASS if rate >= success else FAIL)),
    ]


def held(summary: Mapping[str, Any]) -> bool:
    """Both whole-run targets passed."""
    return all(v.status == PASS for v in overload_verdicts(summary))


def survivor_of(experiment: Mapping[str, Any]) -> tuple[str | None, float | None]:
    """(region, cores) of the method's limit_cell_cpu action: the survivor and its size."""
    for activity in experiment.get("method", []):
        provider = activity.get("provider", {})
        if activity.get("type") == "action" and provider.get("func") == "limit_cell_cpu":
            args = provider.get("arguments", {})
            return str(args.get("region")), float(args.get("cores", 0.5))
    return None, None


def overload_section(records: Sequence[Mapping[str, Any]], *, experiment: Mapping[str, Any], topology: Any,
                     lost: str | None, load_rate: float, calibration_path: Any = None) -> dict[str, Any]:
    """The report's `overload` part: the whole run (chaos.overload.whole_run) of every request and of
    the survivor's homepages, the verdicts, and the capacity model's prediction for this load."""
    survivor, cores = survivor_of(experiment)
    summary = whole_run(records, region=survivor)
    prediction: dict[str, Any] | None = None
    problem = ""
    if survivor is not None and cores is not None and lost is not None:
        try:
            calibration = load_calibration(calibration_path)
            settings = for_local_stack(CapacitySettings(), load_qps=load_rate)
            prediction = predict_overload(topology, calibration, settings, failed=lost, survivor=survivor,
                                          cores=cores).to_dict()
        except Exception as exc:  # the prediction is reported beside the figures, never the reason a report is lost
            problem = f"no prediction: {exc}"
    return {"whole_run": summary, "prediction": prediction, "problem": problem,
            "verdicts": overload_verdicts(summary)}


def mix_text(mix: Mapping[str, float]) -> str:
    return ", ".join(f"{t} {s:.0%}" for t, s in sorted(mix.items(), key=lambda kv: -kv[1])) or "-"


__all__ = ["OVERLOAD_TAG", "held", "mix_text", "overload_section", "overload_verdicts", "shares", "survivor_of",
           "whole_run"]
