"""Topology: geographies, regions, ports and capacities, loaded from topology.toml.

Frozen dataclasses; `load_topology(path)` validates and names the key and bad value on error.
The environment is not read here: entry points resolve --topology / REGIONCTL_TOPOLOGY with
contracts.environment.topology_path and pass the path.
"""
from __future__ import annotations

import ipaddress
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from regions.errors import TopologyError

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Settings:
    """Global settings; each default carries its reason."""

    host: str = "127.0.0.1"
    """Loopback only: the local stack never listens on or sends to another address."""
    controller_port: int = 8100
    """Control API of the global controller."""
    edge_port: int = 8080
    """The front door of the local stack."""
    user_freshness_s: float = 300.0
    """Requirement: user features fresher than 5 minutes."""
    item_freshness_s: float = 900.0
    """Requirement: item features fresher than 15 minutes."""
    request_deadline_ms: float = 150.0
    """Leaves 30 ms of the 180 ms end-to-end p99 to the edge and the network."""
    rpo_budget_s: float = 300.0
    """Requirement: RPO < 5 minutes for interaction logs."""
    rto_budget_s: float = 600.0
    """Requirement: RTO < 10 minutes for a regional outage."""
    quality_rto_budget_s: float = 120.0
    """Our budget for the quality RTO (personalisation back within 5 points of its share before the
    fault): 2 minutes. No product requirement bounds it; game days judge it against this."""


@dataclass(frozen=True)
class Geography:
    name: str
    peak_share: float
    """Share of the global peak whose users live here (all geographies sum to 1)."""


@dataclass(frozen=True)
class Region:
    name: str
    geography: str
    capacity_qps: float
    http_port: int
    grpc_port: int
    redis_port: int

    def redis_url(self, host: str = "127.0.0.1") -> str:
        return f"redis://{host}:{self.redis_port}/0"


NETWORK_MODES = ("loopback", "netns")
DEFAULT_NETNS_SUBNET = "10.213.7.0/24"


@dataclass(frozen=True)
class Network:
    """How the stack's processes reach each other ([network] in topology.toml).

    loopback  every process on settings.host (the default: fast tests, no root needed)
    netns     each region in its own network namespace, addresses from `subnet` (regions/netns.py
              plans and applies it; `regionctl up --netns` selects this mode too)
    """

    mode: str = "loopback"
    subnet: str = DEFAULT_NETNS_SUBNET
    """A private /24 the stack creates and removes itself: .1 is the host's end, regions from .11."""

    @property
    def network(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(self.subnet)

    @property
    def host_address(self) -> str:
        """The host's (controllers', edge's, load's) address on the stack's subnet."""
        return str(self.network.network_address + 1)

    def region_address(self, index: int) -> str:
        """The address of the region at `index` (topology order) in netns mode."""
        return str(self.network.network_address + 11 + index)


@dataclass(frozen=True)
class Topology:
    geographies: Mapping[str, Geography]
    regions: Mapping[str, Region]
    settings: Settings = field(default_factory=Settings)
    network: Network = field(default_factory=Network)

    @property
    def netns(self) -> bool:
        return self.network.mode == "netns"

    def region_host(self, name: str) -> str:
        """Where region `name`'s processes listen: settings.host on loopback, its namespace's
        address in netns mode."""
        self.region(name)
        if not self.netns:
            return self.settings.host
        return self.network.region_address(list(self.regions).index(name))

    def with_network(self, mode: str) -> "Topology":
        from dataclasses import replace

        return replace(self, network=_network({"mode": mode, "subnet": self.network.subnet}))

    def region(self, name: str) -> Region:
        try:
            return self.regions[name]
        except KeyError:
            allowed = ", ".join(sorted(self.regions))
            raise TopologyError("region", f"unknown region {name!r}; known regions: {allowed}") from None

    def geography(self, name: str) -> Geography:
        try:
            return self.geographies[name]
        except KeyError:
            allowed = ", ".join(sorted(self.geographies))
            raise TopologyError("geography", f"unknown geography {name!r}; known geographies: {allowed}") from None

    def regions_in(self, geography: str) -> tuple[Region, ...]:
        self.geography(geography)
        return tuple(r for r in self.regions.values() if r.geography == geography)

    def single_region_geographies(self) -> tuple[str, ...]:
        """Geographies whose interaction logs have no copy in another region."""
        return tuple(g for g in sorted(self.geographies) if len(self.regions_in(g)) < 2)


_SETTINGS_TYPES: dict[str, type] = {
    "host": str,
    "controller_port": int,
    "edge_port": int,
    "user_freshness_s": float,
    "item_freshness_s": float,
    "request_deadline_ms": float,
    "rpo_budget_s": float,
    "rto_budget_s": float,
    "quality_rto_budget_s": float,
}
_REGION_KEYS = {"geography", "capacity_qps", "http_port", "grpc_port", "redis_port"}


def _number(key: str, value: Any, kind: type, *, positive: bool = True) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and not isinstance(value, int)):
        raise TopologyError(key, f"must be {'an integer' if kind is int else 'a number'}, got {value!r}")
    if positive and value <= 0:
        raise TopologyError(key, f"must be greater than 0, got {value!r}")
    return kind(value)


