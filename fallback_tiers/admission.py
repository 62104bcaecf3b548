"""Admission control: which tiers a request may use, decided when the cell takes it. Pure.

Cells must degrade before they fail. Past its full-ranking capacity a cell that keeps ranking every
request queues them, and the queue, not the ranking, breaks the 180 ms p99. Two signals move the
excess to the cheaper tiers of the ladder (cached, segment, popularity) instead:

1. Time queued before the handler (`queued_s`: the request's arrival stamp, taken by the server
   before it queues the request for a worker, to the moment the handler starts). A request that
   waited `queue_full_s` or more skips full ranking (it may still be served from the cache);
   one that waited `queue_cached_s` or more gets the in-memory tiers only (segment, popularity),
   which need no Redis round trip. Absolute bounds: they hold whatever the limit below says.
2. An adaptive limit on concurrent full rankings, the gradient of Netflix's concurrency-limits
   (Gradient2) as Envoy's adaptive concurrency filter uses it: every `window` full-ranking answers,
   the window's mean round trip (arrival -> answer, so queueing counts) is compared with a
   long-term average of them:
       gradient = clamp(min(tolerance * long_rtt, rtt_target_s) / short_rtt, 0.5, 1.0)
       new      = limit * gradient + headroom            (headroom = sqrt(limit) while gradient = 1)
       limit    = clamp(limit * (1 - smoothing) + new * smoothing, min_limit, max_limit)
   While the round trip stays within `tolerance` of the long-term one the limit grows by the
   headroom; when it rises the limit shrinks (at most halving per estimate). Unlike Gradient2, no
   headroom is added to a congested estimate: with it the limit cannot fall below 4 (0.5 L + sqrt(L)
   = L), and four concurrent full rankings already saturate a cell of half a core. A limit that was not
   used (fewer than half of it in flight) is not grown. The long-term round trip is the no-load
   reference, so it moves asymmetrically: down at once to a faster window, up only slowly (an
   exponential average over `long_window` windows). Gradient2's plain average catches up with a
   sustained overload within a few dozen windows and lets the limit grow back into it. A reference
   that only the fastest window sets is too low in turn once the machine is busier than it was (a
   neighbour, a restored region's traffic): the cell's ordinary 5.5 ms windows then read as
   congestion against a 3 ms best and the limit stays at its minimum for minutes. So, as Envoy
   re-measures its minimum round trip at low concurrency, a window with no load of the cell's own
   (one full ranking in flight at a time, and its requests queued under `quiet_queue_s` on average)
   IS the no-load round trip now, slower or not: the reference is set to it. Under overload the
   requests queue, so no window re-anchors it and the limit stays down. `rtt_target_s`
   anchors the limit to the SLO as well: a window slower than it shrinks the limit whatever the
   reference says (a cell that was slow from its first window has a slow reference).
   A request that finds `limit` full rankings in flight skips full ranking (cached tier first).

`decide(...)` is the decision, `observe(...)` the limit's update; `AdmissionState` holds what
the limit remembers. The caller (serving.admission_gate) owns the clock, the lock and the counts.
Off (`enabled = False`, REGIONCTL_ADMISSION=off): every request keeps the tier it asked for.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Mapping

from contracts.environment import EnvVar, load_settings
from fallback_tiers.tiers import Tier
from regions.errors import InputError


class AdmissionReason(StrEnum):
    """Why admission lowered a request's best tier. Closed set: a metric label."""

    QUEUE_TIME = "queue_time"
    """The request waited `queue_full_s` (or `queue_cached_s`) or more before its handler ran."""
    CONCURRENCY_LIMIT = "concurrency_limit"
    """`limit` full rankings were already in flight."""


