"""Routing-table propagation (write -> the edge's watcher routes by it): p50 / p99 / max.

    .venv/bin/python bench/bench_watch.py [--writes 300]

Starts a real 3-member etcd cluster on free loopback ports (data in a temporary directory) and
measures, with the edge's own TableWatcher (failover.propagation):
  etcd, watch          the default on etcd: a /v3/watch stream per wait
  etcd, watch broken   the fallback: the watch refuses, the watcher polls every 0.15 s
  sqlite, poll         the embedded store: polling every 0.15 s (EdgeSettings.poll_interval_s)
Prints figures; asserts nothing about time (target on etcd: p99 <= 100 ms).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from failover.etcd_store import EtcdStore  # noqa: E402
from failover.propagation import measure  # noqa: E402
from failover.sqlite_store import SqliteStore  # noqa: E402
from regions.errors import TemporaryError  # noqa: E402
from regions.etcd_cluster import start_cluster  # noqa: E402
from regions.topology import load_topology  # noqa: E402


class WatchRefused(EtcdStore):
    """An etcd store whose watch is broken (every watch raises), to measure the polling fallback."""

    def watch(self, key: str, *, after_version: int, timeout_s: float) -> bool:
        raise TemporaryError("watch disabled by the benchmark")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--writes", type=int, default=300)
    args = parser.parse_args()
    topology = load_topology(ROOT / "topology.toml")
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
