"""Replication benchmark: throughput of one replicator, and lag under a steady bounded load.

    .venv/bin/python benchmarks/replication_bench.py [--events 100000] [--rate 2000] [--seconds 10]

1. Throughput: a backlog of --events events in us-east is drained by one in-process replicator
   (one thread: one core) into us-west, plus anonymous popularity into all three regions.
   Prints events/s by wall clock and by the replicator's own CPU time, then the feature
   updater's events/s applying the copied stream in us-west.
2. Lag: `python -m regionctl.worker_main replicate` runs as its own process while a writer
   appends --rate events/s (batches every 10 ms) for --seconds; a reader blocked on the
   destination stream timestamps each copy as it lands. Lag of an event = arrival time at the
   destination - its acknowledgement time at the source (the stream id's ms). Prints p50/p99/max,
   and checks no event was lost or duplicated.

Targets (from the issue): >= 20,000 events/s per replicator; lag p99 <= 1 s at 2,000 events/s.
Figures only: nothing here asserts a timing.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

from regions import redis_keys
from regions.processes import ManagedProcess, spawn, wait_until
from regions.topology import REPO_ROOT
from contracts.events import Event
from replication.interaction_log import append_events, stream_last_id
from replication.lag import parse_stream_id, percentile
from replication.replicating import Replicator, ReplicatorSettings
from serving.feature_updater import FeatureUpdater, UpdaterSettings
from benchmarks.redis_stack import US_EU, Stack, start_stack, topology_toml


def _events(n: int, start: int) -> list[Event]:
    return [Event(event_id=f"e{start + i}", user_id=f"us-{(start + i) % 5000}", item_id=f"item-{(start + i) % 2000}",
                  type=("view", "cart", "purchase", "impression")[(start + i) % 4], ts=time.time(), geo="us",
                  session_id=f"s{(start + i) % 5000}", seq=start + i, price=12.5) for i in range(n)]


def throughput(stack: Stack, n: int) -> None:
    c, topo = stack.clients, stack.topology
    for start in range(0, n, 500):
        append_events(c["us-east"], _events(min(500, n - start), start), topology=topo, region="us-east")
    replicator = Replicator(topology=topo, source="us-east", clients=c, settings=ReplicatorSettings(block_ms=0))
    wall0, cpu0 = time.perf_counter(), time.process_time()
    copied = 0
    while (result := replicator.step()).read:
        copied += result.copied.get("us-west", 0)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    print(f"replicator throughput: {copied:,} events copied in {wall:.2f} s wall = {copied / wall:,.0f} events/s "
          f"(replicator CPU {cpu:.2f} s = {copied / cpu:,.0f} events per CPU-second; target >= 20,000 events/s)")
    updater = FeatureUpdater(topology=topo, region="us-west", client=c["us-west"], settings=UpdaterSettings(block_ms=0))
    wall0 = time.perf_counter()
    applied = 0
    while (res := updater.step()).read:
        applied += res.applied
    wall = time.perf_counter() - wall0
    print(f"feature updater throughput: {applied:,} events applied in {wall:.2f} s = {applied / wall:,.0f} events/s")


def steady_lag(stack: Stack, *, rate: int, seconds: float, workdir: Path) -> None:
    c, topo = stack.clients, stack.topology
    topo_file = workdir / "topology.toml"
    topo_file.write_text(topology_toml(topo))
    replica = redis_keys.replica_log("us-east")
    proc: ManagedProcess = spawn("bench-replicator", [sys.executable, "-m", "regionctl.worker_main", "replicate",
                                                      "--region", "us-east", "--topology", str(topo_file)],
                                 log_dir=workdir, cwd=REPO_ROOT)
    # Warm-up: the measured load starts once the replicator process is up and copying.
    warm = append_events(c["us-east"], _events(1, 9_999_999), topology=topo, region="us-east")
    wait_until(lambda: stream_last_id(c["us-west"], replica) == warm[-1] or not proc.alive(), timeout=60, what="replicator start")
    start_id = warm[-1]
    lags: list[float] = []
    seen: list[str] = []
    done = threading.Event()

    def reader() -> None:
        last = start_id
        while not done.is_set() or stream_last_id(c["us-west"], replica) != stream_last_id(c["us-east"], redis_keys.EVENT_LOG):
            reply = c["us-west"].xread({replica: last}, count=5000, block=200)
            now = time.time()
            for _, entries in reply or []:
                for raw_id, _fields in entries:
                    last = raw_id.decode()
                    seen.append(last)
                    lags.append(now - parse_stream_id(last).seconds)

    thread = threading.Thread(target=reader)
    thread.start()
    acked: list[str] = []
    per_tick = max(1, rate // 100)
    t0 = time.perf_counter()
    tick = 0
    try:
        while time.perf_counter() - t0 < seconds:
            acked += append_events(c["us-east"], _events(per_tick, 10_000_000 + tick * per_tick), topology=topo, region="us-east")
            tick += 1
            pause = t0 + tick * 0.01 - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
        elapsed = time.perf_counter() - t0
        wait_until(lambda: stream_last_id(c["us-west"], replica) == acked[-1] or not proc.alive(), timeout=60, what="catch-up")
    finally:
        done.set()
        thread.join(timeout=60)
        proc.stop()
    lost = set(acked) - set(seen)
    print(f"steady load: {len(acked):,} events at {len(acked) / elapsed:,.0f} events/s for {elapsed:.1f} s; "
          f"copied {len(seen):,}, lost {len(lost)}, duplicated {len(seen) - len(set(seen))}")
    print(f"replication lag at the destination: p50 {percentile(lags, 50) * 1000:.1f} ms, "
          f"p99 {percentile(lags, 99) * 1000:.1f} ms, max {max(lags) * 1000:.1f} ms (target p99 <= 1000 ms)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rate", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    started: list[ManagedProcess] = []
    with tempfile.TemporaryDirectory(prefix="bench-replication-") as tmp:
        try:
            stack = start_stack(Path(tmp) / "throughput", US_EU, started)
            throughput(stack, args.events)
            stack = start_stack(Path(tmp) / "lag", US_EU, started)
            steady_lag(stack, rate=args.rate, seconds=args.seconds, workdir=Path(tmp))
        finally:
            for proc in started:
                proc.kill()


if __name__ == "__main__":
    main()
