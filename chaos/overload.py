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


STARVED_BELOW = 0.6
"""A survivor that used less than this share of its CPU quota while limited was starved: the
machine did not give it the size the experiment gave it (CPU stolen by the host, neighbours the
cgroup's weight does not hold back). An overloaded cell has work waiting at every moment: here it
used 0.43-0.46 of a half core alone, 0.23 of a quarter core as the game day's survivor (the quota's
accounting keeps a little back)."""


def _output(runs: Sequence[Mapping[str, Any]], func: str) -> Mapping[str, Any] | None:
    for run in runs:
        provider = (run.get("activity") or {}).get("provider") or {}
        if provider.get("func") == func and run.get("status") == "succeeded" and isinstance(run.get("output"), Mapping):
            return run["output"]
    return None


def survivor_cpu(method_runs: Sequence[Mapping[str, Any]],
                 rollback_runs: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """The CPU the survivor really used while its quota held, from the journal: limit_cell_cpu's and
    restore_cell_cpu's outputs (each the cell's CPU seconds so far, by pid, and when). None when
    either is missing, or they share no process (the cell restarted meanwhile)."""
    limit, restore = _output(method_runs, "limit_cell_cpu"), _output(rollback_runs, "restore_cell_cpu")
    if limit is None or restore is None:
        return None
    before = {str(k): float(v) for k, v in (limit.get("cpu_s") or {}).items()}
    after = {str(k): float(v) for k, v in (restore.get("cpu_s") or {}).items()}
    common = sorted(set(before) & set(after))
    seconds = float(restore.get("at", 0.0)) - float(limit.get("at", 0.0))
    if not common or seconds <= 0:
        return None
    return cpu_received(limit.get("region"), quota_cores=float(limit.get("cores") or 0.0),
                        used_s=sum(after[p] - before[p] for p in common), seconds=seconds)


def cpu_received(region: Any, *, quota_cores: float, used_s: float, seconds: float) -> dict[str, Any]:
    """What a cell limited to `quota_cores` used: `used_s` CPU seconds over `seconds` of wall time."""
    received = used_s / seconds
    return {"region": region, "quota_cores": quota_cores, "received_cores": received, "seconds": seconds,
            "share": received / quota_cores if quota_cores else None}


def starved(cpu: Mapping[str, Any] | None, *, below: float = STARVED_BELOW) -> str | None:
    """Why the overload judged nothing when the survivor did not get its size (None: it did, or
    its CPU is unknown, which the report says beside the figures)."""
    if cpu is None or cpu.get("share") is None or cpu["share"] >= below:
        return None
    return (f"the survivor {cpu['region']} used {cpu['received_cores']:.2f} of its {cpu['quota_cores']:g} core(s) "
            f"over {cpu['seconds']:.0f} s (under {below:.0%}): the machine did not give it its size, so the "
            f"overload beyond its capacity was not the one tested")


def overload_section(records: Sequence[Mapping[str, Any]], *, experiment: Mapping[str, Any], topology: Any,
                     lost: str | None, load_rate: float, calibration_path: Any = None,
                     journal: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The report's `overload` part: the whole run (chaos.overload.whole_run) of every request and of
    the survivor's homepages, the verdicts, the capacity model's prediction for this load, and the
    CPU the survivor really used (`survivor_cpu`, from the `journal`); `invalid` holds the reason a
    starved survivor makes the game day invalid."""
    survivor, cores = survivor_of(experiment)
    cpu = survivor_cpu((journal or {}).get("run") or (), (journal or {}).get("rollbacks") or ())
    reason = starved(cpu)
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
    return {"whole_run": summary, "prediction": prediction, "problem": problem, "survivor_cpu": cpu,
            "invalid": [reason] if reason else [], "verdicts": overload_verdicts(summary)}


def mix_text(mix: Mapping[str, float]) -> str:
    return ", ".join(f"{t} {s:.0%}" for t, s in sorted(mix.items(), key=lambda kv: -kv[1])) or "-"


__all__ = ["OVERLOAD_TAG", "STARVED_BELOW", "cpu_received", "held", "mix_text", "overload_section", "overload_verdicts",
           "shares", "starved", "survivor_cpu", "survivor_of", "whole_run"]
