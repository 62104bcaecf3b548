"""Saturation benchmark: drive one cell (one core) past saturation with the steady tier mix over HTTP,
and compare the measured saturation QPS with capacity.model.predicted_saturation_qps.

    .venv/bin/python -m regionctl.main bench saturation [--seconds S] [--json]
    .venv/bin/python benchmarks/saturation_bench.py [--seconds S] [--json]

Needs var/calibration.json (run `regionctl bench serving` first; --calibration names another file).
The same stack as the serving benchmark (benchmarks/serving_bench.py: demo bundle, redis, a cell pinned to
one core, the client and redis on the other). The load is OPEN-LOOP: requests leave at a fixed rate
whatever the answers do, in steps of increasing rate around the prediction (50 % .. 150 %); each step
lasts `seconds / steps`, at most `max_in_flight` requests are outstanding (more are shed by the client
and counted as errors) and each has a timeout, so the run is bounded in time and in count. Per step:
answers per second, p99, errors, the cell's CPU utilisation (/proc/<pid>/stat) and the tiers served.
The measured saturation QPS is the throughput plateau (the most answers per second of any step); the
SLO is the cell's deadline (150 ms p99). Writes var/bench/saturation.json and, when the ramp went past
the plateau, the measured saturation_qps into the calibration file. Prints figures; asserts nothing.
"""
from __future__ import annotations

import asyncio
import json
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable


from benchmarks.admission_phase import AdmissionRow, admission_rows, rows_to_dict
from benchmarks.serving_bench import BenchStack, ServingBenchSettings, bench_stack, core_ticks, cpu_ticks
from capacity.calibration import MEASURED_CALIBRATION_PATH, load_calibration, write_calibration
from capacity.model import Calibration, TierMix, predicted_saturation_qps
from contracts.tiers import TIER_NAMES
from capacity.settings import CapacitySettings
from fallback_tiers.settings import LadderSettings
from regions import cpu_quota
from regions.errors import InputError
from benchmarks.printing import print_report
from regions.topology import REPO_ROOT
from serving.benchmarking import (
    LoadStep, Saturation, error_pct, others_share, percentile, ramp, saturation_of,
)


@dataclass(frozen=True)
class SaturationSettings:
    seconds: float = 70.0
    """Total time under load; with start-up the run stays well under 3 minutes on 2 cores."""
    fractions: tuple[float, ...] = (0.4, 0.55, 0.7, 0.85, 1.0, 1.15, 1.3)
    """Offered load as fractions of the prediction: from well below to past it, so the plateau shows even
    when the cell under concurrent load is slower than the sequential calibration says."""
    max_in_flight: int = 128
    """Bounds the client's backlog: the cell's thread pool holds 40, so 128 queue well past saturation."""
    timeout_s: float = 3.0
    """A request still unanswered after 3 s is an error (20x the SLO)."""
    slo_ms: float = LadderSettings().deadline_s * 1000.0
    """The cell's share of the 180 ms end-to-end p99: its own deadline, 150 ms."""
    count: int = 8
    """Slate size, as in the serving benchmark."""
    calibration_path: Path = MEASURED_CALIBRATION_PATH
    """What `regionctl bench serving` wrote."""
    tier_mix: TierMix = CapacitySettings().steady_mix
    """The planner's steady mix (every request asks for full ranking)."""
    out: Path = REPO_ROOT / "var" / "bench" / "saturation.json"
    """Figures of the last run."""
    write_calibration: bool = True
    """Store the measured saturation QPS in the calibration file (only when the ramp saturated)."""
    admission_compare: bool = True
    """After the ramp, one overload step with the cell's admission control on and one with it off
    (benchmarks.admission_phase), each `seconds / steps` long."""
    overload_factor: float = 1.5
    """The compared step's rate: 1.5x the full-ranking capacity of the cell's size (see admission_cores)."""
    admission_cores: float = 0.5
    """The compared cell's size: half a core, capped and weighted (benchmarks.admission_phase)."""

    def __post_init__(self) -> None:
        if not 10 <= self.seconds <= 600:
            raise InputError("seconds", f"must be between 10 and 600 seconds of load, got {self.seconds:g}")
        if self.max_in_flight < 1:
            raise InputError("max_in_flight", f"must be >= 1, got {self.max_in_flight}")


