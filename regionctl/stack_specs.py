"""What the local stack runs: one ProcessSpec per process, in start order, with regionctl's own
entry points (regions.stack starts and stops whatever specs it is handed and names no program).

    first        the etcd members, when the stack runs on etcd (regions.stack_etcd: <state_dir>/etcd.json)
    per region   redis-server (AOF on), the cell (HTTP + gRPC), the replicator, the feature updater
                 (each worker serving Prometheus metrics on a free loopback port, recorded as its `port`,
                 which is also its readiness)
    one          the retention worker (every region, hourly: replication.retention_worker; metrics on a
                 free port too)
    then         the controllers a (control API on the topology's port) and b (standby, control API on
                 a free port, so that both are scraped), the edge

In netns mode (topology `[network] mode = "netns"`, regions.netns) every process of a region runs
in the region's namespace (`ip netns exec`), listening on the region's address; the rest stays in
the host namespace.

`prometheus_spec` is the Prometheus of `regionctl up --observability` (observability.prometheus_stack
writes its configuration from the processes recorded, and starts it).
"""
from __future__ import annotations

import sys
from pathlib import Path

from observability.prometheus_stack import NAME as PROMETHEUS, prometheus_argv
from regions.processes import free_port, redis_argv
from regions.stack import ProcessSpec, StackUrls
from regions.netns import exec_prefix, plan_for
from regions.stack_etcd import load_members, member_commands
from regions.topology import Topology


def _py(module: str, *args: str) -> tuple[str, ...]:
    return (sys.executable, "-m", module, *args)


def stack_specs(topology: Topology, *, state_dir: Path, urls: StackUrls) -> list[ProcessSpec]:
    """Everything `regionctl up` starts, in start order."""
    artifacts_url, control_store_url = urls.artifacts, urls.control_store
    plan = plan_for(topology) if topology.netns else None

    def in_region(region: str, argv: tuple[str, ...]) -> dict[str, object]:
        """Where a region's process runs: its namespace and address in netns mode, loopback otherwise."""
        if plan is None:
            return {"argv": argv}
        ns = plan.namespace_of(region)
        return {"argv": exec_prefix(ns) + argv, "netns": ns, "host": topology.region_host(region)}

    specs: list[ProcessSpec] = []
    for member, argv in member_commands(load_members(state_dir) or (), state_dir):
        specs.append(ProcessSpec(name=member.name, kind="etcd", port=member.client_port, argv=tuple(argv)))
    for region in topology.regions.values():
        data = state_dir / "redis" / region.name
        specs.append(ProcessSpec(
            name=f"redis-{region.name}", kind="redis", region=region.name, port=region.redis_port,
            **in_region(region.name, tuple(redis_argv(port=region.redis_port, data_dir=data,
                                                      host=topology.region_host(region.name)))),  # type: ignore[arg-type]
        ))
    for region in topology.regions.values():
        specs.append(ProcessSpec(
            name=f"cell-{region.name}", kind="cell", region=region.name, port=region.http_port,
            **in_region(region.name, _py("regionctl.main", "cell", "--region", region.name,
                                         "--artifacts", artifacts_url)),  # type: ignore[arg-type]
        ))
        for kind, command in (("replicator", "replicate"), ("feature-updater", "feature-updater")):
            metrics_port = free_port()  # the worker's /metrics (live RPO, updater lag); also its readiness
            specs.append(ProcessSpec(
                name=f"{kind}-{region.name}", kind=kind, region=region.name, port=metrics_port,
                **in_region(region.name, _py("regionctl.worker_main", command, "--region", region.name,
                                             "--metrics-port", str(metrics_port))),  # type: ignore[arg-type]
            ))
    retention_port = free_port()
    specs.append(ProcessSpec(  # one for the stack: retention over every region, hourly (replication.retention_worker)
        name="retention", kind="retention", port=retention_port,
        argv=_py("regionctl.worker_main", "retention", "--metrics-port", str(retention_port)),
    ))
    for ident in ("a", "b"):
        port = topology.settings.controller_port if ident == "a" else free_port()
        specs.append(ProcessSpec(
            name=f"controller-{ident}", kind="controller", port=port,
            argv=_py("regionctl.main", "controller", "--id", f"controller-{ident}", "--store", control_store_url,
                     "--api-port", str(port), "--artifacts", artifacts_url),
        ))
    specs.append(ProcessSpec(
        name="edge", kind="edge", port=topology.settings.edge_port,
        argv=_py("regionctl.main", "edge", "--store", control_store_url),
    ))
    return specs


def prometheus_spec(topology: Topology, *, state_dir: Path, config: Path) -> ProcessSpec:
    """The stack's Prometheus on a free loopback port, reading `config` (observability.prometheus_stack.write_config)."""
    port = free_port()
    return ProcessSpec(name=PROMETHEUS, kind=PROMETHEUS, port=port, argv=prometheus_argv(
        config=config, data_dir=state_dir / PROMETHEUS / "data", host=topology.settings.host, port=port))
