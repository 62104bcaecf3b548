"""Settings of the global controller: probing, hysteresis, failback, overrides, fail-static.

Each default carries its reason in the attribute docstring. The environment is never read here:
`settings_from_env(environ)` takes the mapping the entry point hands in and reads only
`REGIONCTL_CONTROLLER_<FIELD>` keys (contracts.environment.load_settings).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from contracts.environment import load_settings
from contracts.tiers import TIER_NAMES
from regions.errors import InputError

ENV_PREFIX = "REGIONCTL_CONTROLLER_"


@dataclass(frozen=True, kw_only=True)
class ControllerSettings:
    """What the controller's pure decisions depend on; each default carries its reason."""

    interval_s: float = 1.0
    """One probe round per second: N=3 failed rounds detect an outage in ~3 s, far inside the 10 min RTO."""
    probe_timeout_s: float = 0.5
    """Half the interval, so a slow region is counted as failed before the next round starts."""
    failures_down: int = 3
    """N: three consecutive failed probes make a region unhealthy; one lost packet moves no traffic."""
    successes_up: int = 3
    """M: three consecutive good probes bring a region back; a flapping region does not get traffic."""
    slo_error_rate: float = 0.01
    """A cell failing more than 1 % of requests is degraded and holds failback gates."""
    slo_p99_ms: float = 150.0
    """The cell's share of the 180 ms end-to-end p99 (the edge and network keep 30 ms)."""
    degraded_weight_factor: float = 0.5
    """A degraded region keeps half of its fair share: warm and serving, but healthier peers take more."""
    max_utilization: float = 0.9
    """Plan regions to 90 % of their full-ranking capacity: the last 10 % is where p99 breaks."""
    tier_costs: tuple[tuple[str, float], ...] = tuple(zip(TIER_NAMES, (1.0, 0.2, 0.05, 0.02)))
    """CPU cost of a request per tier relative to full ranking; the capacity calibration refines these."""
    failback_stages: tuple[int, ...] = (10, 50, 100)
    """A returning region gets 10 %, then 50 %, then all of its fair share: cold caches warm up gradually."""
    failback_hold_s: tuple[float, ...] = (60.0, 120.0)
    """Time each stage below 100 % is held with SLO gates green before the next; a minute sees a p99 window."""
    override_ttl_s: float = 86400.0
    """Operator overrides expire after 24 h unless renewed: a forgotten drain must not cost N-1 capacity forever."""
    max_override_ttl_s: float = 7 * 86400.0
    """No override lives longer than a week; longer changes belong in topology.toml."""
    fail_static_threshold: float = 1.0
    """Share of regions whose latest probe failed at which the controller suspects itself (Envoy's panic)."""
    drill_shift_stages: tuple[int, ...] = (50, 0)
    """A drill halves the region's share first, then evacuates it: the survivors warm up in between."""
    drill_hold_s: float = 60.0
    """Each drill stage is held a minute with SLO gates green before the next."""
    outlier_enabled: bool = True
    """Demote a region on latency as well as on errors (failover.outlier): a slow region is a failure."""
    outlier_p99_ms: float = 180.0
    """A probe window whose p99 round trip exceeds the 180 ms end-to-end SLO is bad."""
    outlier_window_probes: int = 5
    """Five probe rounds (5 s) per window: the p99 of a window is its slowest probe."""
    outlier_bad_windows: int = 2
    """N: two bad windows in a row (about 10 s) eject a region; one slow probe or one slow window does not."""
    outlier_good_windows: int = 3
    """M: three good windows in a row (about 15 s) bring it back, more than it took to eject: no flapping."""

    def __post_init__(self) -> None:
        for name in ("interval_s", "probe_timeout_s", "slo_p99_ms", "override_ttl_s", "max_override_ttl_s"):
            if getattr(self, name) <= 0:
                raise InputError(name, f"must be greater than 0, got {getattr(self, name)!r}")
        if self.outlier_p99_ms <= 0:
            raise InputError("outlier_p99_ms", f"must be greater than 0, got {self.outlier_p99_ms!r}")
        for name in ("failures_down", "successes_up", "outlier_window_probes", "outlier_bad_windows",
                     "outlier_good_windows"):
            if isinstance(getattr(self, name), bool) or not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise InputError(name, f"must be an integer of at least 1, got {getattr(self, name)!r}")
        for name in ("slo_error_rate", "degraded_weight_factor"):
            if not 0 <= getattr(self, name) <= 1:
                raise InputError(name, f"must be between 0 and 1, got {getattr(self, name)!r}")
        if not 0 < self.fail_static_threshold <= 1:
            raise InputError("fail_static_threshold", f"must be in (0, 1], got {self.fail_static_threshold!r}")
        if not 0 < self.max_utilization <= 1:
            raise InputError("max_utilization", f"must be in (0, 1], got {self.max_utilization!r}")
        if self.override_ttl_s > self.max_override_ttl_s:
            raise InputError("override_ttl_s", f"must not exceed max_override_ttl_s ({self.max_override_ttl_s:g} s)")
        stages = self.failback_stages
        if not stages or stages[-1] != 100 or any(not 0 < a < b for a, b in zip(stages, stages[1:])) or stages[0] <= 0:
            raise InputError("failback_stages", f"must be increasing percentages in (0, 100] ending with 100, got {stages!r}")
        if len(self.failback_hold_s) != len(stages) - 1 or any(h < 0 for h in self.failback_hold_s):
            raise InputError("failback_hold_s", f"needs {len(stages) - 1} non-negative hold times (one per stage below 100), got {self.failback_hold_s!r}")
        drill = self.drill_shift_stages
        if not drill or drill[-1] != 0 or any(not a > b for a, b in zip(drill, drill[1:])) or drill[0] >= 100:
            raise InputError("drill_shift_stages", f"must be decreasing percentages below 100 ending with 0, got {drill!r}")
        if self.drill_hold_s < 0:
            raise InputError("drill_hold_s", f"must be 0 or more, got {self.drill_hold_s!r}")
        names = tuple(name for name, _ in self.tier_costs)
        if names != TIER_NAMES or any(not 0 < cost <= 1 for _, cost in self.tier_costs):
            raise InputError("tier_costs", f"must list tiers {', '.join(TIER_NAMES)} in that order with costs in (0, 1]")

    def tier_cost(self, tier: str) -> float:
        return dict(self.tier_costs)[tier]

    def hold_for_stage(self, stage: int) -> float:
        """Hold time of failback stage `stage` (index into failback_stages); 0 for the last."""
        return self.failback_hold_s[stage] if stage < len(self.failback_hold_s) else 0.0


def settings_from_env(environ: Mapping[str, str], base: ControllerSettings | None = None) -> ControllerSettings:
    """Settings with `REGIONCTL_CONTROLLER_<FIELD>` values of `environ` applied over `base`.

    Pure: the caller passes `os.environ` (or any mapping). Unknown keys with the prefix are refused;
    lists are comma-separated; tier_costs cannot be set from the environment.
    """
    return load_settings(base or ControllerSettings(), environ, prefix=ENV_PREFIX, what="controller setting")
