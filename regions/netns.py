"""The networked stack's plan: namespaces, links, addresses and the `ip` commands that make them. Pure.

`regionctl up --netns` (or topology.toml `[network] mode = "netns"`) gives each region its own Linux
network namespace; the namespaces meet in a hub namespace holding one bridge, the hub switch:

    host namespace (controllers, edge, load, CLI)      10.213.7.1  link shn7-host <-> hub:host
    shopnow7-hub    bridge br0; ports host, r0, r1, ...
    shopnow7-us-east  eth0 10.213.7.11  <-> hub:r0      (its redis, cell, replicator, feature updater)
    shopnow7-us-west  eth0 10.213.7.12  <-> hub:r1
    ...

Everything is on one private /24 (topology `[network] subnet`, default 10.213.7.0/24; the "7" in the
names is its third octet, so that two stacks on two subnets never share a name). No namespace has a
default route and nothing forwards to another interface: no packet leaves the machine. Traffic
between two regions (replication) crosses the hub's bridge, so rules in a region's namespace cut it
(chaos.net_faults). The controllers and the edge stay in the host namespace on 127.0.0.1 (the
control API, the dashboard, the load and the CLI are reached there as in loopback mode) and reach
the regions over the host link.

`routed_conflicts(subnet, routes, addresses)` says why a subnet may not be used (something on the
host already routes or holds an address in it). The commands are run by regions.netns_apply.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

from regions.topology import Topology

BRIDGE = "br0"
HOST_PORT = "host"
"""The hub's end of the host link."""
REGION_IF = "eth0"
"""A region namespace's only interface besides lo."""


@dataclass(frozen=True)
class RegionLink:
    region: str
    namespace: str
    address: str
    hub_port: str
    """The hub's end of the region's veth pair (inside the hub namespace)."""


@dataclass(frozen=True)
class NetnsPlan:
    subnet: str
    hub_namespace: str
    host_link: str
    """The host's end of the host <-> hub veth pair (in the host namespace)."""
    host_address: str
    regions: tuple[RegionLink, ...]

    @property
    def prefixlen(self) -> int:
        return ipaddress.IPv4Network(self.subnet).prefixlen

    def namespaces(self) -> list[str]:
        """Every namespace `up` creates, hub last (down removes the regions first)."""
        return [r.namespace for r in self.regions] + [self.hub_namespace]

    def namespace_of(self, region: str) -> str:
        return self.link_of(region).namespace

    def link_of(self, region: str) -> RegionLink:
        for link in self.regions:
            if link.region == region:
                return link
        raise KeyError(region)

    def setup_commands(self) -> list[list[str]]:
        hub, n = self.hub_namespace, str(self.prefixlen)
        cmds = [["ip", "netns", "add", hub], ["ip", "-n", hub, "link", "set", "lo", "up"],
                ["ip", "-n", hub, "link", "add", BRIDGE, "type", "bridge"], ["ip", "-n", hub, "link", "set", BRIDGE, "up"],
                ["ip", "link", "add", self.host_link, "type", "veth", "peer", "name", HOST_PORT, "netns", hub],
                ["ip", "-n", hub, "link", "set", HOST_PORT, "master", BRIDGE], ["ip", "-n", hub, "link", "set", HOST_PORT, "up"],
                ["ip", "addr", "add", f"{self.host_address}/{n}", "dev", self.host_link],
                ["ip", "link", "set", self.host_link, "up"]]
        for link in self.regions:
            ns = link.namespace
            cmds += [["ip", "netns", "add", ns], ["ip", "-n", ns, "link", "set", "lo", "up"],
                     ["ip", "-n", hub, "link", "add", link.hub_port, "type", "veth", "peer", "name", REGION_IF, "netns", ns],
                     ["ip", "-n", hub, "link", "set", link.hub_port, "master", BRIDGE],
                     ["ip", "-n", hub, "link", "set", link.hub_port, "up"],
                     ["ip", "-n", ns, "addr", "add", f"{link.address}/{n}", "dev", REGION_IF],
                     ["ip", "-n", ns, "link", "set", REGION_IF, "up"]]
        return cmds

    def teardown_commands(self) -> list[list[str]]:
        """Removing a namespace removes the veth ends in it and their peers; the host link goes first."""
        return [["ip", "link", "del", self.host_link]] + [["ip", "netns", "del", ns] for ns in self.namespaces()]

    def to_json(self) -> dict[str, Any]:
        return {"subnet": self.subnet, "hub_namespace": self.hub_namespace, "host_link": self.host_link,
                "host_address": self.host_address,
                "regions": [{"region": r.region, "namespace": r.namespace, "address": r.address, "hub_port": r.hub_port}
                            for r in self.regions]}

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> "NetnsPlan":
        return cls(subnet=str(raw["subnet"]), hub_namespace=str(raw["hub_namespace"]), host_link=str(raw["host_link"]),
                   host_address=str(raw["host_address"]),
                   regions=tuple(RegionLink(**{k: str(v) for k, v in r.items()}) for r in raw["regions"]))


def tag(subnet: str) -> str:
    """The third octet of the /24: what tells two stacks' names apart."""
    return str(ipaddress.IPv4Network(subnet).network_address).split(".")[2]


def plan_for(topology: Topology) -> NetnsPlan:
    """The namespaces, links and addresses of `topology` in netns mode (whatever its mode says)."""
    net = topology.network
    t = tag(net.subnet)
    regions = tuple(RegionLink(region=name, namespace=f"shopnow{t}-{name}", address=net.region_address(i), hub_port=f"r{i}")
                    for i, name in enumerate(topology.regions))
    return NetnsPlan(subnet=net.subnet, hub_namespace=f"shopnow{t}-hub", host_link=f"shn{t}-host",
                     host_address=net.host_address, regions=regions)


def exec_prefix(namespace: str) -> tuple[str, ...]:
    """Run a command inside `namespace` (`ip netns exec` execs it: the PID is the program's)."""
    return ("ip", "netns", "exec", namespace)


def routed_conflicts(subnet: str, routes: Iterable[Mapping[str, Any]], addresses: Iterable[Mapping[str, Any]]) -> list[str]:
    """Why `subnet` may not be used: each route (`ip -j -4 route show table all`, the default route
    aside) or address (`ip -j -4 addr`) of the host that overlaps it. [] when it is free."""
    net = ipaddress.IPv4Network(subnet)
    found = []
    for route in routes:
        dst = str(route.get("dst", ""))
        if not dst or dst == "default":
            continue
        try:
            other = ipaddress.IPv4Network(dst, strict=False)
        except ValueError:
            continue
        if other.prefixlen > 0 and other.overlaps(net):
            found.append(f"route {dst} dev {route.get('dev', '?')} (table {route.get('table', 'main')})")
    for link in addresses:
        for info in link.get("addr_info", ()):
            local = info.get("local")
            if info.get("family", "inet") == "inet" and local and ipaddress.IPv4Address(local) in net:
                found.append(f"address {local} on {link.get('ifname', '?')}")
    return found


def missing_namespaces(plan: NetnsPlan, listed: Sequence[str]) -> list[str]:
    """The plan's namespaces that `ip netns list` (names) does not show."""
    return [ns for ns in plan.namespaces() if ns not in set(listed)]


def parse_netns_list(text: str) -> list[str]:
    """`ip netns list` output -> names (each line is `NAME` or `NAME (id: N)`)."""
    return [line.split()[0] for line in text.splitlines() if line.strip()]


__all__ = ["NetnsPlan", "RegionLink", "exec_prefix", "missing_namespaces", "parse_netns_list", "plan_for",
           "routed_conflicts", "tag"]
