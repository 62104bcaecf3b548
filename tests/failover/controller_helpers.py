"""Builders for the controller tests: a topology on free ports with STAND-IN cells behind it."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from failover.controller import Controller
from failover.probing import Prober
from failover.settings import ControllerSettings
from failover.sqlite_store import SqliteStore
from regions.processes import free_port
from regions.topology import Topology, parse_topology
from tests.failover.standin_cell import StandinCell

LAYOUT = {"us": ("us-east", "us-west"), "eu": ("eu-west",)}
FAST = ControllerSettings(interval_s=0.1, probe_timeout_s=0.5, failback_hold_s=(0.2, 0.2), drill_hold_s=0.2)
"""Short intervals and holds for the tests that run the loop in real time (detection uses the defaults)."""


def topology_raw(ports: dict[str, int], *, controller_port: int | None = None, edge_port: int | None = None) -> dict[str, Any]:
    regions = {}
    for geo, names in LAYOUT.items():
        for name in names:
            regions[name] = {"geography": geo, "capacity_qps": 400, "http_port": ports[name],
                             "grpc_port": free_port(), "redis_port": free_port()}
    return {"settings": {"controller_port": controller_port or free_port(), "edge_port": edge_port or free_port()},
            "geographies": {"us": {"peak_share": 0.7}, "eu": {"peak_share": 0.3}}, "regions": regions}


def write_toml(raw: dict[str, Any], path: Path) -> Path:
    lines = ["[settings]"] + [f"{k} = {v}" for k, v in raw["settings"].items()]
    for geo, body in raw["geographies"].items():
        lines += [f"[geographies.{geo}]", f"peak_share = {body['peak_share']}"]
    for name, body in raw["regions"].items():
        lines.append(f"[regions.{name}]")
        lines += [f'{k} = "{v}"' if isinstance(v, str) else f"{k} = {v}" for k, v in body.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


@dataclass
class Rig:
    """Stand-in cells (threads) for every region of LAYOUT, and the topology pointing at them."""

    topology: Topology
    raw: dict[str, Any]
    cells: dict[str, StandinCell]
    probers: list[Prober] = field(default_factory=list)

    def controller(self, store: SqliteStore, *, holder: str = "A", settings: ControllerSettings = FAST,
                   **kwargs: Any) -> Controller:
        prober = Prober(topology=self.topology, timeout_s=settings.probe_timeout_s)
        self.probers.append(prober)
        return Controller(topology=self.topology, store=store, holder=holder, prober=prober.probe_all,
                          settings=settings, log=lambda _line: None, **kwargs)

    def close(self) -> None:
        for prober in self.probers:
            prober.close()
        for cell in self.cells.values():
            try:
                cell.stop()
            except OSError:
                pass


def make_rig() -> Iterator[Rig]:
    ports = {name: free_port() for names in LAYOUT.values() for name in names}
    cells = {}
    for geo, names in LAYOUT.items():
        for name in names:
            peers = tuple(n for n in names if n != name)
            cells[name] = StandinCell(region=name, port=ports[name], peers=peers).start()
    raw = topology_raw(ports)
    rig = Rig(topology=parse_topology(raw), raw=raw, cells=cells)
    try:
        yield rig
    finally:
        rig.close()
