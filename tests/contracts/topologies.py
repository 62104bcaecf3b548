"""Small topologies built in code for the pure tests of the contracts and the edge."""
from __future__ import annotations

from typing import Mapping

from regions.topology import Topology, parse_topology


def make_topology(layout: Mapping[str, list[str]]) -> Topology:
    regions, port = {}, 30000
    for geo, names in layout.items():
        for name in names:
            regions[name] = {"geography": geo, "capacity_qps": 100, "http_port": port, "grpc_port": port + 1,
                             "redis_port": port + 2}
            port += 3
    share = 1.0 / len(layout)
    geos = {g: {"peak_share": share} for g in layout}
    geos[list(layout)[-1]]["peak_share"] = 1.0 - share * (len(layout) - 1)
    return parse_topology({"geographies": geos, "regions": regions})


DOC_TABLE = {"version": 12, "updated_at": 1764000000.0, "fail_static": False,
             "geos": {"us": {"regions": {"us-east": 50, "us-west": 50}, "anonymous": False},
                      "eu": {"regions": {"us-east": 50, "us-west": 50}, "anonymous": True}},
             "max_tier": {"us-east": "full", "us-west": "full", "eu-west": "full"}}
"""The routing table example of docs/interfaces.md."""
