"""Latency outlier detection of one region: a pure state machine over probe windows, with hysteresis.

A region can answer every probe and still be too slow for users (a gray failure: a starved host, a
slow disk or network path). Errors and timeouts are failover.health's job; this module demotes a
region on latency as the controller sees it from outside, so a cell that does not notice its own
slowness (the delay sits before its handler) is caught too.

The input is each probe's homepage round trip (`Probe.latency_ms`, a failed probe counted at the
prober's timeout or more). Probes are grouped into tumbling windows of `outlier_window_probes`
rounds; at the end of each window its p99 (nearest rank) is compared with `outlier_p99_ms` (the
180 ms end-to-end SLO):

    window p99 > outlier_p99_ms       a bad window  (good windows in a row reset to 0)
    otherwise                         a good window (bad windows in a row reset to 0)
    not ejected and bad   >= outlier_bad_windows   -> ejected     (N bad windows in a row)
    ejected     and good  >= outlier_good_windows  -> not ejected (M good windows in a row)

So one slow probe never moves traffic, and an ejected region returns only after M good windows in
a row (then steering fails it back gradually, like any region that was at weight 0): it cannot
flap faster than once per (N + M) windows. Whether an ejected region really loses its traffic is
steering's decision (failover.steering.Snapshot.ejected): never the last serving region of its
geography, since a slow answer (cut by the edge's deadline) beats none.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from failover.settings import ControllerSettings


def nearest_rank(values: tuple[float, ...], q: float) -> float:
    """The q-quantile (0 < q <= 1) by nearest rank: an observed value, never an interpolation."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


@dataclass(frozen=True, kw_only=True)
class OutlierState:
    ejected: bool = False
    since: float = 0.0
    """When `ejected` last changed (0: never)."""
    window: tuple[float, ...] = ()
    """Probe latencies (ms) of the window being filled."""
    bad_windows: int = 0
    """Bad windows in a row."""
    good_windows: int = 0
    """Good windows in a row."""
    last_p99_ms: float | None = None
    """p99 of the last complete window (None before the first)."""
    reason: str = "no complete probe window yet"

    def to_dict(self, settings: ControllerSettings) -> dict[str, Any]:
        """The evidence, for the health document, the journal and the status."""
        return {"enabled": settings.outlier_enabled, "ejected": self.ejected, "since": self.since,
                "window_p99_ms": None if self.last_p99_ms is None else round(self.last_p99_ms, 1),
                "threshold_ms": settings.outlier_p99_ms, "bad_windows": self.bad_windows,
                "good_windows": self.good_windows, "enter_after": settings.outlier_bad_windows,
                "leave_after": settings.outlier_good_windows, "window_probes": settings.outlier_window_probes,
                "reason": self.reason}


def probe_latency_ms(*, ok: bool, latency_ms: float, timeout_s: float) -> float:
    """What a probe says about latency: its round trip; a failed probe at least the timeout (a
    refused connection is fast, but says nothing good about the answers' latency)."""
    return latency_ms if ok else max(latency_ms, timeout_s * 1000.0)


def observe(state: OutlierState, latency_ms: float, *, settings: ControllerSettings, now: float) -> OutlierState:
    """The state after one more probe (see the module docstring). With outlier detection off
    (`outlier_enabled` false) nothing is ever ejected and a region ejected before is let go."""
    if not settings.outlier_enabled:
        if state.ejected:
            return OutlierState(since=now, reason="outlier detection switched off")
        return state if not state.window else OutlierState(reason="outlier detection switched off")
    window = state.window + (float(latency_ms),)
    if len(window) < settings.outlier_window_probes:
        return replace(state, window=window)
    p99 = nearest_rank(window, 0.99)
    bad = p99 > settings.outlier_p99_ms
    bad_windows = state.bad_windows + 1 if bad else 0
    good_windows = 0 if bad else state.good_windows + 1
    ejected = state.ejected
    verdict = f"window p99 {p99:.0f} ms {'>' if bad else '<='} {settings.outlier_p99_ms:g} ms"
    if not ejected and bad_windows >= settings.outlier_bad_windows:
        ejected, reason = True, f"ejected: {verdict}, {bad_windows} bad windows in a row"
    elif ejected and good_windows >= settings.outlier_good_windows:
        ejected, reason = False, f"returned: {verdict}, {good_windows} good windows in a row"
    elif ejected:
        reason = (f"ejected: {verdict}; {good_windows}/{settings.outlier_good_windows} good windows in a row "
                  "needed to return")
    else:
        reason = f"{verdict}; {bad_windows}/{settings.outlier_bad_windows} bad windows in a row to eject"
    return OutlierState(ejected=ejected, since=now if ejected != state.ejected else state.since, window=(),
                        bad_windows=bad_windows, good_windows=good_windows, last_p99_ms=p99, reason=reason)


__all__ = ["OutlierState", "nearest_rank", "observe", "probe_latency_ms"]
