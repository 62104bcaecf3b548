"""Passive outlier ejection at the edge: the edge's LOCAL view of which cells it cannot reach.

Like Envoy's outlier detection, from the attempts the edge makes anyway (no probes of its own):

- a cell whose attempts failed (`CellFailed`: a timeout or a transport error) `consecutive_failures`
  times in a row, or at least `failure_rate` of its last `window` attempts, is EJECTED: it is
  demoted to the end of every first-attempt order (reads and events) for an ejection time of
  `base_s` x (its ejection count), at most `max_s`; the count decays by one for each `base_s` the
  cell then stays admitted, so a cell that keeps failing stays out longer and longer;
- after the ejection time ONE real attempt is let through as a probe (the next read that ranks
  the cell first: event batches keep demoting it); its success re-admits the cell, its failure ejects it again, for longer; an
  attempt that reaches a demoted cell before that (a retry, when its peer failed too) decides nothing;
- the guard: at most `max_percent` of a geography's regions are ejected at once, and never all of
  them (a geography of one region never ejects it); and a cell is an outlier only against peers
  that do better: while an admitted peer of its geography failed `peer_failure_rate` or more of its
  own recent attempts, nothing is ejected (both failing is the load or the edge itself, as when the
  survivors of a region loss run past their capacity: ejecting one would pile its share on the
  other; Envoy's success-rate detection compares a host with its cluster the same way). Demotion never removes a region from a plan:
  when the others fail too, the ejected cell is still tried.

A cell that answers, even with an empty slate or a refusal, is reachable: that is a success here
(the edge says which results fail: a read's CellFailed, an event batch's timeout).
The controller's weights stay the controller's (docs/gamedays.md: an edge-local fault must not
evacuate a region every other client still reaches); this is what one edge does with its own
observations. Pure decisions; `Ejector` holds the views and the clock, no I/O.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from typing import Callable, Iterable, Mapping

NONE: frozenset[str] = frozenset()


@dataclass(frozen=True, kw_only=True)
class EjectionPolicy:
    """The thresholds; their defaults and reasons are the edge's settings' (edge.settings.ejection_policy)."""

    enabled: bool
    consecutive_failures: int
    window: int
    failure_rate: float
    base_s: float
    max_s: float
    max_percent: float
    peer_failure_rate: float = 0.25
    probe_timeout_s: float = 2.0
    """A probe whose result never came (its request was cancelled) stops blocking the next probe."""


@dataclass(frozen=True, kw_only=True)
class CellView:
    """One cell as this edge has seen it."""

    consecutive: int = 0
    recent: tuple[bool, ...] = ()
    """The last `window` attempts, True where the attempt failed."""
    ejected_until: float | None = None
    """None: admitted. Else ejected (probing once the time has passed)."""
    probe_since: float | None = None
    ejections: int = 0
    """Ejections counted for the backoff (decays while admitted)."""
    admitted_at: float = 0.0


def ejection_time_s(ejections: int, policy: EjectionPolicy) -> float:
    """How long the `ejections`-th ejection (1, 2, ...) in a row lasts: base x n, at most max_s."""
    return min(policy.max_s, policy.base_s * max(1, ejections))


def decayed(view: CellView, now: float, policy: EjectionPolicy) -> int:
    """The ejection count, less one for every base_s the cell has stayed admitted since."""
    return max(0, view.ejections - int(max(0.0, now - view.admitted_at) // policy.base_s))


def probing(view: CellView, now: float, policy: EjectionPolicy) -> bool:
    return view.probe_since is not None and now - view.probe_since < policy.probe_timeout_s


def is_demoted(view: CellView, now: float, policy: EjectionPolicy) -> bool:
    """Ejected and not yet due for its probe, or its probe is in flight."""
    if view.ejected_until is None:
        return False
    return now < view.ejected_until or probing(view, now, policy)


def attempt_started(view: CellView, now: float, policy: EjectionPolicy) -> CellView:
    """An attempt to an ejected cell past its ejection time is its probe."""
    if view.ejected_until is None or now < view.ejected_until or probing(view, now, policy):
        return view
    return replace(view, probe_since=now)


def may_eject(region: str, peers: Iterable[str], views: Mapping[str, CellView], policy: EjectionPolicy) -> bool:
    """The guard: ejecting `region` keeps at most max_percent of its geography (`peers`, itself
    included) ejected, and at least one region of it admitted; and no admitted peer failed
    peer_failure_rate or more of its own recent attempts (then `region` is no outlier)."""
    peers = tuple(peers)
    others = [views.get(p, CellView()) for p in peers if p != region]
    ejected = sum(1 for v in others if v.ejected_until is not None)
    if any(v.ejected_until is None and v.recent and sum(v.recent) >= policy.peer_failure_rate * len(v.recent)
           for v in others):
        return False
    return ejected + 1 <= math.floor(len(peers) * policy.max_percent / 100.0) and ejected + 1 < len(peers)


def trips(view: CellView, policy: EjectionPolicy) -> bool:
    if view.consecutive >= policy.consecutive_failures:
        return True
    return len(view.recent) >= policy.window and sum(view.recent) >= policy.failure_rate * len(view.recent)


def attempt_finished(view: CellView, *, failed: bool, now: float, policy: EjectionPolicy,
                     allowed: bool) -> tuple[CellView, str]:
    """The view after one attempt, and what happened: "" | "ejected" | "re-ejected" | "readmitted".
    `allowed`: the guard lets this cell be ejected now (`may_eject`)."""
    if view.ejected_until is not None:
        if view.probe_since is None:
            return view, ""  # a retry sent to the demoted cell: only the probe decides
        if not failed:
            return CellView(ejections=view.ejections, admitted_at=now), "readmitted"
        n = view.ejections + 1
        return replace(view, ejected_until=now + ejection_time_s(n, policy), probe_since=None, ejections=n), \
            "re-ejected"
    counted = replace(view, consecutive=view.consecutive + 1 if failed else 0,
                      recent=(view.recent + (failed,))[-policy.window:])
    if failed and allowed and trips(counted, policy):
        n = decayed(view, now, policy) + 1
        return CellView(ejected_until=now + ejection_time_s(n, policy), ejections=n, admitted_at=view.admitted_at), \
            "ejected"
    return counted, ""


def demote(order: tuple[str, ...], demoted: frozenset[str]) -> tuple[str, ...]:
    """`order` with the demoted regions moved to its end (each part in its own order)."""
    if not demoted or not demoted.intersection(order):
        return order
    return tuple(r for r in order if r not in demoted) + tuple(r for r in order if r in demoted)


class Ejector:
    """The edge's views of its cells. The edge calls `demoted()` when it plans a request and
    `started` / `finished` around every attempt; one event loop, so no lock."""

    def __init__(self, geographies: Mapping[str, tuple[str, ...]], policy: EjectionPolicy,
                 *, clock: Callable[[], float] = time.monotonic,
                 on_event: Callable[[str, str], None] | None = None) -> None:
        self.policy, self._clock, self._on_event = policy, clock, on_event
        self._peers = {r: regions for regions in geographies.values() for r in regions}
        self.views: dict[str, CellView] = {r: CellView() for r in self._peers}
        self._ejected = 0
        """How many views are ejected: the fast path while none is."""

    def demoted(self, *, probe: bool = True) -> frozenset[str]:
        """The cells to demote in the plan being made. `probe=False` (event batches): every ejected
        cell, due for its probe or not, so that only reads probe (a read's probe costs its 90 ms
        first attempt, an event batch's would cost 150 ms)."""
        if not self._ejected:
            return NONE
        if not probe:
            return frozenset(r for r, v in self.views.items() if v.ejected_until is not None)
        now = self._clock()
        return frozenset(r for r, v in self.views.items() if is_demoted(v, now, self.policy))

    def started(self, region: str) -> None:
        view = self.views.get(region)
        if view is not None and view.ejected_until is not None:
            self.views[region] = attempt_started(view, self._clock(), self.policy)

    def finished(self, region: str, *, failed: bool) -> str:
        view = self.views.get(region)
        if view is None or not self.policy.enabled or (not failed and view.ejected_until is None
                                                       and True not in view.recent):
            return ""  # the hot path: a success of a cell with no failure in its window changes nothing
        allowed = failed and view.ejected_until is None and may_eject(region, self._peers[region], self.views,
                                                                       self.policy)
        new, event = attempt_finished(view, failed=failed, now=self._clock(), policy=self.policy, allowed=allowed)
        self.views[region] = new
        if event == "ejected":
            self._ejected += 1
        elif event == "readmitted":
            self._ejected -= 1
        if event and self._on_event is not None:
            self._on_event(region, event)
        return event

    def ejected(self) -> tuple[str, ...]:
        return tuple(sorted(r for r, v in self.views.items() if v.ejected_until is not None))

    def status(self) -> dict[str, object]:
        """For /readyz: the policy's switch and each ejected cell with its time left."""
        now = self._clock()
        return {"enabled": self.policy.enabled, "ejected": {
            r: {"for_s": round(max(0.0, v.ejected_until - now), 3), "ejections": v.ejections,
                "probing": probing(v, now, self.policy)}
            for r, v in sorted(self.views.items()) if v.ejected_until is not None}}
