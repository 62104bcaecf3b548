"""Game-day reports: a per-second timeline, and report.json / report.md / report.png.

Pure parts (`timeline`, `build_report`, `render_markdown`) take records and figures in (measured by
chaos.measurement, judged by chaos.verdicts) and return values; `write_report` does the file I/O
and `plot` draws with matplotlib's Agg backend: success, p99, the tier share of the affected
geographies' homepages with the fault marked, and the routing weights.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from chaos.measurement import Degradation, EdgeRetries, QualityRto, Rpo, Rto, tier_mix
from chaos.verdicts import Targets, Verdict, hypothesis_verdicts, overall, verdicts


def hypothesis_of(journal: Mapping[str, Any]) -> dict[str, Any]:
    """{"before": met?, "after": met?, "deviated": bool, "violations": [probe: output]} from a chaoslib journal."""
    states = journal.get("steady_states") or {}
    violations = []
    for when in ("before", "after"):
        for run in ((states.get(when) or {}).get("probes") or []):
            if not run.get("tolerance_met", run.get("status") == "succeeded"):
                shown = run.get("output") if run.get("status") == "succeeded" else (run.get("exception") or ["?"])[-1].strip()
                violations.append(f"{when}: {run.get('activity', {}).get('name')}: {shown}")
    met = {when: (states.get(when) or {}).get("steady_state_met") if states.get(when) else None for when in ("before", "after")}
    return {**met, "deviated": bool(journal.get("deviated")), "violations": violations}


def empty_slates(records: Iterable[Mapping[str, Any]]) -> int:
    """Homepage answers that succeeded with no item (the promise is: never)."""
    return sum(1 for r in records if r.get("kind", "homepage") == "homepage"
               and (r.get("empty") or (r.get("ok") and r.get("slate_len") == 0)))


@dataclass(frozen=True)
class Bucket:
    t: float
    """Start of the bucket, seconds since the first record."""
    requests: int
    success_rate: float
    p99_ms: float
    empty: int
    tiers: Mapping[str, int] = field(default_factory=dict)


def _done(rec: Mapping[str, Any]) -> float:
    return float(rec.get("done", float(rec["t"]) + float(rec.get("latency_ms") or 0.0) / 1000.0))


def timeline(records: Sequence[Mapping[str, Any]], *, origin: float, bucket_s: float = 1.0,
             geographies: Sequence[str] | None = None) -> list[Bucket]:
    """Per-bucket (by completion time) success rate, p99, empty slates, and the tier counts of the
    homepages of `geographies` (None: all); buckets with no request omitted."""
    groups: dict[int, list[Mapping[str, Any]]] = {}
    for rec in records:
        if "t" in rec:
            groups.setdefault(int(math.floor((_done(rec) - origin) / bucket_s)), []).append(rec)
    out = []
    for index in sorted(groups):
        recs = groups[index]
        lat = np.array([float(r.get("latency_ms") or 0.0) for r in recs])
        answers = [{**r, "tier": r.get("tier") if r.get("ok") else None} for r in recs if r.get("kind") == "homepage"
                   and (geographies is None or r.get("geo") in geographies)]
        out.append(Bucket(t=index * bucket_s, requests=len(recs), success_rate=sum(1 for r in recs if r.get("ok")) / len(recs),
                          p99_ms=float(np.percentile(lat, 99)), empty=empty_slates(recs), tiers=tier_mix(answers)))
    return out


def window_summary(records: Sequence[Mapping[str, Any]], *, start: float | None, end: float | None) -> dict[str, Any] | None:
    """Requests, success rate, p99, empty slates and tier mix of the records sent in [start, end)
    (the fault window: from the fault to the first rollback). None when the window is unknown."""
    if start is None or end is None:
        return None
    chosen = [r for r in records if "t" in r and start <= float(r["t"]) < end]
    lat = [float(r.get("latency_ms") or 0.0) for r in chosen]
    return {"start": start, "end": end, "requests": len(chosen),
            "success_rate": (sum(1 for r in chosen if r.get("ok")) / len(chosen)) if chosen else None,
            "p99_ms": float(np.percentile(lat, 99)) if lat else None, "empty_slates": empty_slates(chosen),
            "tiers": tier_mix({**r, "tier": r.get("tier") if r.get("ok") else None} for r in chosen if r.get("kind") != "events")}


def weights_changed_after(samples: Sequence[Mapping[str, Any]], *, fault_at: float | None) -> float | None:
    """Seconds from the fault to the first sample whose routing weights differ from the last sample
    before the fault (how fast the controller steered); None when they never changed."""
    if fault_at is None:
        return None
    before = [s for s in samples if s["t"] < fault_at and s.get("weights")]
    if not before:
        return None
    baseline = before[-1]["weights"]
    for sample in samples:
        if sample["t"] >= fault_at and sample.get("weights") and sample["weights"] != baseline:
            return float(sample["t"] - fault_at)
    return None


def build_report(*, experiment: str, title: str, records: Sequence[Mapping[str, Any]], fault_at: float | None,
                 rto: Rto, quality: QualityRto | None = None, degradation: Degradation | None = None,
                 retries: EdgeRetries | None = None, rpo: Rpo | None, region_lost: bool | None = None, status: str,
                 samples: Sequence[Mapping[str, Any]] = (), notes: Sequence[str] = (), targets: Targets = Targets(),
                 hypothesis: Mapping[str, Any] | None = None, fault_end: float | None = None,
                 load: Mapping[str, Any] | None = None, invalid: Sequence[str] = (),
                 geographies: Sequence[str] | None = None, figures: Sequence[Verdict] = (),
                 overload: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Everything report.json holds. Pure: the caller measured the figures from the same records;
    `figures` are the verdicts of figures the experiment's probes measured (chaos.verdicts.figure_verdicts);
    `overload` (chaos.overload.overload_section) adds its whole-run verdicts and prediction."""
    origin = min((float(r["t"]) for r in records if "t" in r), default=fault_at or 0.0)
    lost = rpo is not None if region_lost is None else region_lost
    found = verdicts(rto=rto, quality=quality, rpo=rpo, region_lost=lost, empty_slates=empty_slates(records),
                     targets=targets) + list(figures) + hypothesis_verdicts(hypothesis) \
        + list((overload or {}).get("verdicts", ()))
    lat = [float(r.get("latency_ms") or 0.0) for r in records]
    return {
        "experiment": experiment, "title": title, "status": status, "verdict": overall(found, invalid=invalid),
        "invalid_reasons": list(invalid),
        "origin": origin, "fault_at": fault_at, "fault_offset_s": (fault_at - origin) if fault_at is not None else None,
        "load": {"requests": len(records), "success_rate": (sum(1 for r in records if r.get("ok")) / len(records)) if records else None,
                 "p99_ms": float(np.percentile(lat, 99)) if lat else None, "empty_slates": empty_slates(records),
                 "tiers": tier_mix({**r, "tier": r.get("tier") if r.get("ok") else None} for r in records if r.get("kind") != "events"),
                 **{k: v for k, v in (load or {}).items() if k in ("rate", "achieved_rate", "p99_schedule_lag_ms", "valid",
                                                                   "scheduled", "sent", "client_overload", "processes")}},
        "during_fault": window_summary(records, start=fault_at, end=fault_end),
        "weights_changed_after_s": weights_changed_after(samples, fault_at=fault_at),
        "rto": {**asdict(rto), "measured": rto.measured},
        "quality_rto": {**asdict(quality), "measured": quality.measured} if quality is not None else None,
        "degradation": asdict(degradation) if degradation is not None else None,
        "edge": ({**asdict(retries), "first_attempt_failure_rate": retries.first_attempt_failure_rate,
                  "retry_rate": retries.retry_rate} if retries is not None else None),
        "rpo": asdict(rpo) if rpo is not None else None,
        "affected_geographies": list(geographies) if geographies is not None else None,
        "verdicts": [asdict(v) for v in found],
        "timeline": [asdict(b) for b in timeline(records, origin=origin, geographies=geographies)],
        "samples": [dict(s) for s in samples], "notes": list(notes),
        "hypothesis": dict(hypothesis) if hypothesis is not None else None,
        "overload": {k: v for k, v in overload.items() if k not in ("verdicts", "invalid")} if overload is not None else None,
    }