@dataclass(frozen=True)
class AdmissionSettings:
    enabled: bool = True
    """Off only to show what the cell does without it (the must-fail overload test)."""
    queue_full_s: float = 0.020
    """20 ms queued: the request has already spent the slack a full ranking (~5-15 ms here) had
    inside the 150 ms deadline, so the queue is growing. It is served from the cache instead."""
    queue_cached_s: float = 0.060
    """60 ms queued: even a Redis round trip is too much; in-memory tiers only. Well inside the
    150 ms deadline, so a request queued this long still answers within the 180 ms p99."""
    initial_limit: float = 4.0
    """Full rankings in flight before the first window: a few per core, the limit finds its level."""
    min_limit: float = 1.0
    """At least one full ranking is always admitted (the queue-time bounds still apply)."""
    max_limit: float = 64.0
    """Above the cell's worker pools (40 HTTP threads, 16 gRPC workers): never the bound in practice."""
    window: int = 5
    """Full-ranking answers per limit update (Gradient2's windowed sample): a saturated cell ranks a
    few dozen per second, so the limit moves several times a second."""
    long_window: int = 600
    """Windows over which the long-term round trip may rise (3000 full rankings: minutes, so a
    sustained overload does not become the reference within a game day)."""
    tolerance: float = 1.5
    """The round trip may rise 50 % above its long-term value before the limit shrinks."""
    rtt_target_s: float = 0.060
    """A full ranking's round trip (queueing included) above 60 ms shrinks the limit even when the
    reference is as slow: it leaves under 90 ms of the 150 ms deadline for everything else queued."""
    quiet_queue_s: float = 0.002
    """A window whose full rankings queued under 2 ms on average, one at a time, had no load of the
    cell's own: its round trip becomes the reference (measured at 40 req/s on a quiet cell: 0.5-1 ms
    queued; a saturated one queues 10-60 ms)."""
    smoothing: float = 0.5
    """Share of each new estimate taken into the limit: a congested window takes a quarter off it."""

    def __post_init__(self) -> None:
        if not isinstance(self.enabled, bool):
            raise InputError("enabled", f"{self.enabled!r} is not allowed; use true or false.")
        _number("queue_full_s", self.queue_full_s, minimum=0.0)
        _number("queue_cached_s", self.queue_cached_s, minimum=0.0)
        if self.queue_cached_s < self.queue_full_s:
            raise InputError("queue_cached_s", f"{self.queue_cached_s:g} s is below queue_full_s ({self.queue_full_s:g} s); "
                                               "the in-memory bound must be the longer one.")
        _number("min_limit", self.min_limit, minimum=1.0)
        _number("max_limit", self.max_limit, minimum=1.0)
        if self.max_limit < self.min_limit:
            raise InputError("max_limit", f"{self.max_limit:g} is below min_limit ({self.min_limit:g}).")
        _number("initial_limit", self.initial_limit, minimum=self.min_limit)
        if self.initial_limit > self.max_limit:
            raise InputError("initial_limit", f"{self.initial_limit:g} is above max_limit ({self.max_limit:g}).")
        for name in ("window", "long_window"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(name, f"{value!r} is not allowed; use a whole number >= 1.")
        _number("tolerance", self.tolerance, minimum=1.0)
        _number("rtt_target_s", self.rtt_target_s, minimum=0.001)
        _number("quiet_queue_s", self.quiet_queue_s, minimum=0.0)
        _number("smoothing", self.smoothing, minimum=0.0)
        if not 0 < self.smoothing <= 1:
            raise InputError("smoothing", f"{self.smoothing!r} is not allowed; use 0 < smoothing <= 1.")

    @classmethod
    def from_env(cls, environ: Mapping[str, str], *, base: "AdmissionSettings | None" = None) -> "AdmissionSettings":
        """`base` (defaults) overridden by the REGIONCTL_ADMISSION* variables present in `environ`."""
        return load_settings(base or cls(), environ, prefix="REGIONCTL_ADMISSION", variables=ENV_VARIABLES,
                             what="admission setting", refuse_unknown=False)


ENV_VARIABLES: Mapping[str, EnvVar] = {
    "REGIONCTL_ADMISSION": EnvVar("enabled"),
    "REGIONCTL_ADMISSION_QUEUE_FULL_MS": EnvVar("queue_full_s", scale=0.001),
    "REGIONCTL_ADMISSION_QUEUE_CACHED_MS": EnvVar("queue_cached_s", scale=0.001),
    "REGIONCTL_ADMISSION_MIN_LIMIT": EnvVar("min_limit"),
    "REGIONCTL_ADMISSION_MAX_LIMIT": EnvVar("max_limit"),
}
"""REGIONCTL_ADMISSION=on|off, the two queue bounds in milliseconds, the limit's range."""


def _number(name: str, value: object, *, minimum: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < minimum:
        raise InputError(name, f"{value!r} is not allowed; use a finite number >= {minimum:g}.")


@dataclass(frozen=True)
class Admission:
    """The decision for one request."""

    max_tier: Tier
    """The best tier the request may use (never better than it asked for)."""
    reason: AdmissionReason | None = None
    """Why admission lowered it; None when the request keeps what it asked for."""

    @property
    def degraded(self) -> bool:
        return self.reason is not None

    @property
    def full(self) -> bool:
        """The request may rank: it counts against the limit while in flight."""
        return self.max_tier is Tier.FULL


def decide(*, asked: Tier, queued_s: float, full_in_flight: int, limit: float,
           settings: AdmissionSettings) -> Admission:
    """The best tier a request that asked for `asked` may use, having queued `queued_s` seconds,
    with `full_in_flight` full rankings running and the limit at `limit`."""
    if not settings.enabled:
        return Admission(max_tier=asked)
    cap, reason = Tier.FULL, None
    if queued_s >= settings.queue_cached_s:
        cap, reason = Tier.SEGMENT, AdmissionReason.QUEUE_TIME
    elif queued_s >= settings.queue_full_s:
        cap, reason = Tier.CACHED, AdmissionReason.QUEUE_TIME
    elif full_in_flight >= math.floor(limit):
        cap, reason = Tier.CACHED, AdmissionReason.CONCURRENCY_LIMIT
    if asked.rank >= cap.rank:
        return Admission(max_tier=asked)
    return Admission(max_tier=cap, reason=reason)


@dataclass(frozen=True)
class AdmissionState:
    """What the limit remembers between answers."""

    limit: float
    long_rtt_s: float | None = None
    """Exponential average of the windows' mean round trips; None before the first window."""
    short_rtt_s: float | None = None
    """Mean round trip of the last complete window (for the metrics)."""
    window_sum_s: float = 0.0
    window_count: int = 0
    window_peak_in_flight: int = 0
    """Most full rankings in flight during the window (was the limit used?)."""
    window_queued_s: float = 0.0
    """Seconds the window's full rankings queued before their handlers, summed."""
    windows: int = 0

    @classmethod
    def initial(cls, settings: AdmissionSettings) -> "AdmissionState":
        return cls(limit=float(settings.initial_limit))


def observe(state: AdmissionState, *, rtt_s: float, queued_s: float, in_flight: int,
            settings: AdmissionSettings) -> AdmissionState:
    """A full-ranking answer came back `rtt_s` after the request arrived (of which it queued
    `queued_s` before its handler), with `in_flight` full rankings (itself included) running when
    it was admitted; the new state (see the module)."""
    for name, value in (("rtt_s", rtt_s), ("queued_s", queued_s)):
        if not math.isfinite(value) or value < 0:
            raise InputError(name, f"{value!r} is not a duration; give a finite number of seconds >= 0.")
    total, count = state.window_sum_s + rtt_s, state.window_count + 1
    queued = state.window_queued_s + queued_s
    peak = max(state.window_peak_in_flight, in_flight)
    if count < settings.window:
        return AdmissionState(limit=state.limit, long_rtt_s=state.long_rtt_s, short_rtt_s=state.short_rtt_s,
                              window_sum_s=total, window_count=count, window_peak_in_flight=peak,
                              window_queued_s=queued, windows=state.windows)
    short = max(total / count, 1e-6)
    no_load = peak <= 1 and queued / count < settings.quiet_queue_s
    if state.long_rtt_s is None or short <= state.long_rtt_s or no_load:
        long = short  # a faster window, or one without load: the new no-load reference
    else:
        alpha = 2.0 / (settings.long_window + 1)
        long = state.long_rtt_s * (1 - alpha) + short * alpha
    limit = state.limit
    if peak >= limit / 2:  # a limit nobody reached says nothing about the cell: do not grow it
        gradient = min(1.0, max(0.5, min(settings.tolerance * long, settings.rtt_target_s) / short))
        estimate = limit * gradient + (math.sqrt(limit) if gradient >= 1.0 else 0.0)
        limit = limit * (1 - settings.smoothing) + estimate * settings.smoothing
    limit = min(settings.max_limit, max(settings.min_limit, limit))
    return AdmissionState(limit=limit, long_rtt_s=long, short_rtt_s=short, windows=state.windows + 1)


__all__ = ["Admission", "AdmissionReason", "AdmissionSettings", "AdmissionState", "decide", "observe"]