def _port(key: str, value: Any) -> int:
    port = _number(key, value, int)
    if not 1 <= port <= 65535:
        raise TopologyError(key, f"must be a TCP port 1..65535, got {port}")
    return port


def _network(raw: Any) -> Network:
    if not isinstance(raw, Mapping):
        raise TopologyError("network", "must be a table: [network] mode = \"loopback\" | \"netns\"")
    unknown = set(raw) - {"mode", "subnet"}
    if unknown:
        raise TopologyError(f"network.{sorted(unknown)[0]}", "unknown key; allowed: mode, subnet")
    mode = raw.get("mode", "loopback")
    if mode not in NETWORK_MODES:
        raise TopologyError("network.mode", f"must be one of {', '.join(NETWORK_MODES)}, got {mode!r}")
    subnet = raw.get("subnet", DEFAULT_NETNS_SUBNET)
    try:
        net = ipaddress.IPv4Network(subnet) if isinstance(subnet, str) else None
    except ValueError:
        net = None
    if net is None or net.prefixlen != 24 or not net.is_private or net.is_loopback:
        raise TopologyError("network.subnet", f"must be a private IPv4 /24 such as {DEFAULT_NETNS_SUBNET}, got {subnet!r}")
    return Network(mode=str(mode), subnet=str(net))