@dataclass(frozen=True)
class SaturationReport:
    machine: str
    calibration: Calibration
    predicted_qps: float
    steps: tuple[LoadStep, ...]
    saturation: Saturation
    settings: SaturationSettings
    admission: tuple[AdmissionRow, ...] = ()
    """The overload step with admission on and off (empty when not compared)."""

    @property
    def error_pct(self) -> float:
        return error_pct(self.saturation.plateau_qps, self.predicted_qps)

    @property
    def plateau(self) -> LoadStep:
        return self.steps[self.saturation.plateau_step]

    @property
    def implied_error_pct(self) -> float:
        """Error of the plateau step's throughput per busy core of the cell (CPU taken by others factored out)."""
        return error_pct(self.plateau.implied_capacity_qps, self.predicted_qps)

    @property
    def predicted_for_served_mix(self) -> float:
        """The prediction for the tier mix the cell actually served at the plateau (the ladder degrades)."""
        served = {t: n for t, n in self.plateau.tiers.items() if t in TIER_NAMES}
        total = sum(served.values())
        if not total:
            return self.predicted_qps
        return predicted_saturation_qps(self.calibration, 1.0, TierMix({t: n / total for t, n in served.items()}))

    def to_dict(self) -> dict[str, Any]:
        return {
            "machine": self.machine, "calibration_machine": self.calibration.machine,
            "calibration_source": self.calibration.source, "tier_mix": dict(self.settings.tier_mix.shares),
            "slo_ms": self.settings.slo_ms, "predicted_qps": round(self.predicted_qps, 2),
            "measured_saturation_qps": round(self.saturation.plateau_qps, 2),
            "within_slo_qps": round(self.saturation.slo_qps, 2), "saturated": self.saturation.saturated,
            "first_breach_step": self.saturation.first_breach, "error_pct": round(self.error_pct, 2),
            "plateau_step": self.saturation.plateau_step,
            "plateau_implied_capacity_qps": round(self.plateau.implied_capacity_qps, 2),
            "plateau_implied_error_pct": round(self.implied_error_pct, 2),
            "predicted_for_served_mix_qps": round(self.predicted_for_served_mix, 2),
            "steps": [s.to_dict() for s in self.steps],
            "admission": rows_to_dict(self.admission),
        }


class _Connections:
    """A minimal HTTP/1.1 keep-alive client on asyncio streams: far cheaper per request than httpx, so
    the load client (which shares its core with redis-server) is not what saturates."""

    def __init__(self, port: int, *, limit: int) -> None:
        self.port = port
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.limit = limit

    async def get(self, path: str) -> tuple[int, bytes]:
        if self.idle:
            reader, writer = self.idle.pop()
            try:
                return await self._exchange(reader, writer, path)
            except (OSError, asyncio.IncompleteReadError):
                pass  # the server closed an idle keep-alive connection (uvicorn: after 5 s): use a fresh one
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        return await self._exchange(reader, writer, path)

    async def _exchange(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: str) -> tuple[int, bytes]:
        try:
            writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\n\r\n".encode())
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            status = int(lines[0].split()[1])
            length = next((int(v) for k, _, v in (ln.partition(":") for ln in lines[1:]) if k.lower() == "content-length"), 0)
            body = await reader.readexactly(length)
        except BaseException:
            writer.close()
            raise
        if len(self.idle) < self.limit:
            self.idle.append((reader, writer))
        else:
            writer.close()
        return status, body

    def close(self) -> None:
        for _, writer in self.idle:
            writer.close()
        self.idle.clear()


