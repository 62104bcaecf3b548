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


@dataclass(frozen=True)
class Topology:
    geographies: Mapping[str, Geography]
    regions: Mapping[str, Region]
    settings: Settings = field(default_factory=Settings)

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
    return Topology(geographies=geographies, regions=regions, settings=settings)


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
