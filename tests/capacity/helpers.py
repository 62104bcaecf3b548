"""Builders shared by the capacity tests: topologies and calibrations, plus Hypothesis strategies."""
from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from capacity.model import Calibration, TierCost, TierMix
from contracts.tiers import TIER_NAMES
from capacity.settings import CapacitySettings, FailoverPolicy
from regions.topology import Topology, parse_topology


def topology_of(regions_per_geo: dict[str, int], shares: dict[str, float] | None = None) -> Topology:
    """A valid topology: geography name -> number of regions, named <geo>-0, <geo>-1, ..."""
    shares = shares or {g: 1.0 / len(regions_per_geo) for g in regions_per_geo}
    regions: dict[str, Any] = {}
    port = 20000
    for geo, count in regions_per_geo.items():
        for i in range(count):
            regions[f"{geo}-{i}"] = {"geography": geo, "capacity_qps": 400, "http_port": port,
                                     "grpc_port": port + 1, "redis_port": port + 2}
            port += 3
    return parse_topology({"geographies": {g: {"peak_share": s} for g, s in shares.items()}, "regions": regions})


def calibration_of(full: float = 40.0, cached: float = 1.5, segment: float = 1.0, popularity: float = 0.5,
                   p99: float = 50.0) -> Calibration:
    costs = dict(zip(TIER_NAMES, (full, cached, segment, popularity)))
    return Calibration(machine="test", measured_at=0.0, saturation_qps=1.0,
                       tiers={t: TierCost(cpu_ms=c, p99_ms=p99) for t, c in costs.items()})


@st.composite
def topologies(draw: st.DrawFn, *, min_regions_per_geo: int = 1) -> Topology:
    n_geo = draw(st.integers(1, 3))
    counts = {f"g{i}": draw(st.integers(min_regions_per_geo, 3)) for i in range(n_geo)}
    weights = [draw(st.integers(1, 20)) for _ in range(n_geo)]
    shares = {g: w / sum(weights) for g, w in zip(counts, weights)}
    return topology_of(counts, shares)


cpu_costs = st.floats(0.05, 200.0, allow_nan=False)


@st.composite
def calibrations(draw: st.DrawFn) -> Calibration:
    return calibration_of(*(draw(cpu_costs) for _ in TIER_NAMES))


@st.composite
def tier_mixes(draw: st.DrawFn) -> TierMix:
    weights = [draw(st.integers(0, 10)) for _ in TIER_NAMES]
    if sum(weights) == 0:
        weights[0] = 1
    return TierMix({t: w / sum(weights) for t, w in zip(TIER_NAMES, weights)})


@st.composite
def capacity_settings(draw: st.DrawFn, *, peak_qps: float | None = None) -> CapacitySettings:
    target = draw(st.floats(0.05, 1.0))
    cap = draw(st.floats(target, 1.0))
    policy = FailoverPolicy(
        degraded_share=draw(st.floats(0.0, 1.0)),
        degraded_tier=draw(st.sampled_from(TIER_NAMES)),
        cross_geo_tier=draw(st.sampled_from(TIER_NAMES)),
        max_utilisation=cap,
    )
    return CapacitySettings(
        peak_qps=peak_qps if peak_qps is not None else draw(st.floats(1.0, 1e6)),
        target_utilisation=target,
        steady_mix=draw(tier_mixes()),
        failover=policy,
    )
