"""The capacity model: what a request costs in CPU, and how many instances a load needs.

Pure values and arithmetic; no clock, no files, no environment. Units used throughout:

- QPS: requests per second.
- cpu_ms: CPU milliseconds one request of a tier costs on one vCPU (from the calibration).
- cores: vCPUs kept busy by a load, `qps * cpu_ms / 1000`.
- utilisation: busy cores / provisioned vCPUs, in (0, 1].
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

from contracts.tiers import TIER_NAMES
from regions.errors import InputError

def require_tier(field_name: str, tier: str) -> str:
    """Return `tier` when it is a known tier name, else raise InputError naming the field."""
    if tier not in TIER_NAMES:
        raise InputError(field_name, f"unknown tier {tier!r}; allowed: {', '.join(TIER_NAMES)}")
    return tier


def require_number(field_name: str, value: object, *, minimum: float = 0.0, inclusive: bool = True) -> float:
    """A finite real number >= minimum (> minimum when not inclusive); else InputError naming the field."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InputError(field_name, f"must be a finite number, got {value!r}")
    if value < minimum or (not inclusive and value == minimum):
        relation = ">=" if inclusive else ">"
        raise InputError(field_name, f"must be {relation} {minimum:g}, got {value!r}")
    return float(value)


def require_fraction(field_name: str, value: object, *, allow_zero: bool = False) -> float:
    """A number in (0, 1] (or [0, 1] with allow_zero); else InputError naming the field."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InputError(field_name, f"must be a number in {'[0, 1]' if allow_zero else '(0, 1]'}, got {value!r}")
    if value > 1 or value < 0 or (value == 0 and not allow_zero):
        raise InputError(field_name, f"must be in {'[0, 1]' if allow_zero else '(0, 1]'}, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class TierCost:
    """What one request of a tier costs, as measured (or assumed) on the calibration machine."""

    cpu_ms: float
    """CPU milliseconds per request on one vCPU."""
    p99_ms: float
    """p99 latency of the tier inside the cell, at the calibration load."""


@dataclass(frozen=True)
class Calibration:
    """The CPU cost per request of each tier; written by the serving benchmark."""

    machine: str
    measured_at: float
    tiers: Mapping[str, TierCost]
    saturation_qps: float
    """QPS at which the benchmark machine saturated (full ranking)."""
    source: str = "measured"
    """'measured' for a benchmark's file; the shipped default says 'assumed, not measured'."""

    def __post_init__(self) -> None:
        missing = [t for t in TIER_NAMES if t not in self.tiers]
        if missing:
            raise InputError(f"tiers.{missing[0]}", f"missing; the calibration needs every tier: {', '.join(TIER_NAMES)}")
        for name in self.tiers:
            require_tier("tiers", name)
        for name, cost in self.tiers.items():
            require_number(f"tiers.{name}.cpu_ms", cost.cpu_ms, inclusive=False)
            require_number(f"tiers.{name}.p99_ms", cost.p99_ms)
        require_number("saturation_qps", self.saturation_qps)
        object.__setattr__(self, "tiers", MappingProxyType(dict(self.tiers)))

    def cpu_ms(self, tier: str) -> float:
        return self.tiers[require_tier("tier", tier)].cpu_ms

    def p99_ms(self, tier: str) -> float:
        return self.tiers[require_tier("tier", tier)].p99_ms

    @property
    def cheapest_tier(self) -> str:
        return min(TIER_NAMES, key=lambda t: self.tiers[t].cpu_ms)


@dataclass(frozen=True)
class TierMix:
    """Which share of requests each tier serves; shares are in [0, 1] and sum to 1."""

    shares: Mapping[str, float] = field(default_factory=lambda: {"full": 1.0})

    def __post_init__(self) -> None:
        for tier, share in self.shares.items():
            require_tier("tier_mix", tier)
            require_fraction(f"tier_mix.{tier}", share, allow_zero=True)
        total = sum(self.shares.values())
        if abs(total - 1.0) > 1e-9:
            raise InputError("tier_mix", f"shares must sum to 1, they sum to {total:g}")
        object.__setattr__(self, "shares", MappingProxyType({t: float(s) for t, s in self.shares.items() if s > 0}))

    @classmethod
    def only(cls, tier: str) -> TierMix:
        return cls({require_tier("tier", tier): 1.0})

    def tiers_used(self) -> tuple[str, ...]:
        return tuple(t for t in TIER_NAMES if self.shares.get(t, 0.0) > 0)


def blend(base: TierMix, other: TierMix, *, other_share: float) -> TierMix:
    """`other_share` of requests served as `other`, the rest as `base`."""
    w = require_fraction("other_share", other_share, allow_zero=True)
    shares = {t: (1 - w) * base.shares.get(t, 0.0) + w * other.shares.get(t, 0.0) for t in TIER_NAMES}
    total = sum(shares.values())
    return TierMix({t: s / total for t, s in shares.items()})


def mix_cpu_ms(calibration: Calibration, mix: TierMix) -> float:
    """Average CPU milliseconds per request of a tier mix."""
    return sum(share * calibration.cpu_ms(tier) for tier, share in mix.shares.items())


def cores_for(qps: float, cpu_ms: float) -> float:
    """vCPUs kept busy by `qps` requests per second costing `cpu_ms` each."""
    require_number("qps", qps)
    return qps * cpu_ms / 1000.0


def instances_for(*, cores: float, vcpus: int, utilisation: float) -> int:
    """Fewest instances of `vcpus` that carry `cores` of work at no more than `utilisation`."""
    require_number("cores", cores)
    require_fraction("utilisation", utilisation)
    needed = cores / (vcpus * utilisation)
    # Any work at all needs an instance, even when the division underflows to 0.
    return max(math.ceil(needed), 1 if cores > 0 else 0)


UTILISATION_TOLERANCE = 1e-9
"""Relative float noise allowed when a load fills instances exactly to a utilisation cap."""


def within(utilisation: float, cap: float) -> bool:
    """True when `utilisation` does not exceed `cap`, float noise aside."""
    return utilisation <= cap * (1 + UTILISATION_TOLERANCE)


def utilisation_of(*, cores: float, instances: int, vcpus: int) -> float:
    """Busy share of a fleet's vCPUs; infinite when work lands on no instance at all."""
    if instances <= 0:
        return math.inf if cores > 0 else 0.0
    return cores / (instances * vcpus)


def predicted_saturation_qps(calibration: Calibration, cores: float, tier_mix: TierMix) -> float:
    """QPS at which `cores` vCPUs are fully busy serving `tier_mix` (what a saturation benchmark should find)."""
    require_number("cores", cores, inclusive=False)
    return cores * 1000.0 / mix_cpu_ms(calibration, tier_mix)
