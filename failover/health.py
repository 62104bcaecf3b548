"""Health of one region: a pure state machine over probe results, with hysteresis.

States: healthy, degraded, unhealthy (from probes) and drained (set by an operator).

Every probe is classified first (`classify`):
  FAILED    no answer, timeout, an error status, or an empty homepage (the one thing a cell must do);
  DEGRADED  answered with a non-empty homepage but with a signal of trouble: Redis down, stale
            features, error rate or p99 above the SLO, or the homepage served by a tier below `full`;
  GOOD      answered and nothing wrong.

Four consecutive counters are kept: `failures` (FAILED), `bad` (FAILED or DEGRADED), `answered`
(GOOD or DEGRADED) and `successes` (GOOD). With N = failures_down and M = successes_up, the state
the probes say (`probed`) moves as follows, checked in this order:

  failures >= N                                 -> unhealthy (from any state)
  healthy   and bad >= N                        -> degraded  (N probes in a row not good)
  unhealthy and answered >= M                   -> healthy if successes >= M, else degraded
  degraded  and successes >= M                  -> healthy
  otherwise                                     -> unchanged

So one lost probe never moves traffic, and a region comes back only after M probes in a row.
Drained is an operator state: probes keep running and `probed` keeps moving, but `state` stays
drained until `undrain`, which returns the region to whatever the probes say.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import Enum

from contracts.tiers import TIER_NAMES
from failover.outlier import OutlierState, observe, probe_latency_ms
from failover.settings import ControllerSettings


class HealthState(str, Enum):
    HEALTHY = "healthy"
    DEGRADED = "degraded"
    UNHEALTHY = "unhealthy"
    DRAINED = "drained"


class ProbeOutcome(str, Enum):
    GOOD = "good"
    DEGRADED = "degraded"
    FAILED = "failed"


@dataclass(frozen=True, kw_only=True)
class Probe:
    """One probe of a region's cell: `/readyz` plus one homepage request, as the prober saw them."""

    ok: bool
    """The cell answered readyz and the homepage request with a success status within the timeout."""
    at: float
    """When the probe finished (controller clock, seconds)."""
    latency_ms: float = 0.0
    """Round-trip of the homepage request as the prober measured it."""
    bundle_version: str | None = None
    redis_ok: bool = True
    freshness_ok: bool = True
    error_rate: float = 0.0
    """Share of the cell's recent requests that failed (readyz)."""
    p99_ms: float = 0.0
    """The cell's recent p99 latency (readyz)."""
    homepage_nonempty: bool = True
    tier_served: str = "full"
    """Tier that served the probe's homepage request."""
    error: str = ""
    """Why the probe failed, when it did (timeout, connection refused, HTTP 503, ...)."""

    @classmethod
    def failed(cls, *, at: float, error: str, latency_ms: float = 0.0) -> Probe:
        return cls(ok=False, at=at, error=error, latency_ms=latency_ms, homepage_nonempty=False)


def classify(probe: Probe, settings: ControllerSettings) -> tuple[ProbeOutcome, tuple[str, ...]]:
    """The probe's outcome and the reasons for it (empty for GOOD)."""
    if not probe.ok:
        return ProbeOutcome.FAILED, (f"probe failed: {probe.error or 'no answer'}",)
    if not probe.homepage_nonempty:
        return ProbeOutcome.FAILED, ("homepage was empty",)
    signals = []
    if not probe.redis_ok:
        signals.append("redis not ok")
    if not probe.freshness_ok:
        signals.append("features stale")
    if probe.error_rate > settings.slo_error_rate:
        signals.append(f"error rate {probe.error_rate:.2%} > {settings.slo_error_rate:.2%}")
    if probe.p99_ms > settings.slo_p99_ms:
        signals.append(f"p99 {probe.p99_ms:.0f} ms > {settings.slo_p99_ms:.0f} ms")
    if probe.tier_served != TIER_NAMES[0]:
        signals.append(f"homepage served by tier {probe.tier_served!r}")
    if probe.latency_ms > settings.probe_timeout_s * 1000:
        signals.append(f"probe latency {probe.latency_ms:.0f} ms > timeout {settings.probe_timeout_s * 1000:.0f} ms")
    return (ProbeOutcome.DEGRADED if signals else ProbeOutcome.GOOD), tuple(signals)


@dataclass(frozen=True, kw_only=True)
class RegionHealth:
    region: str
    state: HealthState
    """What steering uses: `probed`, unless an operator drained the region."""
    probed: HealthState
    """What the probes alone say (never DRAINED)."""
    since: float
    """When `state` last changed."""
    reason: str
    failures: int = 0
    bad: int = 0
    answered: int = 0
    successes: int = 0
    last_probe: Probe | None = None
    outlier: OutlierState = field(default_factory=OutlierState)
    """Latency outlier detection over probe windows (failover.outlier); steering decides what an
    ejection costs the region (Snapshot.ejected)."""

    @property
    def usable(self) -> bool:
        """May receive traffic: healthy or degraded, and not drained."""
        return self.state in (HealthState.HEALTHY, HealthState.DEGRADED)

    @property
    def last_probe_failed(self) -> bool:
        return self.failures > 0