async def _step(stack: BenchStack, *, rate: float, duration_s: float, settings: SaturationSettings) -> LoadStep:
    """One open-loop step: requests leave every 1/rate s; answers after the window still count for p99."""
    from urllib.parse import urlencode

    users = list(stack.users)
    mix = sorted(settings.tier_mix.shares.items())
    latencies: list[float] = []
    done_at: list[tuple[float, bool]] = []
    tiers: dict[str, int] = {}
    errors = 0
    in_flight = 0
    conns = _Connections(stack.http_port, limit=settings.max_in_flight)

    kinds: dict[str, int] = {}

    def failed(kind: str) -> None:
        nonlocal errors
        errors += 1
        kinds[kind] = kinds.get(kind, 0) + 1

    async def one(n: int) -> None:
        nonlocal in_flight
        # a deterministic walk through the mix: request n asks for the tier its position falls in
        ask = _tier_at(mix, (n * 0.6180339887) % 1.0)
        query = urlencode({"user_id": users[n % len(users)], "count": settings.count, "max_tier": ask})
        t0 = time.perf_counter()
        try:
            status, body = await asyncio.wait_for(conns.get(f"/v1/recommendations/homepage?{query}"), settings.timeout_s)
            if status != 200:
                failed(f"http {status}")
                return
            served = str(json.loads(body)["tier"])
        except asyncio.TimeoutError:
            failed("timeout")
            return
        except (OSError, asyncio.IncompleteReadError, ValueError, KeyError):
            failed("connection")
            return
        finally:
            in_flight -= 1
        t1 = time.perf_counter()
        latencies.append((t1 - t0) * 1000.0)
        done_at.append((t1, served == ask))
        tiers[served] = tiers.get(served, 0) + 1

    tasks: list[asyncio.Task[None]] = []
    total = max(int(rate * duration_s), 1)
    ticks0, (busy0, total0) = cpu_ticks(stack.cell.pid), core_ticks(stack.cell_cpus)
    start = time.perf_counter()
    for n in range(total):
        delay = start + n / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        if in_flight >= settings.max_in_flight:
            failed("shed")  # the client's backlog bound was reached
            continue
        in_flight += 1
        tasks.append(asyncio.create_task(one(n)))
    await asyncio.sleep(max(start + duration_s - time.perf_counter(), 0.0))
    ticks = cpu_ticks(stack.cell.pid) - ticks0
    busy1, total1 = core_ticks(stack.cell_cpus)
    window = time.perf_counter() - start
    await asyncio.gather(*tasks)
    conns.close()
    in_window = [asked for t, asked in done_at if t <= start + window]
    return LoadStep(
        offered_qps=rate, achieved_qps=len(in_window) / window, as_asked_qps=sum(in_window) / window, p99_ms=percentile(latencies, 99) if latencies else float("inf"),
        errors=errors, requests=total, cpu_utilisation=ticks / os.sysconf("SC_CLK_TCK") / window, tiers=tiers,
        others_share=others_share(core_busy_ticks=busy1 - busy0, core_total_ticks=max(total1 - total0, 1), own_ticks=ticks),
        error_kinds=kinds,
    )


def _tier_at(mix: list[tuple[str, float]], position: float) -> str:
    acc = 0.0
    for tier, share in mix:
        acc += share
        if position < acc:
            return tier
    return mix[-1][0]


def run_saturation_bench(settings: SaturationSettings = SaturationSettings(), *,
                         log: Callable[[str], None] = lambda _m: None) -> SaturationReport:
    calibration = load_calibration(settings.calibration_path)
    predicted = predicted_saturation_qps(calibration, 1.0, settings.tier_mix)
    rates = ramp(predicted, settings.fractions)
    per_step = settings.seconds / len(rates)
    log(f"predicted saturation on 1 core: {predicted:.1f} QPS ({calibration.source}); "
        f"{len(rates)} steps of {per_step:.1f} s")
    steps: list[LoadStep] = []
    with bench_stack(ServingBenchSettings(count=settings.count, with_edge=False, with_haproxy=False), log=log) as stack:
        asyncio.run(_step(stack, rate=max(predicted * 0.3, 1.0), duration_s=2.0, settings=settings))  # warm-up, not kept
        for rate in rates:
            step = asyncio.run(_step(stack, rate=rate, duration_s=per_step, settings=settings))
            log(f"offered {rate:.1f}/s -> {step.achieved_qps:.1f}/s, p99 {step.p99_ms:.0f} ms, errors {step.errors}, "
                f"cpu {step.cpu_utilisation:.0%}, tiers {dict(step.tiers)}")
            steps.append(step)
            time.sleep(1.0)  # let the backlog drain before the next rate
        saturation = saturation_of(steps, slo_ms=settings.slo_ms)
        compared: tuple[AdmissionRow, ...] = ()
        if settings.admission_compare:
            sized = cpu_quota.unavailable() is None
            capacity = (predicted_saturation_qps(calibration, settings.admission_cores, TierMix.only("full")) if sized
                        else max(saturation.plateau_qps, 1.0))
            if not sized:
                log(f"no cgroup ({cpu_quota.unavailable()}): the compared cell keeps its core, rate from the plateau")
            compared = admission_rows(stack, rate=capacity * settings.overload_factor, duration_s=per_step, step=_step,
                                      settings=settings, log=log, cores=settings.admission_cores if sized else None)
        machine = stack.machine
    report = SaturationReport(machine=machine, calibration=calibration, predicted_qps=predicted, steps=tuple(steps),
                              saturation=saturation, settings=settings, admission=compared)
    settings.out.parent.mkdir(parents=True, exist_ok=True)
    settings.out.write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    if settings.write_calibration and report.saturation.saturated and not calibration.source.startswith("assumed"):
        write_calibration(replace(calibration, saturation_qps=report.saturation.plateau_qps), settings.calibration_path)
    return report


