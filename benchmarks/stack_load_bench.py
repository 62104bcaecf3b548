"""Where does a game day's load go short? chaos.load against a RUNNING stack, with CPU accounting.

    .venv/bin/python bench/bench_stack_load.py --state-dir /tmp/gd/stack --topology /tmp/gd/topology.toml \
        [--rate 300] [--seconds 20] [--processes 1 2] [--target edge]

For each --processes value the load (the game day's own mix, users and items) runs --seconds at
--rate through the edge (or straight at a region's cell with --target), and the script prints:
the achieved rate, the p99 schedule lag, how many requests the open-request cap refused
(client-overload), latency percentiles, the answers by status and tier, the peak number of open
requests, and the CPU each process used during the run (% of one core: the generator's
processes, the edge, each cell, Redis, the controllers, the rest) with the machine's busy share
of its cores and load average. That tells the generator's own CPU, the cap, the edge and the
cells apart. Figures only: nothing here asserts a timing.
"""
from __future__ import annotations

import argparse
import collections
import os
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from benchmarks.cpu_accounting import core_ticks, cpu_ns
from chaos.context import context_from, population
from chaos.load import LoadSpec, cap_for, read_records, run_load
from regions import stack


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


class CpuWatch:
    """CPU ns of the stack's processes and of this process tree, sampled every 0.2 s (a process
    that ends keeps its last reading)."""

    def __init__(self, named: dict[str, int]) -> None:
        self.named = named
        self.first: dict[str, int] = {}
        self.last: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _pids(self) -> dict[str, int]:
        pids = dict(self.named)
        pids["generator (this process)"] = os.getpid()
        for i, child in enumerate(_children(os.getpid())):
            pids[f"generator worker {i}"] = child
        return pids

    def _sample(self) -> None:
        for name, pid in self._pids().items():
            try:
                ns = cpu_ns(pid)
            except OSError:
                continue
            self.first.setdefault(name, ns)
            self.last[name] = ns

    def _loop(self) -> None:
        while not self._stop.wait(0.2):
            self._sample()

    def start(self) -> CpuWatch:
        self._sample()
        self._thread.start()
        return self

    def stop(self) -> dict[str, float]:
        self._stop.set()
        self._thread.join()
        self._sample()
        return {name: (self.last[name] - self.first.get(name, self.last[name])) / 1e9 for name in self.last}


def _group(name: str) -> str:
    for prefix in ("cell-", "redis-", "replicator-", "feature-updater-"):
        if name.startswith(prefix):
            return prefix.rstrip("-") + "s" if prefix != "cell-" else name
    return "controllers" if name.startswith("controller") else name


def _open_peak(records: list[dict]) -> int:
    """Most requests open at once (scheduled-or-sent .. done), from the records."""
    events = sorted([(r["sent"], 1) for r in records if r.get("status") != "client-overload"]
                    + [(r["done"], -1) for r in records if r.get("status") != "client-overload"])
    peak = now = 0
    for _, step in events:
        now += step
        peak = max(peak, now)
    return peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--topology", type=Path, default=None)
    parser.add_argument("--rate", type=float, default=300.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--processes", type=int, nargs="+", default=[1])
    parser.add_argument("--max-in-flight", type=int, default=0, help="0: the game day's cap for the rate (cap_for)")
    parser.add_argument("--target", default="edge")
    args = parser.parse_args()
    ctx = context_from({"state_dir": str(args.state_dir), "topology": str(args.topology or "")})
    base = ctx.edge_url if args.target == "edge" else ctx.cell_url(args.target)
    users, items = population(ctx)
    state = stack.StackState.load(args.state_dir)
    named = {p.name: p.pid for p in state.processes.values() if stack.is_running(p)}
    cap = args.max_in_flight or cap_for(args.rate)
    print(f"load {args.rate:g} req/s for {args.seconds:g} s to {base}; open-request cap {cap}; "
          f"{len(named)} stack processes; {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory(prefix="bench-stack-load-") as tmp:
        for procs in args.processes:
            path = Path(tmp) / f"load-{procs}.jsonl"
            spec = LoadSpec(base_url=base, rate=args.rate, duration_s=args.seconds, users=users, items=items,
                            processes=procs, max_in_flight=cap)
            load_before = os.getloadavg()[0]
            busy0, total0 = core_ticks(set(os.sched_getaffinity(0)))
            watch = CpuWatch(named).start()
            t0 = time.perf_counter()
            result = run_load(spec, path)
            wall = time.perf_counter() - t0
            cpu = watch.stop()
            busy1, total1 = core_ticks(set(os.sched_getaffinity(0)))
            records = read_records(path)
            lat = np.array([r["latency_ms"] for r in records]) if records else np.zeros(1)
            statuses = collections.Counter(str(r.get("status")) for r in records)
            tiers = collections.Counter(str(r.get("tier")) for r in records if r.get("kind") == "homepage")
            print(f"\n{procs} generator process(es): sent {result['sent']:,} of {result['scheduled']:,}, achieved "
                  f"{result['achieved_rate']:.1f} req/s, p99 schedule lag {result['p99_schedule_lag_ms'] or 0:.1f} ms, "
                  f"client-overload {result['client_overload']:,}, "
                  f"{'VALID' if result['valid'] else 'INVALID (more than 2 % short)'}; wall {wall:.1f} s")
            print(f"  latency from the scheduled send: p50 {np.percentile(lat, 50):.0f} ms, p90 {np.percentile(lat, 90):.0f} ms, "
                  f"p99 {np.percentile(lat, 99):.0f} ms; peak open requests {_open_peak(records)}")
            print(f"  statuses: {dict(statuses.most_common(6))}; homepage tiers: {dict(tiers.most_common())}")
            grouped: dict[str, float] = collections.defaultdict(float)
            for name, seconds in cpu.items():
                grouped["generator" if name.startswith("generator") else _group(name)] += seconds
            span = max(wall, 1e-9)
            print(f"  CPU during the run (% of one core): " + ", ".join(
                f"{name} {100 * s / span:.0f}" for name, s in sorted(grouped.items(), key=lambda kv: -kv[1])))
            print(f"  machine: {100 * (busy1 - busy0) / max(total1 - total0, 1):.0f} % of its {len(os.sched_getaffinity(0))} "
                  f"cores busy; load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after")


if __name__ == "__main__":
    main()
