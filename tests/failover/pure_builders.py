"""Builders shared by the tests of the controller's pure logic (health, steering, safety, drill plan)."""
from __future__ import annotations

from dataclasses import replace
from typing import Mapping, Sequence

from hypothesis import strategies as st

from failover.health import HealthState, Probe, RegionHealth, initial_health
from failover.settings import ControllerSettings
from regions.topology import Topology, parse_topology

SETTINGS = ControllerSettings()
NOW = 10_000.0


def topology(layout: Mapping[str, Sequence[tuple[str, float]]]) -> Topology:
    """A topology from {geo: [(region, capacity_qps), ...]}, ports assigned in order."""
    share = 1.0 / len(layout)
    regions, port = {}, 20000
    for geo, members in layout.items():
        for name, cap in members:
            regions[name] = {"geography": geo, "capacity_qps": cap, "http_port": port,
                             "grpc_port": port + 1, "redis_port": port + 2}
            port += 3
    geos = {g: {"peak_share": share} for g in layout}
    # shares must sum to 1 exactly enough: fix the last one
    last = list(geos)[-1]
    geos[last]["peak_share"] = 1.0 - share * (len(layout) - 1)
    return parse_topology({"geographies": geos, "regions": regions})


DEFAULT = topology({"us": [("us-east", 400.0), ("us-west", 400.0)], "eu": [("eu-west", 400.0)]})


def good_probe(at: float = NOW, *, version: str = "v1", p99_ms: float = 40.0, error_rate: float = 0.0) -> Probe:
    return Probe(ok=True, at=at, bundle_version=version, p99_ms=p99_ms, error_rate=error_rate, latency_ms=12.0)


def degraded_probe(at: float = NOW) -> Probe:
    return Probe(ok=True, at=at, bundle_version="v1", p99_ms=40.0, redis_ok=False, tier_served="segment")


def failed_probe(at: float = NOW) -> Probe:
    return Probe.failed(at=at, error="connection refused")


def health(region: str, state: HealthState, *, probe: Probe | None = None, failures: int | None = None) -> RegionHealth:
    """A RegionHealth in `state`, with counters consistent with it and a latest probe."""
    base = initial_health(region, now=NOW - 100, state=state)
    if state is HealthState.UNHEALTHY:
        probe = probe or failed_probe()
        fails = SETTINGS.failures_down if failures is None else failures
        return replace(base, failures=fails, bad=fails, last_probe=probe)
    probe = probe or (degraded_probe() if state is HealthState.DEGRADED else good_probe())
    fails = failures or 0
    return replace(base, failures=fails, bad=fails, successes=0 if fails else 5, answered=0 if fails else 5,
                   last_probe=probe)


def healthy_all(topo: Topology = DEFAULT) -> dict[str, RegionHealth]:
    return {r: health(r, HealthState.HEALTHY) for r in topo.regions}


@st.composite
def topologies(draw: st.DrawFn) -> Topology:
    n_geo = draw(st.integers(min_value=1, max_value=3))
    layout = {}
    for g in range(n_geo):
        n_reg = draw(st.integers(min_value=1, max_value=3))
        layout[f"g{g}"] = [(f"g{g}-r{i}", draw(st.sampled_from([50.0, 100.0, 250.0, 400.0, 1000.0])))
                           for i in range(n_reg)]
    return topology(layout)
