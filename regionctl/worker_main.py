"""Process entry points of the replication workers (the edge: environment, signals, clients).

    python -m regionctl.worker_main replicate --region us-east [--topology FILE] [--metrics-port N]
    python -m regionctl.worker_main feature-updater --region us-east [--topology FILE] [--metrics-port N]
    python -m regionctl.worker_main retention [--interval-s S] [--mode trim|pseudonymise] [--topology FILE] [--metrics-port N]

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
from contracts.environment import parse_value, retention_key
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
    r = sub.add_parser("retention")
    r.add_argument("--topology", default=None, help="topology file (default: REGIONCTL_TOPOLOGY or topology.toml)")
    r.add_argument("--interval-s", type=float, default=None, help="seconds between runs (default: REGIONCTL_RETENTION_INTERVAL_S or 3600)")
    r.add_argument("--mode", default=None, help="trim or pseudonymise (default: REGIONCTL_RETENTION_MODE or trim)")
    r.add_argument("--artifacts", default=None, help="artifact store, for the erasure deadline (default: REGIONCTL_ARTIFACTS)")
    r.add_argument("--metrics-port", type=int, default=None, help="serve Prometheus metrics on 127.0.0.1:PORT")
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
    if metrics_port:  # the region's address: its namespace's in netns mode, loopback otherwise
        start_http_server(metrics_port, addr=topology.region_host(region), registry=registry)
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
        start_http_server(metrics_port, addr=topology.region_host(region), registry=registry)
    settings = UpdaterSettings(batch_size=batch) if batch else UpdaterSettings()
    updater = FeatureUpdater(topology=topology, region=region, client=connect(topology, region), settings=settings,
                             metrics=ReplicationMetrics(registry))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    print(f"feature updater {region}: streams {', '.join(updater.streams)}", flush=True)
    updater.run(stop)


def run_retention_worker(args: argparse.Namespace, *, metrics_port: int | None, stop: _StopFlag) -> None:
    from replication.retention import RetentionSettings
    from replication.retention_worker import RetentionWorker, RetentionWorkerSettings

    topology = load_topology(env_topology_path(os.environ, args.topology))
    interval = args.interval_s if args.interval_s is not None else float(os.environ.get("REGIONCTL_RETENTION_INTERVAL_S") or 3600.0)
    mode = args.mode or os.environ.get("REGIONCTL_RETENTION_MODE") or "trim"
    registry = CollectorRegistry()
    worker = RetentionWorker(topology=topology, clients=connect_all(topology),
                             artifacts_url=args.artifacts or os.environ.get("REGIONCTL_ARTIFACTS") or None,
                             retention=RetentionSettings(mode=mode), settings=RetentionWorkerSettings(interval_s=interval),
                             key=retention_key(os.environ), registry=registry)
    if metrics_port:
        start_http_server(metrics_port, addr=LOOPBACK, registry=registry)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    print(f"retention worker: {mode} every {interval:g} s over {', '.join(sorted(topology.regions))}", flush=True)
    worker.run(stop)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    stop = _StopFlag()
    signal.signal(signal.SIGTERM, stop.set)
    signal.signal(signal.SIGINT, stop.set)
    if args.command == "retention":
        try:
            run_retention_worker(args, metrics_port=args.metrics_port or _env_int("REGIONCTL_METRICS_PORT"), stop=stop)
        except ShopNowError as exc:
            print(f"error: {exc}", file=sys.stderr, flush=True)
            return 2
        return 0
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
