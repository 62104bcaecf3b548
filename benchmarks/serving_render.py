"""Printing of the serving bench (benchmarks.serving_bench): the per-tier table, the floor, the
targets, and the short summary lines."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from benchmarks.serving_bench import ServingReport


def render(report: ServingReport) -> list[Any]:
    """Rich renderables: the per-tier table, the floor, the targets."""
    from rich.table import Table

    main = Table(title=f"serving: one cell on one core, {report.settings.requests} sequential requests per row (ms)",
                 caption="cell p99: time inside the recommender; CPU: cell CPU ms per request; "
                         "others: share of the cell's core other processes used")
    for col in ("via", "tier", "p50", "p99", "req/s", "cell p99", "CPU", "others", "served", "err"):
        main.add_column(col, justify="left" if col in ("via", "tier", "served") else "right")
    for p in report.phases:
        served = "all" if p.served == {p.tier: p.stats.count} else " ".join(f"{t[:4]}:{n}" for t, n in sorted(p.served.items()))
        main.add_row(p.transport, p.tier, f"{p.stats.p50_ms:.2f}", f"{p.stats.p99_ms:.2f}", f"{p.stats.rps:.0f}",
                     f"{p.cell_p99_ms:.2f}", f"{p.cpu_ms:.2f}", f"{p.others_share:.0%}", served, str(p.errors))
    f = report.floor
    floor = Table(title="floor: the same full-ranking work in process, no servers/Redis/rules (ms)")
    for col in ("p50", "p99", "CPU", "cands+FAISS p50", "features p50", "predict p50", "n cands p5/50/95"):
        floor.add_column(col, justify="right")
    floor.add_row(f"{f.total.p50_ms:.2f}", f"{f.total.p99_ms:.2f}", f"{f.cpu_ms:.2f}", f"{f.candidates_p50_ms:.2f}", f"{f.features_p50_ms:.2f}",
                  f"{f.predict_p50_ms:.2f}", "/".join(f"{c:.0f}" for c in f.candidate_counts))
    proxies = Table(title="the edge and its peer in front of the same cell, interleaved (ms)",
                    caption="overhead: p50/p99 through the proxy minus the direct call it wraps; CPU: the proxy's CPU ms per request")
    for col in ("proxy", "wraps", "p50", "p99", "direct p50", "direct p99", "overhead p50", "overhead p99", "CPU", "err"):
        proxies.add_column(col, justify="left" if col in ("proxy", "wraps") else "right")
    for p in report.proxies:
        o50, o99 = p.overhead
        proxies.add_row(p.proxy, p.wraps, f"{p.stats.p50_ms:.2f}", f"{p.stats.p99_ms:.2f}", f"{p.direct.p50_ms:.2f}",
                        f"{p.direct.p99_ms:.2f}", f"{o50:+.2f}", f"{o99:+.2f}", f"{p.cpu_ms:.3f}", str(p.errors))
    targets = Table(title="issue targets")
    for col in ("what", "measured", "target", "met"):
        targets.add_column(col, justify="left" if col == "what" else "right")
    for what, measured, target, ok in report.targets():
        targets.add_row(what, f"{measured:.2f}", target, "[green]yes[/green]" if ok else "[red]no[/red]")
    cpu = Table(title="CPU per full ranking and memory")
    for col in ("what", "value"):
        cpu.add_column(col, justify="left" if col == "what" else "right")
    from benchmarks.serving_bench import TRANSPORTS

    for transport in TRANSPORTS:
        cpu.add_row(f"cell CPU ms per full ranking, {transport}", f"{report.phase(transport, 'full').cpu_ms:.2f}")
    cpu.add_row("floor CPU ms per full ranking", f"{f.cpu_ms:.2f}")
    for p in report.proxies:
        cpu.add_row(f"{p.proxy} CPU ms per request", f"{p.cpu_ms:.3f}")
    for size, mb in report.rss_mb.items():
        cpu.add_row(f"cell RSS, {size} bundle", f"{mb:.0f} MiB")
    return [main, floor, proxies, cpu, targets]


def summary_lines(report: ServingReport) -> list[str]:
    cal = report.calibration
    lines = [f"machine: {report.machine}",
             f"calibration ({report.settings.calibrate_from} costs): "
             + ", ".join(f"{t} {c.cpu_ms:.2f} ms CPU / p99 {c.p99_ms:.2f} ms" for t, c in cal.tiers.items())
             + f"; predicted saturation on 1 core, full ranking: {cal.saturation_qps:.0f} QPS"]
    lines += [f"note: {n}" for n in report.notes]
    lines += [f"wrote {path}" for path in report.outputs.values()]
    return lines
