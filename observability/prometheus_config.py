"""The Prometheus configuration of the local stack, generated from what `up` recorded (pure).

    scrape_config(state, topology, rule_files=...)   the prometheus.yml document (a dict; JSON is
                                                     YAML, so it is written as JSON)

Targets, one job per kind, every one on 127.0.0.1:
    cell              the cell's HTTP port (topology)        /metrics
    replicator        the worker's --metrics-port           live RPO (shopnow_replication_lag_seconds)
    feature-updater   the worker's --metrics-port           shopnow_feature_updater_lag_seconds
    retention         the worker's --metrics-port           erasure deadlines, last retention run
    controller        each controller's control API port     /metrics (no token)
    edge              the edge port (topology)               /metrics
    etcd              each member's client port              etcd's own /metrics (`up --control-store etcd`)
Each target carries `process` (the stack's name for it) and, for per-region processes, `region`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from regions.stack import StackState
from regions.topology import Topology

SCRAPED_KINDS = ("cell", "replicator", "feature-updater", "retention", "controller", "edge", "etcd")
RULES_DIR = Path(__file__).with_name("rules")
"""The shipped recording and alerting rules (promtool-tested: observability/rules/tests)."""
SCRAPE_INTERVAL_S = 2.0
"""The local stack's game days last a minute or two: a 2 s scrape sees a region loss in a few samples."""


def shipped_rule_files() -> list[Path]:
    return sorted(RULES_DIR.glob("*.yml"))


def _port(kind: str, region: str, port: int, topology: Topology) -> int:
    if kind == "cell":
        return topology.region(region).http_port
    return port


def scrape_config(state: StackState, topology: Topology, *, rule_files: Iterable[Path] = (),
                  scrape_interval_s: float = SCRAPE_INTERVAL_S) -> dict[str, Any]:
    """prometheus.yml for the processes in `state` (those without a port are not scraped)."""
    host = topology.settings.host
    jobs: dict[str, list[dict[str, Any]]] = {kind: [] for kind in SCRAPED_KINDS}
    for proc in sorted(state.processes.values(), key=lambda p: p.name):
        if proc.kind not in jobs:
            continue
        port = _port(proc.kind, proc.region, proc.port, topology)
        if not port:
            continue
        labels = {"process": proc.name, **({"region": proc.region} if proc.region else {})}
        where = topology.region_host(proc.region) if proc.region else host
        jobs[proc.kind].append({"targets": [f"{where}:{port}"], "labels": labels})
    interval = f"{scrape_interval_s:g}s"
    return {
        "global": {"scrape_interval": interval, "evaluation_interval": interval, "scrape_timeout": interval},
        "rule_files": [str(p) for p in rule_files],
        "scrape_configs": [{"job_name": kind, "metrics_path": "/metrics", "static_configs": groups}
                           for kind, groups in jobs.items() if groups],
    }


__all__ = ["RULES_DIR", "SCRAPED_KINDS", "scrape_config", "shipped_rule_files"]
