"""Circuit breaker per dependency ("redis", "ranker"): pure transitions + a thread-safe wrapper.

    CLOSED --N consecutive failures over >= M s--> OPEN --T seconds--> HALF_OPEN (one trial call)
    HALF_OPEN --trial succeeds--> CLOSED        HALF_OPEN --trial fails--> OPEN (T again)

Consecutive failures are counted once per incident: a failed call that was admitted BEFORE the
last counted failure was recorded was already in flight when it happened, so it saw the same
event (one stall of the process or of Redis that times out every request open at that moment)
and is no new evidence; it does not count. Without this a single 50 ms stall of a cell that had
five requests open opened the redis breaker for 5 s, and every user of the region got segment
answers for those 5 s (docs/gamedays.md, "Personalisation lost during recovery"). A dependency
that is really down still opens the breaker after N failures of calls made one after the other
(a dead Redis refuses each new call at once; a stuck one times each new call out). And the
failures must have gone on for `min_failing_s` (first to last, no success between): a stall that
passes does not open it at all (see BreakerSettings.min_failing_s).

The transitions are pure functions of (state, now, settings). An open breaker costs no time: the
caller asks `admit` before calling and gets an answer from memory. A trial that never reports
back (its caller crashed) is not fatal: after another T seconds a new trial is let through.
`peek` answers "would you admit?" without taking the trial, so that a tier needing two
dependencies does not waste one's trial when the other is open.

`CircuitBreaker` holds the state behind a lock (the cell serves from threads) and a clock.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, replace
from enum import StrEnum

from fallback_tiers.deadline import Clock
from fallback_tiers.settings import BreakerSettings


class BreakerStatus(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True)
class BreakerState:
    status: BreakerStatus = BreakerStatus.CLOSED
    failures: int = 0
    """Consecutive failures seen while closed (reset by a success)."""
    opened_at: float = 0.0
    """When it last opened; meaningful in OPEN."""
    trial_started_at: float | None = None
    """In HALF_OPEN: when the one trial call was admitted; None while no trial is out."""
    last_failure_at: float | None = None
    """While closed: when the last counted failure was recorded (calls admitted before it do not count)."""
    failing_since: float | None = None
    """While closed: when the first counted failure of the current streak was recorded."""


def effective_status(state: BreakerState, *, now: float, settings: BreakerSettings) -> BreakerStatus:
    """OPEN whose time is up reads as HALF_OPEN (the next admit takes the trial)."""
    if state.status is BreakerStatus.OPEN and now - state.opened_at >= settings.open_duration_s:
        return BreakerStatus.HALF_OPEN
    return state.status


def peek(state: BreakerState, *, now: float, settings: BreakerSettings) -> bool:
    """Would `admit` let a call through now? Changes nothing."""
    return admit(state, now=now, settings=settings)[0]


def admit(state: BreakerState, *, now: float, settings: BreakerSettings) -> tuple[bool, BreakerState]:
    """Ask to make one call: (allowed, new state). In HALF_OPEN, allowing takes the single trial."""
    if state.status is BreakerStatus.CLOSED:
        return True, state
    if state.status is BreakerStatus.OPEN:
        if now - state.opened_at < settings.open_duration_s:
            return False, state
        return True, replace(state, status=BreakerStatus.HALF_OPEN, trial_started_at=now)
    # HALF_OPEN
    trial_out = state.trial_started_at is not None and now - state.trial_started_at < settings.open_duration_s
    if trial_out:
        return False, state
    return True, replace(state, trial_started_at=now)


def on_success(state: BreakerState, *, now: float) -> BreakerState:
    """A call admitted earlier succeeded. Closes a half-open breaker; a late success while OPEN
    (admitted before it opened) changes nothing: the open period runs its course."""
    del now  # successes need no time; kept for a uniform signature
    if state.status is BreakerStatus.OPEN:
        return state
    return BreakerState()


def on_failure(state: BreakerState, *, now: float, settings: BreakerSettings,
               admitted_at: float | None = None) -> BreakerState:
    """A call admitted earlier (at `admitted_at`; None: unknown, counts) failed (raised or came
    back after its budget). While closed, a call admitted before the last counted failure was
    recorded is the same incident and changes nothing (see the module docstring)."""
    if state.status is BreakerStatus.HALF_OPEN:
        return BreakerState(status=BreakerStatus.OPEN, failures=state.failures + 1, opened_at=now)
    if state.status is BreakerStatus.OPEN:
        return replace(state, failures=state.failures + 1)
    if admitted_at is not None and state.last_failure_at is not None and admitted_at < state.last_failure_at:
        return state
    failures = state.failures + 1
    since = now if state.failing_since is None else state.failing_since
    if failures >= settings.failure_threshold and now - since >= settings.min_failing_s:
        return BreakerState(status=BreakerStatus.OPEN, failures=failures, opened_at=now)
    return replace(state, failures=failures, last_failure_at=now, failing_since=since)


def on_abandon(state: BreakerState) -> BreakerState:
    """An admitted call was not made after all (another dependency refused): give the trial back."""
    if state.status is BreakerStatus.HALF_OPEN:
        return replace(state, trial_started_at=None)
    return state


class CircuitBreaker:
    """One dependency's breaker, shared by the threads of a cell. Every method is O(1)."""

    def __init__(
        self, name: str, *, settings: BreakerSettings | None = None, clock: Clock = time.monotonic,
        state: BreakerState | None = None,
    ) -> None:
        self.name = name
        self.settings = settings or BreakerSettings()
        self._clock = clock
        self._state = state or BreakerState()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"CircuitBreaker({self.name!r}, status={self.status.value}, failures={self._state.failures})"

    @property
    def state(self) -> BreakerState:
        with self._lock:
            return self._state

    @property
    def status(self) -> BreakerStatus:
        """The status as of now (an expired OPEN reads HALF_OPEN)."""
        with self._lock:
            return effective_status(self._state, now=self._clock(), settings=self.settings)

    def would_allow(self) -> bool:
        with self._lock:
            return peek(self._state, now=self._clock(), settings=self.settings)

    def now(self) -> float:
        """The breaker's clock: what `acquire` returns, for `record_failure(admitted_at=...)`."""
        return self._clock()

    def acquire(self) -> float | None:
        """Admit one call (taking the half-open trial if that is where it stands): the time it was
        admitted (pass it to `record_failure`), or None when refused."""
        with self._lock:
            now = self._clock()
            allowed, self._state = admit(self._state, now=now, settings=self.settings)
            return now if allowed else None

    def try_acquire(self) -> bool:
        return self.acquire() is not None

    def record_success(self) -> None:
        with self._lock:
            self._state = on_success(self._state, now=self._clock())

    def record_failure(self, admitted_at: float | None = None) -> None:
        """A call failed; `admitted_at` (from `acquire`) tells a new failure from one of the same incident."""
        with self._lock:
            self._state = on_failure(self._state, now=self._clock(), settings=self.settings, admitted_at=admitted_at)

    def abandon(self) -> None:
        with self._lock:
            self._state = on_abandon(self._state)
