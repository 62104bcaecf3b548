"""Routing-table propagation (write -> the edge's watcher routes by it): p50 / p99 / max.

    .venv/bin/python bench/bench_watch.py [--writes 300]     (a thin script over this module)

Starts a real 3-member etcd cluster on free loopback ports (data in a temporary directory) and
measures, with the edge's own TableWatcher (benchmarks.propagation):
  etcd, watch          the default on etcd: a /v3/watch stream per wait
  etcd, watch broken   the fallback: the watch refuses, the watcher polls every 0.15 s
  sqlite, poll         the embedded store: polling every 0.15 s (EdgeSettings.poll_interval_s)
Prints figures; asserts nothing about time (target on etcd: p99 <= 100 ms).
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from benchmarks.propagation import measure
from failover.etcd_store import EtcdStore
from failover.sqlite_store import SqliteStore
from regions.errors import TemporaryError
from regions.etcd_cluster import start_cluster
from regions.topology import REPO_ROOT, load_topology


class WatchRefused(EtcdStore):
    """An etcd store whose watch is broken (every watch raises), to measure the polling fallback."""

    def watch(self, key: str, *, after_version: int, timeout_s: float) -> bool:
        raise TemporaryError("watch disabled by the benchmark")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--writes", type=int, default=300)
    args = parser.parse_args()
    topology = load_topology(REPO_ROOT / "topology.toml")
    with tempfile.TemporaryDirectory(prefix="bench-watch-") as tmp:
        cluster = start_cluster(Path(tmp) / "etcd")
        try:
            with EtcdStore(cluster.endpoints, prefix="bench-watch/") as store:
                print(measure(store, topology, writes=args.writes).line("etcd, watch"))
            with WatchRefused(cluster.endpoints, prefix="bench-poll/") as store:
                print(measure(store, topology, writes=max(50, args.writes // 3)).line("etcd, watch broken"))
        finally:
            cluster.stop()
        with SqliteStore(Path(tmp) / "control.db") as store:
            print(measure(store, topology, writes=max(50, args.writes // 3)).line("sqlite, poll"))


if __name__ == "__main__":
    main()