def _fmt(value: float | None, unit: str = "s") -> str:
    return "-" if value is None else f"{value:.2f} {unit}".strip()


def _rto_text(rto: Mapping[str, Any]) -> str:
    return _fmt(rto["seconds"]) if rto["status"] == "met" else str(rto["status"])


def render_markdown(report: Mapping[str, Any]) -> str:
    load, rto, rpo = report["load"], report["rto"], report["rpo"]
    lines = [f"# Game day: {report['experiment']}", "", f"{report['title']}", "",
             f"- experiment status: **{report['status']}**; verdict: **{report['verdict']}**",
             f"- fault injected {_fmt(report['fault_offset_s'])} after the load started",
             f"- load: {load['requests']} requests, success rate "
             + ("-" if load["success_rate"] is None else f"{load['success_rate'] * 100:.3f} %")
             + f", p99 {_fmt(load['p99_ms'], 'ms')}, empty homepage slates {load['empty_slates']}",
             f"- tiers: " + (", ".join(f"{k} {v}" for k, v in load["tiers"].items()) or "-"),
             f"- availability RTO: {_rto_text(rto)} ({rto['reason']})"]
    if report.get("invalid_reasons"):
        lines[5:5] = ["- **INVALID**: " + "; ".join(report["invalid_reasons"])]
    quality = report.get("quality_rto")
    if quality is not None:
        base = "-" if quality["baseline_share"] is None else f"{quality['baseline_share']:.1%}"
        lines.append(f"- quality RTO ({', '.join(quality['geographies'])}; personalised share before the fault {base}): "
                     f"{_rto_text(quality)} ({quality['reason']})")
    deg = report.get("degradation")
    if deg is not None:
        lines.append("- after the fault, seconds of the affected homepages on each tier: "
                     + (", ".join(f"{k} {v:.1f}" for k, v in deg["tier_seconds"].items()) or "-")
                     + f"; degraded: {deg['degraded_requests']} requests, {deg['degraded_request_seconds']:.1f} request-seconds")
    edge = report.get("edge")
    if edge is not None and edge["reads"]:
        lines.append(f"- through the edge after the fault: first-attempt failures {edge['first_attempt_failures']} of "
                     f"{edge['reads']} reads ({edge['first_attempt_failure_rate']:.2%}: what users would have seen without "
                     f"the edge's retry), retried {edge['retried']} ({edge['retry_rate']:.2%})")
    if "achieved_rate" in load:
        lines.append(f"- load rate: {load['achieved_rate']:.1f} of {load['rate']:g} req/s achieved, p99 schedule lag "
                     f"{_fmt(load['p99_schedule_lag_ms'], 'ms')}" + ("" if load.get("valid") else " (INVALID: more than 2 % short)"))
    during = report.get("during_fault")
    if during and during["requests"]:
        lines.append(f"- during the fault ({during['end'] - during['start']:.1f} s, {during['requests']} requests): success "
                     f"{during['success_rate'] * 100:.3f} %, p99 {_fmt(during['p99_ms'], 'ms')}, empty slates "
                     f"{during['empty_slates']}, tiers " + ", ".join(f"{k} {v}" for k, v in during["tiers"].items()))
    if report.get("weights_changed_after_s") is not None:
        lines.append(f"- routing weights changed {report['weights_changed_after_s']:.1f} s after the fault")
    lines += _overload_lines(report.get("overload"))
    if rpo is not None:
        lines.append(f"- RPO: {_fmt(rpo['seconds']) if rpo['seconds'] is not None else 'not measured'}, {rpo['lost']} of "
                     f"{rpo['acknowledged']} acknowledged events lost ({rpo['reason']})")
        if rpo["lost_ids"]:
            lines.append(f"- lost event ids (first {len(rpo['lost_ids'])}): " + ", ".join(rpo["lost_ids"]))
    else:
        lines.append("- RPO: not applicable (no region lost)")
    lines += ["", "| check | kind | limit | value | verdict |", "| --- | --- | --- | --- | --- |"]
    for v in report["verdicts"]:
        value = "-" if v["value"] is None else f"{v['value']:.2f}"
        lines.append(f"| {v['name']} | {v['kind']} | {v['limit']} | {value} | {v['status']} |")
    if (report.get("hypothesis") or {}).get("violations"):
        lines += ["", "Steady-state violations:", *(f"- {v}" for v in report["hypothesis"]["violations"])]
    if report.get("notes"):
        lines += ["", "Notes:", *(f"- {n}" for n in report["notes"])]
    lines += ["", "![timeline](report.png)", ""]
    return "\n".join(lines)