def initial_health(region: str, *, now: float, state: HealthState = HealthState.HEALTHY) -> RegionHealth:
    """Health before any probe. Healthy by default, as Envoy assumes until active checks say otherwise."""
    probed = HealthState.HEALTHY if state is HealthState.DRAINED else state
    return RegionHealth(region=region, state=state, probed=probed, since=now, reason="no probe yet")


def _next_probed(h: RegionHealth, *, failures: int, bad: int, answered: int, successes: int,
                 settings: ControllerSettings) -> HealthState:
    n, m = settings.failures_down, settings.successes_up
    if failures >= n:
        return HealthState.UNHEALTHY
    if h.probed is HealthState.HEALTHY and bad >= n:
        return HealthState.DEGRADED
    if h.probed is HealthState.UNHEALTHY and answered >= m:
        return HealthState.HEALTHY if successes >= m else HealthState.DEGRADED
    if h.probed is HealthState.DEGRADED and successes >= m:
        return HealthState.HEALTHY
    return h.probed


def transition(health: RegionHealth, probe: Probe, *, settings: ControllerSettings, now: float) -> RegionHealth:
    """The region's health after one more probe (see the module docstring for the rules)."""
    outcome, why = classify(probe, settings)
    failures = health.failures + 1 if outcome is ProbeOutcome.FAILED else 0
    bad = health.bad + 1 if outcome is not ProbeOutcome.GOOD else 0
    answered = health.answered + 1 if outcome is not ProbeOutcome.FAILED else 0
    successes = health.successes + 1 if outcome is ProbeOutcome.GOOD else 0
    probed = _next_probed(health, failures=failures, bad=bad, answered=answered, successes=successes,
                          settings=settings)
    state = HealthState.DRAINED if health.state is HealthState.DRAINED else probed
    detail = "; ".join(why) or "probe good"
    counts = (f"{failures}/{settings.failures_down} failed, {bad} not good, "
              f"{successes}/{settings.successes_up} good in a row")
    if state is HealthState.DRAINED:
        reason = f"drained by operator (probes say {probed.value}: {detail})"
    elif state is not health.state:
        reason = f"{health.state.value} -> {state.value}: {detail} ({counts})"
    else:
        reason = f"{state.value}: {detail} ({counts})"
    return replace(
        health, state=state, probed=probed, since=now if state is not health.state else health.since,
        reason=reason, failures=failures, bad=bad, answered=answered, successes=successes, last_probe=probe,
    )


def with_outlier(health: RegionHealth, probe: Probe, *, settings: ControllerSettings, now: float) -> RegionHealth:
    """The health with one more probe's latency fed to its outlier detection (failover.outlier)."""
    latency = probe_latency_ms(ok=probe.ok, latency_ms=probe.latency_ms, timeout_s=settings.probe_timeout_s)
    return replace(health, outlier=observe(health.outlier, latency, settings=settings, now=now))


def drain(health: RegionHealth, *, now: float, reason: str = "") -> RegionHealth:
    """Operator drain: the region stays drained whatever the probes say. Validation is failover.safety's job."""
    if health.state is HealthState.DRAINED:
        return health
    return replace(health, state=HealthState.DRAINED, since=now,
                   reason=f"drained by operator{': ' + reason if reason else ''}")


def undrain(health: RegionHealth, *, now: float) -> RegionHealth:
    """End of a drain: the region takes the state its probes say (steering then fails it back gradually)."""
    if health.state is not HealthState.DRAINED:
        return health
    return replace(health, state=health.probed, since=now,
                   reason=f"undrained by operator; probes say {health.probed.value}")


def gate_failures(health: RegionHealth | None, settings: ControllerSettings) -> tuple[str, ...]:
    """Why the SLO gates do not hold for a region (empty when they hold).

    Gates: health state healthy, and the latest probe's error rate and p99 within the SLO.
    """
    if health is None:
        return ("no health known",)
    problems = []
    if health.state is not HealthState.HEALTHY:
        problems.append(f"state is {health.state.value}, not healthy")
    probe = health.last_probe
    if probe is None:
        problems.append("no probe yet")
    else:
        if probe.error_rate > settings.slo_error_rate:
            problems.append(f"error rate {probe.error_rate:.2%} above SLO {settings.slo_error_rate:.2%}")
        if probe.p99_ms > settings.slo_p99_ms:
            problems.append(f"p99 {probe.p99_ms:.0f} ms above SLO {settings.slo_p99_ms:.0f} ms")
    return tuple(problems)
