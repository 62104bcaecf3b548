"""Real network faults on the netns stack (regions.netns): which nftables tables in which region
namespaces make each fault, and how many packets they dropped. Pure: chaos.net_actions applies them.

Every fault is one or more tables `inet shopnow_<fault>` inside region namespaces (never in the
host's own ruleset), each rule ending in `counter drop`; removing the fault deletes the tables.

    isolate(region)            the region cut off from the hub: everything in and out of its eth0
                               (the controllers, the edge and its geography's peer lose it; its
                               replication stalls in both directions)
    partition(a, b)            a and b (one geography's two regions) cannot reach each other; both
                               still reach the hub: replication between them stalls, serving does not
    controller_path(region)    the controller cannot reach the region, the edge can: the controller
                               reaches a cell only at its HTTP port (/readyz and the homepage probe),
                               the edge only at its gRPC port (serving, events); drops TCP from the
                               host to the HTTP port
    edge_path(region)          the reverse: drops TCP from the host to the cell's gRPC port
    loss(region, percent)      `numgen random mod 100 < percent` drops on the region's link, in each
                               direction

A fault whose rules dropped no packet was not observed (`dropped`): the game day that injected it
is invalid (chaos.verdicts), whatever its figures say.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from regions.errors import InputError
from regions.netns import REGION_IF, NetnsPlan
from regions.topology import Topology

PRIORITY = -10
"""Before any other filter of the namespace (there is none: the stack owns these namespaces)."""


@dataclass(frozen=True)
class NsTable:
    namespace: str
    name: str
    """nft table name (family inet)."""
    script: str
    """What `nft -f -` is fed inside the namespace to create it."""


@dataclass(frozen=True)
class NetFault:
    key: str
    """The fault registry key (chaos.fault_registry), e.g. "net:partition:us-east+us-west"."""
    kind: str
    what: str
    tables: tuple[NsTable, ...]


def _table(namespace: str, name: str, *, inbound: Iterable[str] = (), outbound: Iterable[str] = ()) -> NsTable:
    def chain(hook: str, rules: Iterable[str]) -> str:
        body = "".join(f" {r} counter drop;" for r in rules)
        return f"  chain {hook} {{ type filter hook {hook} priority {PRIORITY}; policy accept;{body} }}\n"

    return NsTable(namespace=namespace, name=name,
                   script=f"table inet {name} {{\n{chain('input', inbound)}{chain('output', outbound)}}}\n")


def _netns(plan: NetnsPlan | None, topology: Topology) -> NetnsPlan:
    if plan is None or not topology.netns:
        raise InputError("network", "network faults need the netns stack (`regionctl up --netns`, or topology.toml "
                                    "[network] mode = \"netns\"); this stack runs on loopback, where no packet can be cut")
    return plan


def isolate(plan: NetnsPlan | None, topology: Topology, region: str) -> NetFault:
    link = _netns(plan, topology).link_of(topology.region(region).name)
    return NetFault(key=f"net:isolate:{region}", kind="isolate", what=f"{region} cut off from the hub",
                    tables=(_table(link.namespace, "shopnow_isolate", inbound=[f'iifname "{REGION_IF}"'],
                                   outbound=[f'oifname "{REGION_IF}"']),))


def partition(plan: NetnsPlan | None, topology: Topology, a: str, b: str) -> NetFault:
    plan = _netns(plan, topology)
    ra, rb = topology.region(a), topology.region(b)
    if a == b:
        raise InputError("b", f"a partition needs two different regions, got {a!r} twice")
    if ra.geography != rb.geography:
        raise InputError("b", f"{a} ({ra.geography}) and {b} ({rb.geography}) are in different geographies: nothing "
                              "replicates between them (residency); partition two regions of one geography")
    tables = []
    for here, there in ((a, b), (b, a)):
        peer = topology.region_host(there)
        tables.append(_table(plan.namespace_of(here), f"shopnow_partition_{there.replace('-', '_')}",
                             inbound=[f"ip saddr {peer}"], outbound=[f"ip daddr {peer}"]))
    x, y = sorted((a, b))
    return NetFault(key=f"net:partition:{x}+{y}", kind="partition", what=f"{x} and {y} cut off from each other",
                    tables=tuple(tables))


def _port_block(plan: NetnsPlan | None, topology: Topology, region: str, *, port: int, kind: str, what: str) -> NetFault:
    link = _netns(plan, topology).link_of(topology.region(region).name)
    return NetFault(key=f"net:{kind}:{region}", kind=kind, what=what,
                    tables=(_table(link.namespace, f"shopnow_{kind.replace('-', '_')}",
                                   inbound=[f"ip saddr {plan.host_address} tcp dport {port}"]),))  # type: ignore[union-attr]


def controller_path(plan: NetnsPlan | None, topology: Topology, region: str) -> NetFault:
    return _port_block(plan, topology, region, port=topology.region(region).http_port, kind="controller-path",
                       what=f"the controller cannot reach {region} (its cell's HTTP port); the edge can")


def edge_path(plan: NetnsPlan | None, topology: Topology, region: str) -> NetFault:
    return _port_block(plan, topology, region, port=topology.region(region).grpc_port, kind="edge-path",
                       what=f"the edge cannot reach {region} (its cell's gRPC port); the controller can")


def loss(plan: NetnsPlan | None, topology: Topology, region: str, percent: int) -> NetFault:
    if isinstance(percent, bool) or not isinstance(percent, int) or not 1 <= percent <= 99:
        raise InputError("percent", f"must be an integer 1..99 (the share of packets dropped), got {percent!r}")
    link = _netns(plan, topology).link_of(topology.region(region).name)
    rnd = f"numgen random mod 100 < {percent}"
    return NetFault(key=f"net:loss:{region}", kind="loss", what=f"{percent} % packet loss on {region}'s link",
                    tables=(_table(link.namespace, "shopnow_loss", inbound=[f'iifname "{REGION_IF}" {rnd}'],
                                   outbound=[f'oifname "{REGION_IF}" {rnd}']),))


def rule_count(listing: Mapping[str, Any]) -> int:
    """Rules in an `nft -j list table` document."""
    return sum(1 for item in listing.get("nftables", []) if "rule" in item)


def dropped(listing: Mapping[str, Any]) -> int:
    """Packets the table's `counter drop` rules dropped, from `nft -j list table`."""
    total = 0
    for item in listing.get("nftables", []):
        for expr in item.get("rule", {}).get("expr", []):
            if isinstance(expr, Mapping) and "counter" in expr:
                total += int(expr["counter"].get("packets", 0))
    return total


REMOVERS = frozenset({"heal_region", "heal_partition", "unblock_controller_path", "unblock_edge_path", "stop_packet_loss"})
"""The chaos.net_actions that remove a fault (and report its drop counters)."""


def fault_dropped(rollback_runs: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """{fault key: packets its rules dropped} from the journal's runs of the actions that removed
    network faults (a table already gone reports nothing and is left out)."""
    out = {}
    for run in rollback_runs:
        output = run.get("output")
        if run.get("activity", {}).get("provider", {}).get("func") in REMOVERS and isinstance(output, Mapping) \
                and output.get("observed") is not None:
            out[str(output["fault"])] = int(output.get("dropped_packets", 0))
    return out


KINDS = ("isolate", "partition", "controller-path", "edge-path", "loss")

__all__ = ["KINDS", "REMOVERS", "NetFault", "NsTable", "controller_path", "dropped", "edge_path", "fault_dropped", "isolate", "loss", "partition",
           "rule_count"]