def _mix(mix: Mapping[str, float] | None) -> str:
    return ", ".join(f"{t} {s:.0%}" for t, s in sorted((mix or {}).items(), key=lambda kv: -kv[1])) or "-"


def _overload_lines(overload: Mapping[str, Any] | None) -> list[str]:
    if not overload:
        return []
    run, pred = overload["whole_run"], overload.get("prediction")
    lines = [f"- overload, whole run: {run['requests']} requests, success "
             + ("-" if run["success_rate"] is None else f"{run['success_rate'] * 100:.3f} %")
             + f", p99 {_fmt(run['p99_ms'], 'ms')}; homepages {_mix(run.get('homepage_mix'))}"
             + (f"; {run['region']}'s homepages {_mix(run.get('region_mix'))}" if run.get("region") else "")]
    if pred:
        lines.append(f"- capacity model for this load ({pred['calibration_source']}): {pred['survivor']} takes "
                     f"{pred['survivor_qps']:.0f} QPS after {pred['failed']} is lost ({pred['steady_qps']:.0f} before), "
                     f"full-ranking capacity of its {pred['cores']:g} core(s) {pred['full_capacity_qps']:.0f} QPS "
                     f"({pred['overload_factor']:.2f}x); the plan's mix {_mix(pred['plan_mix'])} would need "
                     f"{pred['plan_utilisation']:.0%} of it; the mix that fits: {_mix(pred['fitting_mix'])}")
    elif overload.get("problem"):
        lines.append(f"- capacity model: {overload['problem']}")
    cpu = overload.get("survivor_cpu")
    lines.append(f"- survivor CPU: {cpu['region']} used {cpu['received_cores']:.2f} of its {cpu['quota_cores']:g} "
                 f"core(s) over the {cpu['seconds']:.0f} s its quota held" if cpu else
                 "- survivor CPU: not known (no limit_cell_cpu and restore_cell_cpu outputs with its CPU in the journal)")
    return lines


