"""Settings of the capacity planner: instance shape and price, utilisation targets, failover policy.

Each default carries its reason. Prices are assumptions, not quotes: change them here or through
REGIONCTL_CAPACITY_* variables (read only by `settings_from_env`, called at the CLI edge).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Mapping

from capacity.model import TierMix, require_fraction, require_number, require_tier
from contracts.environment import EnvVar, load_settings
from regions.errors import InputError


@dataclass(frozen=True)
class InstanceShape:
    """One serving instance: how many vCPUs it has and what an hour of it costs."""

    name: str = "c7g.4xlarge-like"
    """A compute-optimised 16 vCPU / 32 GiB box: FAISS and LightGBM are CPU-bound, not memory-bound."""
    vcpus: int = 16
    """Big enough to hold the FAISS index once per instance, small enough to scale in steps of ~1/100 of a region."""
    hourly_usd: float = 0.58
    """ASSUMPTION: roughly the public on-demand list price of a c7g.4xlarge in a US region (2024); no discounts."""

    def __post_init__(self) -> None:
        if isinstance(self.vcpus, bool) or not isinstance(self.vcpus, int) or self.vcpus < 1:
            raise InputError("vcpus", f"must be a whole number of vCPUs >= 1, got {self.vcpus!r}")
        require_number("hourly_usd", self.hourly_usd, inclusive=False)


@dataclass(frozen=True)
class FailoverPolicy:
    """How traffic moved off a lost region may be served, and for how long."""

    degraded_share: float = 0.5
    """Half the moved users get a cheaper tier: the survivor keeps full ranking for its own users and half the guests."""
    degraded_tier: str = "segment"
    """Moved users' cached slates stay in the lost region's Redis (not replicated); segment lists need only the segment."""
    degraded_window_s: float = 900.0
    """15 min to launch and warm replacement instances (boot, bundle download, FAISS load); then all moved traffic is full."""
    cross_geo_tier: str = "popularity"
    """Traffic that leaves its geography is anonymous (no user id crosses), so only popularity lists apply."""
    max_utilisation: float = 0.85
    """Highest CPU utilisation at which a cell still met its p99 in the benchmark's latency curve (assumed until measured)."""

    def __post_init__(self) -> None:
        require_fraction("degraded_share", self.degraded_share, allow_zero=True)
        require_tier("degraded_tier", self.degraded_tier)
        require_tier("cross_geo_tier", self.cross_geo_tier)
        require_number("degraded_window_s", self.degraded_window_s)
        require_fraction("max_utilisation", self.max_utilisation)


@dataclass(frozen=True)
class CapacitySettings:
    """Everything the planner needs besides the topology and the calibration."""

    peak_qps: float = 220_000.0
    """Requirement: 220 K peak QPS across all geographies."""
    target_utilisation: float = 0.6
    """Steady-state CPU target: 40 % headroom keeps queueing, and so p99, low at peak."""
    budget_usd_per_request: float = 0.0012
    """Requirement: serving cost under $0.0012 per request at peak."""
    steady_mix: TierMix = field(default_factory=TierMix)
    """Plan steady state as if every request gets full ranking: cheaper tiers are the failure path, not the plan."""
    instance: InstanceShape = field(default_factory=InstanceShape)
    """See InstanceShape."""
    failover: FailoverPolicy = field(default_factory=FailoverPolicy)
    """See FailoverPolicy."""

    def __post_init__(self) -> None:
        require_number("peak_qps", self.peak_qps, inclusive=False)
        require_fraction("target_utilisation", self.target_utilisation)
        require_number("budget_usd_per_request", self.budget_usd_per_request, inclusive=False)
        if self.failover.max_utilisation < self.target_utilisation:
            raise InputError(
                "max_utilisation",
                f"must be >= target_utilisation ({self.target_utilisation:g}), got {self.failover.max_utilisation:g}: "
                "failover may run hotter than steady state, never cooler",
            )


_ENV_PREFIX = "REGIONCTL_CAPACITY_"
ENV_VARIABLES: Mapping[str, EnvVar] = {_ENV_PREFIX + name: EnvVar(path) for name, path in {
    "PEAK_QPS": "peak_qps", "TARGET_UTILISATION": "target_utilisation",
    "BUDGET_USD_PER_REQUEST": "budget_usd_per_request", "HOURLY_USD": "instance.hourly_usd",
    "VCPUS": "instance.vcpus", "INSTANCE_NAME": "instance.name", "DEGRADED_SHARE": "failover.degraded_share",
    "DEGRADED_WINDOW_S": "failover.degraded_window_s", "MAX_UTILISATION": "failover.max_utilisation",
    "DEGRADED_TIER": "failover.degraded_tier", "CROSS_GEO_TIER": "failover.cross_geo_tier",
}.items()}
"""The REGIONCTL_CAPACITY_* variables and the (nested) setting each one sets."""


def settings_from_env(env: Mapping[str, str], base: CapacitySettings | None = None) -> CapacitySettings:
    """Override `base` with REGIONCTL_CAPACITY_* variables (e.g. REGIONCTL_CAPACITY_HOURLY_USD=0.45).

    The caller passes the environment (`os.environ` at the CLI edge); nothing here reads it.
    """
    return load_settings(base or CapacitySettings(), env, prefix=_ENV_PREFIX, what="capacity setting",
                         variables=ENV_VARIABLES)