def render(report: SaturationReport) -> list[Any]:
    from rich.table import Table

    table = Table(title=f"saturation: one cell on one core, open loop over HTTP, mix {dict(report.settings.tier_mix.shares)}",
                  caption="asked/s: answers/s served by the tier asked for; p99 in ms (red: above the SLO); cell CPU: "
                          "its share of its core; others: share other processes took; CPU ms: cell CPU per answer; "
                          "served: f=full c=cached s=segment p=popularity")
    for col in ("offer/s", "ans/s", "asked/s", "p99", "cell CPU", "others", "CPU ms", "served %", "errors %"):
        table.add_column(col, justify="left" if col.endswith("%") else "right")
    for s in report.steps:
        breach = not s.within_slo(report.settings.slo_ms)
        table.add_row(f"{s.offered_qps:.1f}", f"{s.achieved_qps:.1f}", f"{s.as_asked_qps:.1f}", f"[red]{s.p99_ms:.0f}[/red]" if breach else f"{s.p99_ms:.0f}",
                      f"{s.cpu_utilisation:.0%}", f"{s.others_share:.0%}", f"{s.cpu_ms_per_answer:.1f}",
                      _shares(s.tiers), _shares(s.error_kinds, of=s.requests))
    if not report.admission:
        return [table]
    compared = Table(title=f"admission control, same run: {report.admission[0].step.offered_qps:.1f} QPS, every request "
                           f"asking for full ranking, {report.settings.overload_factor:g}x the full-ranking capacity of a "
                           f"{report.settings.admission_cores:g}-core cell (cgroup)",
                     caption="on: the cell's default; off: REGIONCTL_ADMISSION=off (a restarted cell); p99 in ms over the "
                             "step's answers; served: f=full c=cached s=segment p=popularity")
    for col in ("admission", "offer/s", "ans/s", "full/s", "p99", "cell CPU", "others", "served %", "errors %"):
        compared.add_column(col, justify="left" if col.endswith("%") or col == "admission" else "right")
    for row in report.admission:
        s = row.step
        breach = not s.within_slo(report.settings.slo_ms)
        compared.add_row(row.admission, f"{s.offered_qps:.1f}", f"{s.achieved_qps:.1f}", f"{s.as_asked_qps:.1f}",
                         f"[red]{s.p99_ms:.0f}[/red]" if breach else f"{s.p99_ms:.0f}", f"{s.cpu_utilisation:.0%}",
                         f"{s.others_share:.0%}", _shares(s.tiers), _shares(s.error_kinds, of=s.requests))
    return [table, compared]


def _shares(counts: Any, *, of: int | None = None) -> str:
    total = of if of is not None else sum(counts.values())
    if not total:
        return "-"
    return " ".join(f"{k if ' ' in k or k in ('shed', 'timeout', 'connection') else k[0]}{100 * n / total:.0f}"
                    for k, n in sorted(counts.items()))


def summary_lines(report: SaturationReport) -> list[str]:
    sat = report.saturation
    return [
        f"predicted saturation (capacity.model, 1 core, {report.calibration.source}): {report.predicted_qps:.1f} QPS",
        f"measured saturation (plateau of answers served at the asked tier): {sat.plateau_qps:.1f} QPS; error {report.error_pct:+.1f} % "
        f"({'within' if abs(report.error_pct) <= 20 else 'OUTSIDE'} the 20 % target)",
        f"plateau step: cell CPU {report.plateau.cpu_utilisation:.0%} of its core, other processes {report.plateau.others_share:.0%}; "
        f"per busy core that is {report.plateau.implied_capacity_qps:.1f} QPS ({report.implied_error_pct:+.1f} % vs predicted); "
        f"predicted for the mix it served: {report.predicted_for_served_mix:.1f} QPS",
        f"highest throughput within the {report.settings.slo_ms:.0f} ms p99 SLO and no errors: {sat.slo_qps:.1f} QPS",
        "the ramp " + ("went past the plateau" if sat.saturated else "did NOT saturate the cell: raise the fractions"),
        f"machine: {report.machine}; figures in {report.settings.out}",
    ]


def main(argv: list[str] | None = None) -> None:
    import argparse

    from rich.console import Console

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=SaturationSettings.seconds, help="total seconds under load")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--no-admission-compare", action="store_true", help="skip the admission on/off overload step")
    args = ap.parse_args(argv)
    err = Console(stderr=True)
    report = run_saturation_bench(SaturationSettings(seconds=args.seconds, admission_compare=not args.no_admission_compare),
                                  log=lambda m: err.print(f"[dim]{m}[/dim]"))
    print_report(report, render=render, summary_lines=summary_lines, as_json=args.json)


if __name__ == "__main__":
    main()