def summary_lines(report: Mapping[str, Any]) -> list[str]:
    """The printed summary: one line per verdict and the overall verdict."""
    out = [f"{report['experiment']}: {report['status']}, verdict {report['verdict']}"]
    out += [f"  INVALID: {reason}" for reason in report.get("invalid_reasons") or []]
    quality = report.get("quality_rto") or {}
    edge = report.get("edge") or {}
    out.append(f"  availability RTO {_rto_text(report['rto'])}, quality RTO {_rto_text(quality) if quality else '-'}, "
               f"first-attempt failures " + (f"{edge['first_attempt_failure_rate']:.2%}" if edge.get("reads") else "-"))
    for v in report["verdicts"]:
        value = "-" if v["value"] is None else f"{v['value']:.2f}"
        out.append(f"  {v['name']:<22} {v['kind']:<11} {v['limit']:<10} {value:>10}  {v['status']}")
    out += [f"  {line[2:]}" for line in _overload_lines(report.get("overload"))]
    return out


def plot(report: Mapping[str, Any], path: Path) -> Path:
    """Success rate, p99, tier mix and weights over time; the fault as a red vertical line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    buckets = report["timeline"]
    xs = [b["t"] for b in buckets]
    fig, axes = plt.subplots(4, 1, figsize=(10, 11), sharex=True)
    axes[0].plot(xs, [b["success_rate"] * 100 for b in buckets], color="tab:blue")
    axes[0].set_ylabel("success %")
    axes[1].plot(xs, [b["p99_ms"] for b in buckets], color="tab:orange")
    axes[1].axhline(180.0, color="grey", linestyle=":", label="SLO 180 ms")
    axes[1].set_ylabel("p99 ms")
    axes[1].legend(loc="upper right")
    tiers = sorted({t for b in buckets for t in b["tiers"]})
    if tiers:
        shares = [[b["tiers"].get(t, 0) / max(sum(b["tiers"].values()), 1) for b in buckets] for t in tiers]
        axes[2].stackplot(xs, *shares, labels=tiers)
        axes[2].legend(loc="upper right", fontsize="small")
    axes[2].set_ylabel("tier share\n(affected homepages)")
    origin = report["origin"]
    series: dict[str, list[tuple[float, float]]] = {}
    for s in report.get("samples", []):
        for geo, regions in (s.get("weights") or {}).items():
            for region, w in regions.items():
                series.setdefault(f"{geo}:{region}", []).append((s["t"] - origin, w))
    for label, points in sorted(series.items()):
        axes[3].step([p[0] for p in points], [p[1] for p in points], where="post", label=label)
    if series:
        axes[3].legend(loc="upper right", fontsize="small")
    axes[3].set_ylabel("weight")
    axes[3].set_xlabel("seconds since the load started")
    for ax in axes:
        if report["fault_offset_s"] is not None:
            ax.axvline(report["fault_offset_s"], color="red", linestyle="--")
        if report["rto"]["recovered_at"] is not None:
            ax.axvline(report["rto"]["recovered_at"] - origin, color="green", linestyle=":")
        quality = report.get("quality_rto") or {}
        if quality.get("seconds") is not None and report["fault_at"] is not None:
            ax.axvline(report["fault_at"] + quality["seconds"] - origin, color="purple", linestyle="-.")
    fig.suptitle(f"{report['experiment']}: fault (red), available again (green), personalised again (purple)")
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=90)
    plt.close(fig)
    return path


def write_report(report: Mapping[str, Any], out_dir: Path) -> dict[str, Path]:
    """report.json, report.md and report.png under `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "report.json", "md": out_dir / "report.md", "png": out_dir / "report.png"}
    paths["json"].write_text(json.dumps(report, indent=2, default=str))
    paths["md"].write_text(render_markdown(report))
    plot(report, paths["png"])
    return paths
