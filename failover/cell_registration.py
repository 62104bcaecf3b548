"""Cells register in the control store's service catalog, with their health checks, when the store
has one (Consul): `regionctl cell` runs inside `registered_cell`.

    service  cell-<region>, id cell-<region>-<http port>, address 127.0.0.1, port = the HTTP port
    checks   HTTP GET /readyz on the HTTP port and the gRPC health service on the gRPC port, every 2 s

Stores without a catalog (SQLite, etcd) are not even opened: the controller's own probes are then
the only health source. A catalog that cannot be reached is logged and the cell serves anyway
(registration is a convenience for service discovery, never a reason not to serve).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, Iterator

from failover.control_stores import store_from_url
from regions.errors import ShopNowError
from regions.topology import Topology

CHECK_INTERVAL_S = 2.0
"""As often as the controller probes (1 s) would double the load on a cell for no new information."""


@dataclass(frozen=True)
class CellService:
    name: str
    service_id: str
    port: int
    http_check_url: str
    grpc_check: str


def cell_service(topology: Topology, region: str) -> CellService:
    reg = topology.region(region)
    host = topology.region_host(region)
    return CellService(name=f"cell-{region}", service_id=f"cell-{region}-{reg.http_port}", port=reg.http_port,
                       http_check_url=f"http://{host}:{reg.http_port}/readyz", grpc_check=f"{host}:{reg.grpc_port}")


def has_catalog(store_url: str | None) -> bool:
    return bool(store_url) and str(store_url).startswith("consul://")


@contextlib.contextmanager
def registered_cell(store_url: str | None, topology: Topology, region: str, *,
                    log: Callable[[str], None] = print) -> Iterator[bool]:
    """Register the cell for the duration of the block; yields whether it is registered."""
    if not has_catalog(store_url):
        yield False
        return
    service = cell_service(topology, region)
    try:
        store = store_from_url(str(store_url))
        registered = store.register_service(service.name, port=service.port, http_check_url=service.http_check_url,
                                            grpc_check=service.grpc_check, interval_s=CHECK_INTERVAL_S,
                                            service_id=service.service_id)
    except ShopNowError as exc:
        log(f"REGISTER-FAILED service={service.service_id} error={exc}; serving without catalog registration")
        yield False
        return
    log(f"REGISTERED service={service.service_id} checks={service.http_check_url},{service.grpc_check}")
    try:
        yield registered
    finally:
        try:
            store.deregister_service(service.service_id)
        except ShopNowError as exc:
            log(f"DEREGISTER-FAILED service={service.service_id} error={exc}")
        store.close()
