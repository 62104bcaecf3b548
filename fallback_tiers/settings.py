"""Settings of the ladder and its circuit breakers; each default carries its reason.

The environment is read only through `LadderSettings.from_env(environ)`, called at the edge of a
process with `os.environ`; the variables carry the REGIONCTL_ prefix:

    REGIONCTL_TIER_DEADLINE_MS      default deadline of a request in the cell (ms)
    REGIONCTL_TIER_MIN_FILL         fraction of `count` a non-floor tier must fill (0 < f <= 1)
    REGIONCTL_BREAKER_FAILURES      consecutive failures that open a breaker
    REGIONCTL_BREAKER_OPEN_S        seconds a breaker stays open before a half-open trial
    REGIONCTL_BREAKER_MIN_FAILING_S seconds the consecutive failures must last before it opens (0: no minimum)
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

from contracts.environment import EnvVar, load_settings
from fallback_tiers.tiers import Tier
from regions.errors import InputError

@dataclass(frozen=True)
class BreakerSettings:
    failure_threshold: int = 5
    """Five consecutive failures: one slow request does not open it, a dead dependency does quickly."""
    open_duration_s: float = 5.0
    """Five seconds open: long enough for a restarting Redis, short against an RTO of seconds."""
    min_failing_s: float = 0.5
    """The consecutive failures must have lasted 0.5 s (first to last, no success between) before
    the breaker opens: a stall of the host (a 2-core machine whose CPUs something else took for a
    few hundred ms) times out every Redis read in flight and then passes; opening on it cost every
    user of the region 5 s of segment answers (docs/gamedays.md). A dependency that is really down
    keeps failing and opens it 0.5 s later; meanwhile each request still degrades within its own
    deadline (a refused connection fails at once, a stuck one at the 50 ms read timeout)."""

    def __post_init__(self) -> None:
        if isinstance(self.failure_threshold, bool) or not isinstance(self.failure_threshold, int) \
                or self.failure_threshold < 1:
            raise InputError("failure_threshold", f"{self.failure_threshold!r} is not allowed; use an integer >= 1.")
        _positive("open_duration_s", self.open_duration_s)
        if not (isinstance(self.min_failing_s, (int, float)) and not isinstance(self.min_failing_s, bool)
                and math.isfinite(self.min_failing_s) and self.min_failing_s >= 0):
            raise InputError("min_failing_s", f"{self.min_failing_s!r} is not allowed; use a finite number >= 0.")


def _frozen(values: Mapping[Tier, float]) -> Mapping[Tier, float]:
    return MappingProxyType(dict(values))


@dataclass(frozen=True)
class LadderSettings:
    deadline_s: float = 0.150
    """The cell's share of the 180 ms end-to-end p99: the edge and the network keep 30 ms."""
    stage_budget_s: Mapping[Tier, float] = field(default_factory=lambda: _frozen({
        Tier.FULL: 0.100, Tier.CACHED: 0.020, Tier.SEGMENT: 0.005, Tier.POPULARITY: 0.005,
    }))
    """Most a stage may spend. Full ranking gets 100 ms so that a timeout still leaves 50 ms for a
    Redis read (20 ms) and the in-memory tiers; the in-memory tiers need microseconds."""
    min_budget_s: Mapping[Tier, float] = field(default_factory=lambda: _frozen({
        Tier.FULL: 0.030, Tier.CACHED: 0.003, Tier.SEGMENT: 0.0005, Tier.POPULARITY: 0.0,
    }))
    """Below these a stage cannot finish (FAISS + LightGBM need ~30 ms; a loopback Redis GET ~1 ms):
    starting it anyway would only burn what the cheaper tiers need. The floor needs nothing."""
    floor_reserve_s: float = 0.002
    """Kept back from every stage budget for the rules and the popularity floor (both in memory)."""
    min_fill_fraction: float = 1.0
    """A non-floor tier must fill the whole slate after rules and backfill; a short personal slate
    loses to a full one from a cheaper tier (the floor serves whatever it has)."""
    breaker: BreakerSettings = field(default_factory=BreakerSettings)
    """One setting for every dependency's breaker; see BreakerSettings."""

    def __post_init__(self) -> None:
        _positive("deadline_s", self.deadline_s)
        _positive_or_zero("floor_reserve_s", self.floor_reserve_s)
        for name, table in (("stage_budget_s", self.stage_budget_s), ("min_budget_s", self.min_budget_s)):
            missing = [t.value for t in Tier.ladder() if t not in table]
            if missing:
                raise InputError(name, f"no value for tier(s) {', '.join(missing)}; give one per tier.")
            for tier in Tier.ladder():
                _positive_or_zero(f"{name}[{tier.value}]", table[tier])
        for tier in Tier.ladder():
            if self.min_budget_s[tier] > self.stage_budget_s[tier]:
                raise InputError(
                    f"min_budget_s[{tier.value}]",
                    f"{self.min_budget_s[tier]} s is above the stage budget {self.stage_budget_s[tier]} s; "
                    "the tier could never run. Lower it or raise the stage budget.",
                )
        if not (isinstance(self.min_fill_fraction, (int, float)) and 0 < self.min_fill_fraction <= 1):
            raise InputError("min_fill_fraction", f"{self.min_fill_fraction!r} is not allowed; use 0 < f <= 1.")

    @classmethod
    def from_env(cls, environ: Mapping[str, str], *, base: "LadderSettings | None" = None) -> "LadderSettings":
        """`base` (defaults) overridden by the REGIONCTL_ variables present in `environ`."""
        return load_settings(base or cls(), environ, prefix="REGIONCTL_", variables=ENV_VARIABLES,
                             what="ladder setting", refuse_unknown=False)


ENV_VARIABLES: Mapping[str, EnvVar] = {
    "REGIONCTL_TIER_DEADLINE_MS": EnvVar("deadline_s", scale=0.001),
    "REGIONCTL_TIER_MIN_FILL": EnvVar("min_fill_fraction"),
    "REGIONCTL_BREAKER_FAILURES": EnvVar("breaker.failure_threshold"),
    "REGIONCTL_BREAKER_OPEN_S": EnvVar("breaker.open_duration_s"),
    "REGIONCTL_BREAKER_MIN_FAILING_S": EnvVar("breaker.min_failing_s"),
}
"""The variables of the module docstring and the (nested) setting each one sets."""


def _positive(name: str, value: float) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise InputError(name, f"{value!r} is not allowed; use a finite number > 0.")


def _positive_or_zero(name: str, value: float) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
        raise InputError(name, f"{value!r} is not allowed; use a finite number >= 0.")
