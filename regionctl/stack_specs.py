"""What the local stack runs: one ProcessSpec per process, in start order, with regionctl's own
entry points (regions.stack starts and stops whatever specs it is handed and names no program).

    first        the etcd members, when the stack runs on etcd (regions.stack_etcd: <state_dir>/etcd.json)
    per region   redis-server (AOF on), the cell (HTTP + gRPC), the replicator, the feature updater
    one          the retention worker (every region, hourly: replication.retention_worker)
    then         the controllers a (control API on the topology's port) and b (standby), the edge
"""
from __future__ import annotations

import sys
from pathlib import Path

from regions.processes import redis_argv
from regions.stack import ProcessSpec, StackUrls
from regions.stack_etcd import load_members, member_commands
from regions.topology import Topology


def _py(module: str, *args: str) -> tuple[str, ...]:
    return (sys.executable, "-m", module, *args)


def stack_specs(topology: Topology, *, state_dir: Path, urls: StackUrls) -> list[ProcessSpec]:
    """Everything `regionctl up` starts, in start order."""
    artifacts_url, control_store_url = urls.artifacts, urls.control_store
    host = topology.settings.host
    specs: list[ProcessSpec] = []
    for member, argv in member_commands(load_members(state_dir) or (), state_dir):
        specs.append(ProcessSpec(name=member.name, kind="etcd", port=member.client_port, argv=tuple(argv)))
    for region in topology.regions.values():
        data = state_dir / "redis" / region.name
        specs.append(ProcessSpec(
            name=f"redis-{region.name}", kind="redis", region=region.name, port=region.redis_port,
            argv=tuple(redis_argv(port=region.redis_port, data_dir=data, host=host)),
        ))
    for region in topology.regions.values():
        specs.append(ProcessSpec(
            name=f"cell-{region.name}", kind="cell", region=region.name, port=region.http_port,
            argv=_py("regionctl.main", "cell", "--region", region.name, "--artifacts", artifacts_url),
        ))
        specs.append(ProcessSpec(
            name=f"replicator-{region.name}", kind="replicator", region=region.name,
            argv=_py("regionctl.worker_main", "replicate", "--region", region.name),
        ))
        specs.append(ProcessSpec(
            name=f"feature-updater-{region.name}", kind="feature-updater", region=region.name,
            argv=_py("regionctl.worker_main", "feature-updater", "--region", region.name),
        ))
    specs.append(ProcessSpec(  # one for the stack: retention over every region, hourly (replication.retention_worker)
        name="retention", kind="retention", argv=_py("regionctl.worker_main", "retention"),
    ))
    for ident in ("a", "b"):
        port = topology.settings.controller_port if ident == "a" else 0
        specs.append(ProcessSpec(
            name=f"controller-{ident}", kind="controller", port=port,
            argv=_py("regionctl.main", "controller", "--id", f"controller-{ident}", "--store", control_store_url,
                     *(("--api-port", str(topology.settings.controller_port)) if ident == "a" else ("--api-port", "0"))),
        ))
    specs.append(ProcessSpec(
        name="edge", kind="edge", port=topology.settings.edge_port,
        argv=_py("regionctl.main", "edge", "--store", control_store_url),
    ))
    return specs
