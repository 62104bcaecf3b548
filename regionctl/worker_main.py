"""Process entry points of the replication workers (the edge: environment, signals, clients).

    python -m regionctl.worker_main replicate --region us-east [--topology FILE] [--metrics-port N]
    python -m regionctl.worker_main feature-updater --region us-east [--topology FILE] [--metrics-port N]

Both run until SIGTERM or SIGINT, finishing the batch in hand. Settings come from flags, else from
the environment (REGIONCTL_TOPOLOGY, REGIONCTL_REPLICATION_BATCH, REGIONCTL_METRICS_PORT), else
their defaults. Metrics, when asked for, are served on 127.0.0.1 only.
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from typing import Sequence

from prometheus_client import CollectorRegistry, start_http_server

from regions.errors import InputError, ShopNowError
from regions.processes import LOOPBACK
from contracts.environment import parse_value
from contracts.environment import topology_path as env_topology_path
from regions.topology import load_topology
from replication.redis_io import connect, connect_all
from replication.metrics import ReplicationMetrics
from replication.replicating import Replicator, ReplicatorSettings


def _env_int(name: str) -> int | None:
    raw = os.environ.get(name)
    if raw in (None, ""):
        return None
    try:
        return int(parse_value(name, raw, 0))
    except InputError as exc:
        raise SystemExit(str(exc)) from None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m regionctl.worker_main")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("replicate", "feature-updater"):
        p = sub.add_parser(name)
        p.add_argument("--region", required=True)
        p.add_argument("--topology", default=None, help="topology file (default: REGIONCTL_TOPOLOGY or topology.toml)")
        p.add_argument("--batch", type=int, default=None, help="entries per batch (default: REGIONCTL_REPLICATION_BATCH or 500)")
        p.add_argument("--metrics-port", type=int, default=None, help="serve Prometheus metrics on 127.0.0.1:PORT")
    return parser


class _StopFlag:
    def __init__(self) -> None:
        self.stopped = False

    def __call__(self) -> bool:
        return self.stopped

    def set(self, *_: object) -> None:
        self.stopped = True


def run_replicator(region: str, *, topology_path: str | None, batch: int | None, metrics_port: int | None, stop: _StopFlag) -> None:
    topology = load_topology(env_topology_path(os.environ, topology_path))
    topology.region(region)
    registry = CollectorRegistry()
    if metrics_port:
        start_http_server(metrics_port, addr=LOOPBACK, registry=registry)
    settings = ReplicatorSettings(batch_size=batch) if batch else ReplicatorSettings()
    replicator = Replicator(topology=topology, source=region, clients=connect_all(topology), settings=settings,
                            metrics=ReplicationMetrics(registry))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    print(f"replicator {region}: peers {', '.join(replicator.peers) or '(none: single-region geography)'}", flush=True)
    replicator.run(stop)


def run_feature_updater(region: str, *, topology_path: str | None, batch: int | None, metrics_port: int | None, stop: _StopFlag) -> None:
    from serving.feature_updater import FeatureUpdater, UpdaterSettings

    topology = load_topology(env_topology_path(os.environ, topology_path))
    topology.region(region)
    registry = CollectorRegistry()
    if metrics_port:
        start_http_server(metrics_port, addr=LOOPBACK, registry=registry)
    settings = UpdaterSettings(batch_size=batch) if batch else UpdaterSettings()
    updater = FeatureUpdater(topology=topology, region=region, client=connect(topology, region), settings=settings,
                             metrics=ReplicationMetrics(registry))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    print(f"feature updater {region}: streams {', '.join(updater.streams)}", flush=True)
    updater.run(stop)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    stop = _StopFlag()
    signal.signal(signal.SIGTERM, stop.set)
    signal.signal(signal.SIGINT, stop.set)
    batch = args.batch or _env_int("REGIONCTL_REPLICATION_BATCH")
    metrics_port = args.metrics_port or _env_int("REGIONCTL_METRICS_PORT")
    runner = run_replicator if args.command == "replicate" else run_feature_updater
    try:
        runner(args.region, topology_path=args.topology, batch=batch, metrics_port=metrics_port, stop=stop)
    except ShopNowError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
