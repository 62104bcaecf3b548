"""Game-day reports: verdicts, a per-second timeline, and report.json / report.md / report.png.

Pure parts (`verdicts`, `timeline`, `build_report`, `render_markdown`) take records and numbers in
and return values; `write_report` does the file I/O and `plot` draws with matplotlib's Agg backend.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from chaos.measurement import Request, Rpo, Rto, tier_mix
from regions.topology import Settings as StackSettings

PASS, FAIL, NOT_MEASURED, NOT_APPLICABLE = "pass", "fail", "not measured", "not applicable"


@dataclass(frozen=True)
class Targets:
    requirement_rto_s: float = StackSettings.rto_budget_s
    """Product requirement: RTO < 10 min for a regional outage (topology.toml `rto_budget_s`)."""
    requirement_rpo_s: float = StackSettings.rpo_budget_s
    """Product requirement: RPO < 5 min for interaction logs (topology.toml `rpo_budget_s`)."""
    target_rto_s: float = 15.0
    """Our target: the controller steers away within seconds."""
    target_rpo_s: float = 2.0
    """Our target: replication lag of about a second."""
    target_empty_slates: int = 0
    """Promise: the homepage always returns something useful."""

    @classmethod
    def of(cls, settings: StackSettings) -> Targets:
        """The requirements as the topology states them (`rto_budget_s`, `rpo_budget_s`)."""
        return cls(requirement_rto_s=settings.rto_budget_s, requirement_rpo_s=settings.rpo_budget_s)


@dataclass(frozen=True)
class Verdict:
    name: str
    kind: str
    """requirement | target"""
    limit: str
    value: float | None
    status: str
    """pass | fail | not measured | not applicable"""


def _check(value: float | None, limit: float, *, strict: bool, applicable: bool = True) -> str:
    if not applicable:
        return NOT_APPLICABLE
    if value is None:
        return NOT_MEASURED
    return PASS if (value < limit if strict else value <= limit) else FAIL


def verdicts(*, rto: Rto, rpo: Rpo | None, empty_slates: int, targets: Targets = Targets()) -> list[Verdict]:
    """RTO and RPO against the requirements (strictly below) and our targets (at most)."""
    rto_s = rto.seconds if rto.measured else None
    rpo_s = rpo.seconds if rpo is not None else None
    has_rpo = rpo is not None
    return [
        Verdict("RTO", "requirement", f"< {targets.requirement_rto_s:g} s", rto_s, _check(rto_s, targets.requirement_rto_s, strict=True)),
        Verdict("RPO", "requirement", f"< {targets.requirement_rpo_s:g} s", rpo_s,
                _check(rpo_s, targets.requirement_rpo_s, strict=True, applicable=has_rpo)),
        Verdict("RTO", "target", f"<= {targets.target_rto_s:g} s", rto_s, _check(rto_s, targets.target_rto_s, strict=False)),
        Verdict("RPO", "target", f"<= {targets.target_rpo_s:g} s", rpo_s,
                _check(rpo_s, targets.target_rpo_s, strict=False, applicable=has_rpo)),
        Verdict("empty homepage slates", "target", f"<= {targets.target_empty_slates}", float(empty_slates),
                _check(float(empty_slates), targets.target_empty_slates, strict=False)),
    ]


def hypothesis_verdicts(hypothesis: Mapping[str, Any] | None) -> list[Verdict]:
    """The steady-state hypothesis before the fault and after it (with the fault still in place)
    as verdicts; `hypothesis` is `hypothesis_of(journal)`. None: not a game day of an experiment."""
    if hypothesis is None:
        return []
    out = []
    for when in ("before", "after"):
        met = hypothesis.get(when)
        status = NOT_MEASURED if met is None else (PASS if met else FAIL)
        out.append(Verdict(f"steady state {when}", "hypothesis", "met", None if met is None else float(bool(met)), status))
    return out


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


def overall(found: Sequence[Verdict]) -> str:
    statuses = {v.status for v in found}
    if FAIL in statuses:
        return FAIL
    return "incomplete" if NOT_MEASURED in statuses else PASS


def to_requests(records: Iterable[Mapping[str, Any]]) -> list[Request]:
    """Load records (chaos.load) -> chaos.measurement.Request."""
    return [Request(t=float(r["t"]), ok=bool(r.get("ok")), latency_ms=float(r.get("latency_ms") or 0.0),
                    kind=str(r.get("kind", "homepage")), slate_len=int(r.get("slate_len", -1) if r.get("slate_len") is not None else -1))
            for r in records if "t" in r]


def empty_slates(records: Iterable[Mapping[str, Any]]) -> int:
    """Homepage answers that succeeded with no item (the promise is: never)."""
    return sum(1 for r in records if r.get("kind", "homepage") == "homepage" and r.get("ok") and r.get("slate_len") == 0)


@dataclass(frozen=True)
class Bucket:
    t: float
    """Start of the bucket, seconds since the first record."""
    requests: int
    success_rate: float
    p99_ms: float
    empty: int
    tiers: Mapping[str, int] = field(default_factory=dict)


def timeline(records: Sequence[Mapping[str, Any]], *, origin: float, bucket_s: float = 1.0) -> list[Bucket]:
    """Per-bucket success rate, p99, empty slates and tier counts (buckets with no request omitted)."""
    groups: dict[int, list[Mapping[str, Any]]] = {}
    for rec in records:
        if "t" in rec:
            groups.setdefault(int(math.floor((float(rec["t"]) - origin) / bucket_s)), []).append(rec)
    out = []
    for index in sorted(groups):
        recs = groups[index]
        lat = np.array([float(r.get("latency_ms") or 0.0) for r in recs])
        answers = [{**r, "tier": r.get("tier") if r.get("ok") else None} for r in recs if r.get("kind") != "events"]
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
                 rto: Rto, rpo: Rpo | None, status: str, samples: Sequence[Mapping[str, Any]] = (),
                 notes: Sequence[str] = (), targets: Targets = Targets(),
                 hypothesis: Mapping[str, Any] | None = None, fault_end: float | None = None) -> dict[str, Any]:
    """Everything report.json holds. Pure: the caller measured rto/rpo from the same records."""
    origin = min((float(r["t"]) for r in records if "t" in r), default=fault_at or 0.0)
    found = verdicts(rto=rto, rpo=rpo, empty_slates=empty_slates(records), targets=targets) + hypothesis_verdicts(hypothesis)
    lat = [float(r.get("latency_ms") or 0.0) for r in records]
    return {
        "experiment": experiment, "title": title, "status": status, "verdict": overall(found),
        "origin": origin, "fault_at": fault_at, "fault_offset_s": (fault_at - origin) if fault_at is not None else None,
        "load": {"requests": len(records), "success_rate": (sum(1 for r in records if r.get("ok")) / len(records)) if records else None,
                 "p99_ms": float(np.percentile(lat, 99)) if lat else None, "empty_slates": empty_slates(records),
                 "tiers": tier_mix({**r, "tier": r.get("tier") if r.get("ok") else None} for r in records if r.get("kind") != "events")},
        "during_fault": window_summary(records, start=fault_at, end=fault_end),
        "weights_changed_after_s": weights_changed_after(samples, fault_at=fault_at),
        "rto": asdict(rto), "rpo": asdict(rpo) if rpo is not None else None,
        "verdicts": [asdict(v) for v in found],
        "timeline": [asdict(b) for b in timeline(records, origin=origin)],
        "samples": [dict(s) for s in samples], "notes": list(notes),
        "hypothesis": dict(hypothesis) if hypothesis is not None else None,
    }


def _fmt(value: float | None, unit: str = "s") -> str:
    return "-" if value is None else f"{value:.2f} {unit}".strip()


def render_markdown(report: Mapping[str, Any]) -> str:
    load, rto, rpo = report["load"], report["rto"], report["rpo"]
    lines = [f"# Game day: {report['experiment']}", "", f"{report['title']}", "",
             f"- experiment status: **{report['status']}**; verdict: **{report['verdict']}**",
             f"- fault injected {_fmt(report['fault_offset_s'])} after the load started",
             f"- load: {load['requests']} requests, success rate "
             + ("-" if load["success_rate"] is None else f"{load['success_rate'] * 100:.3f} %")
             + f", p99 {_fmt(load['p99_ms'], 'ms')}, empty homepage slates {load['empty_slates']}",
             f"- tiers: " + (", ".join(f"{k} {v}" for k, v in load["tiers"].items()) or "-"),
             f"- RTO: {_fmt(rto['seconds']) if rto['measured'] else 'not measured'} ({rto['reason']})"]
    during = report.get("during_fault")
    if during and during["requests"]:
        lines.append(f"- during the fault ({during['end'] - during['start']:.1f} s, {during['requests']} requests): success "
                     f"{during['success_rate'] * 100:.3f} %, p99 {_fmt(during['p99_ms'], 'ms')}, empty slates "
                     f"{during['empty_slates']}, tiers " + ", ".join(f"{k} {v}" for k, v in during["tiers"].items()))
    if report.get("weights_changed_after_s") is not None:
        lines.append(f"- routing weights changed {report['weights_changed_after_s']:.1f} s after the fault")
    if rpo is not None:
        lines.append(f"- RPO: {_fmt(rpo['seconds'])}, {rpo['lost']} of {rpo['acknowledged']} acknowledged events lost")
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


def summary_lines(report: Mapping[str, Any]) -> list[str]:
    """The printed summary: one line per verdict and the overall verdict."""
    out = [f"{report['experiment']}: {report['status']}, verdict {report['verdict']}"]
    for v in report["verdicts"]:
        value = "-" if v["value"] is None else f"{v['value']:.2f}"
        out.append(f"  {v['name']:<22} {v['kind']:<11} {v['limit']:<10} {value:>10}  {v['status']}")
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
    axes[2].set_ylabel("tier share")
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
    fig.suptitle(f"{report['experiment']}: fault (red), recovered (green)")
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
