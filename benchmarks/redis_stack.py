"""A topology built in code on free ports, with one real redis-server (AOF on) per region: what the
replication benchmark stands up, and what the replication tests share (tests/replication/helpers.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from regions.errors import TemporaryError
from regions.processes import ManagedProcess, free_port, start_redis, wait_until
from regions.topology import Topology, parse_topology, render_topology
from replication.redis_io import connect_all

US_EU = {"us-east": "us", "us-west": "us", "eu-west": "eu"}
TWO_PLUS_TWO = {"us-east": "us", "us-west": "us", "eu-west": "eu", "eu-central": "eu"}


def make_topology(layout: dict[str, str], redis_ports: dict[str, int]) -> Topology:
    geos = sorted(set(layout.values()))
    raw: dict[str, Any] = {
        "settings": {"controller_port": free_port(), "edge_port": free_port()},
        "geographies": {g: {"peak_share": 1.0 / len(geos)} for g in geos},
        "regions": {
            name: {"geography": geo, "capacity_qps": 100, "http_port": free_port(), "grpc_port": free_port(),
                   "redis_port": redis_ports[name]}
            for name, geo in layout.items()
        },
    }
    return parse_topology(raw)


def topology_toml(topology: Topology) -> str:
    return render_topology(topology)


def paper_topology(layout: dict[str, str] = US_EU) -> Topology:
    """A topology on free ports with no server behind it, for tests that only need the vocabulary."""
    return make_topology(layout, {name: free_port() for name in layout})


@dataclass
class Stack:
    topology: Topology
    clients: dict[str, redis.Redis]
    procs: dict[str, ManagedProcess]
    data_dirs: dict[str, Path]
    started: list[ManagedProcess]

    def restart(self, region: str) -> None:
        """Start the region's redis-server again on the same port and data dir (AOF replays)."""
        port = self.topology.region(region).redis_port
        proc = start_redis(port=port, data_dir=self.data_dirs[region], name=f"{region}-again")
        self.procs[region] = proc
        self.started.append(proc)
        # Other test runs share this machine: make sure the server on the port is the one just
        # started (with our data dir), not another process that grabbed the freed port meanwhile.
        wait_until(lambda: not proc.alive() or int(self.clients[region].info("server")["process_id"]) == proc.pid,
                   timeout=10, what=f"the restarted redis-server of {region}")
        if not proc.alive():
            raise TemporaryError(f"port {port} was taken by another process before {region}'s redis-server could restart; "
                                 f"run again:\n{proc.log_tail()}")


def start_stack(tmp_path: Path, layout: dict[str, str], started: list[ManagedProcess]) -> Stack:
    ports = {name: free_port() for name in layout}
    procs: dict[str, ManagedProcess] = {}
    dirs: dict[str, Path] = {}
    for name in layout:
        dirs[name] = tmp_path / f"redis-{name}"
        procs[name] = start_redis(port=ports[name], data_dir=dirs[name], name=name)
        started.append(procs[name])
    topology = make_topology(layout, ports)
    clients = connect_all(topology)
    return Stack(topology=topology, clients=clients, procs=procs, data_dirs=dirs, started=started)