def parse_topology(raw: Mapping[str, Any]) -> Topology:
    """Build a validated Topology from the parsed TOML document."""
    settings_raw = dict(raw.get("settings", {}))
    unknown = set(settings_raw) - set(_SETTINGS_TYPES)
    if unknown:
        raise TopologyError(f"settings.{sorted(unknown)[0]}", f"unknown setting; allowed: {', '.join(sorted(_SETTINGS_TYPES))}")
    values: dict[str, Any] = {}
    for key, value in settings_raw.items():
        kind = _SETTINGS_TYPES[key]
        if kind is str:
            if not isinstance(value, str):
                raise TopologyError(f"settings.{key}", f"must be a string, got {value!r}")
            values[key] = value
        elif key.endswith("_port"):
            values[key] = _port(f"settings.{key}", value)
        else:
            values[key] = _number(f"settings.{key}", value, kind)
    settings = Settings(**values)
    try:
        if not ipaddress.ip_address(settings.host).is_loopback:
            raise TopologyError("settings.host", f"must be a loopback address such as 127.0.0.1, got {settings.host!r}")
    except ValueError as exc:
        if isinstance(exc, TopologyError):
            raise
        raise TopologyError("settings.host", f"must be a loopback IP address such as 127.0.0.1, got {settings.host!r}") from exc

    geos_raw = raw.get("geographies")
    if not isinstance(geos_raw, Mapping) or not geos_raw:
        raise TopologyError("geographies", "at least one [geographies.NAME] table is required")
    geographies: dict[str, Geography] = {}
    for name, body in geos_raw.items():
        share = _number(f"geographies.{name}.peak_share", (body or {}).get("peak_share", 1.0 / len(geos_raw)), float)
        geographies[name] = Geography(name=name, peak_share=share)
    total_share = sum(g.peak_share for g in geographies.values())
    if abs(total_share - 1.0) > 1e-6:
        raise TopologyError("geographies.*.peak_share", f"shares must sum to 1, they sum to {total_share:g}")

    regions_raw = raw.get("regions")
    if not isinstance(regions_raw, Mapping) or not regions_raw:
        raise TopologyError("regions", "at least one [regions.NAME] table is required")
    regions: dict[str, Region] = {}
    ports: dict[int, str] = {settings.controller_port: "settings.controller_port", settings.edge_port: "settings.edge_port"}
    if settings.controller_port == settings.edge_port:
        raise TopologyError("settings.edge_port", f"duplicate port {settings.edge_port} (also settings.controller_port)")
    for name, body in regions_raw.items():
        if not isinstance(body, Mapping):
            raise TopologyError(f"regions.{name}", "must be a table")
        extra = set(body) - _REGION_KEYS
        if extra:
            raise TopologyError(f"regions.{name}.{sorted(extra)[0]}", f"unknown key; allowed: {', '.join(sorted(_REGION_KEYS))}")
        geo = body.get("geography")
        if geo is None:
            raise TopologyError(f"regions.{name}.geography", "missing: every region belongs to a geography")
        if geo not in geographies:
            raise TopologyError(f"regions.{name}.geography", f"unknown geography {geo!r}; known: {', '.join(sorted(geographies))}")
        for key in ("http_port", "grpc_port", "redis_port", "capacity_qps"):
            if key not in body:
                raise TopologyError(f"regions.{name}.{key}", "missing")
        region_ports = {}
        for key in ("http_port", "grpc_port", "redis_port"):
            port = _port(f"regions.{name}.{key}", body[key])
            if port in ports:
                raise TopologyError(f"regions.{name}.{key}", f"duplicate port {port} (also {ports[port]})")
            ports[port] = f"regions.{name}.{key}"
            region_ports[key] = port
        regions[name] = Region(
            name=name,
            geography=geo,
            capacity_qps=_number(f"regions.{name}.capacity_qps", body["capacity_qps"], float),
            **region_ports,
        )
    for geo in geographies:
        if not any(r.geography == geo for r in regions.values()):
            raise TopologyError(f"geographies.{geo}", "has no region; every geography needs at least one")
    network = _network(raw.get("network", {}))
    if network.mode == "netns" and len(regions) > 200:
        raise TopologyError("regions", f"netns mode gives each region an address of one /24: at most 200 regions, got {len(regions)}")
    return Topology(geographies=geographies, regions=regions, settings=settings, network=network)


def default_topology_path() -> Path:
    """topology.toml at the repository root (the path used when none is given)."""
    return REPO_ROOT / "topology.toml"


def load_topology(path: Path | str | None = None) -> Topology:
    """Read and validate a topology file."""
    path = Path(path) if path is not None else default_topology_path()
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError as exc:
        raise TopologyError("topology", f"file {path} does not exist; pass --topology or set REGIONCTL_TOPOLOGY") from exc
    except OSError as exc:
        raise TopologyError("topology", f"cannot read {path}: {exc.strerror}; pass --topology or set REGIONCTL_TOPOLOGY") from exc
    except tomllib.TOMLDecodeError as exc:
        raise TopologyError("topology", f"{path} is not valid TOML: {exc}") from exc
    return parse_topology(raw)


def render_topology(topology: Topology) -> str:
    """`topology` as topology.toml text (load_topology reads it back to an equal Topology)."""
    s = topology.settings
    lines = ["[settings]"]
    for key in _SETTINGS_TYPES:
        value = getattr(s, key)
        lines.append(f'{key} = "{value}"' if isinstance(value, str) else f"{key} = {value!r}")
    lines += ["", "[network]", f'mode = "{topology.network.mode}"', f'subnet = "{topology.network.subnet}"', ""]
    for g in topology.geographies.values():
        lines += [f"[geographies.{g.name}]", f"peak_share = {g.peak_share!r}", ""]
    for r in topology.regions.values():
        lines += [f"[regions.{r.name}]", f'geography = "{r.geography}"', f"capacity_qps = {r.capacity_qps!r}",
                  f"http_port = {r.http_port}", f"grpc_port = {r.grpc_port}", f"redis_port = {r.redis_port}", ""]
    return "\n".join(lines)
