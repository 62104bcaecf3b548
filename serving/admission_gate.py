"""The cell's admission gate: fallback_tiers.admission with a clock, a lock and the counts.

Both servers stamp a request's arrival before it waits for a worker, and the homepage handlers
ask the gate, once the handler runs, which tiers the request may use:

    HTTP (serving.http_app)   an ASGI middleware stamps `time.monotonic()` into the request's
                              scope when uvicorn hands it the parsed request, before FastAPI
                              queues the sync route for the threadpool (40 threads);
    gRPC (serving.grpc_server) a server interceptor stamps it on the server's poller thread, when
                              the call's handler is looked up, before the call is queued for the
                              executor (16 workers); the handler reads it back (`ArrivalStamp`).

Counted as queued: the wait for a worker thread and any GIL wait until the handler runs. NOT
counted: time in the kernel's socket buffers and accept backlog, HTTP parsing by uvicorn's event
loop (busy when the process is), the gRPC core's own queue before the poller takes the call. On
an overloaded cell those are short next to the worker queue, but they are not zero: the load
generator's latency (from the scheduled send) is the figure the verdicts use, never this one.

The request's deadline also starts at its arrival (the time queued is spent from it), so the
ladder's own budget rules see the queue too.

Lanes: the cell asks once the request is routed (serving.traffic_split), naming the bundle that will
rank it. The queue-time bounds are the cell's and hold for every lane; the concurrency limit is one
per lane: the serving bundle's ("") and one per bundle held beside it (a canary, an experiment arm).
A slow candidate then fills and shrinks its own limit only: with one shared limit its slow rankings
degraded the serving bundle's answers as much as its own, and the rollout gates comparing the two
saw no difference. Shadow scoring never goes through the gate. The snapshot (and the metrics) show
the serving lane.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable

from fallback_tiers.admission import Admission, AdmissionReason, AdmissionSettings, AdmissionState, decide, observe
from fallback_tiers.tiers import Tier


SERVING_LANE = ""
MAX_LANES = 8
"""Lanes kept (bundles come and go with rollouts); an idle side lane is dropped for a new one."""


@dataclass
class _Lane:
    state: AdmissionState
    full: int = 0


@dataclass(frozen=True)
class Ticket:
    """One admitted request: its decision and when it arrived (monotonic seconds)."""

    admission: Admission
    arrived_at: float
    in_flight: int
    """Full rankings in flight when it was admitted, itself included (0 when it may not rank)."""
    lane: str = SERVING_LANE
    """The bundle whose limit it counts against ("": the serving bundle)."""
    queued_s: float = 0.0
    """Seconds it waited between its arrival and its handler asking the gate."""


@dataclass(frozen=True)
class GateSnapshot:
    """The gate's state and counts at one moment (the metrics read it at scrape time)."""

    enabled: bool
    limit: float
    full_in_flight: int
    short_rtt_s: float | None
    long_rtt_s: float | None
    admitted: int
    """Homepage requests that went through the gate."""
    degraded: dict[tuple[str, str], int]
    """(reason, the tier admission capped it at) -> requests."""
    queued_s_sum: float
    """Seconds queued before the handler, summed over every admitted request."""


class AdmissionGate:
    """Thread-safe; one per cell, shared by its HTTP and gRPC servers."""

    def __init__(self, settings: AdmissionSettings = AdmissionSettings(),
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.clock = clock
        self._lock = threading.Lock()
        self._lanes: dict[str, _Lane] = {SERVING_LANE: _Lane(AdmissionState.initial(settings))}
        self._admitted = 0
        self._queued_sum = 0.0
        self._degraded: dict[tuple[str, str], int] = {
            (reason.value, tier.value): 0 for reason in AdmissionReason for tier in (Tier.CACHED, Tier.SEGMENT)}

    def _lane(self, lane: str) -> _Lane:
        found = self._lanes.get(lane)
        if found is None:
            if len(self._lanes) > MAX_LANES:
                idle = [k for k, v in self._lanes.items() if k != SERVING_LANE and v.full == 0]
                for k in idle[: len(self._lanes) - MAX_LANES]:
                    del self._lanes[k]
            found = self._lanes[lane] = _Lane(AdmissionState.initial(self.settings))
        return found

    def admit(self, *, asked: Tier, arrived_at: float | None, lane: str = SERVING_LANE) -> Ticket:
        """Decide for a request that arrived at `arrived_at` (None: now, nothing queued), routed to
        the bundle of `lane` ("": the serving bundle)."""
        now = self.clock()
        arrived = now if arrived_at is None else min(arrived_at, now)
        queued = now - arrived
        with self._lock:
            own = self._lane(lane)
            admission = decide(asked=asked, queued_s=queued, full_in_flight=own.full, limit=own.state.limit,
                               settings=self.settings)
            self._admitted += 1
            self._queued_sum += queued
            if admission.reason is not None:
                key = (admission.reason.value, admission.max_tier.value)
                self._degraded[key] = self._degraded.get(key, 0) + 1
            in_flight = 0
            if admission.full:
                own.full += 1
                in_flight = own.full
        return Ticket(admission=admission, arrived_at=arrived, in_flight=in_flight, lane=lane, queued_s=queued)

    def done(self, ticket: Ticket, *, ranked: bool) -> None:
        """The request of `ticket` is answered. `ranked`: a full ranking ran to its end for it (it
        served, or came back too late or failed): its round trip is a sample of the limit. A request
        whose full ranking never started (a breaker open, no budget) gives none."""
        if not ticket.admission.full:
            return
        rtt = max(self.clock() - ticket.arrived_at, 0.0)
        with self._lock:
            own = self._lanes.get(ticket.lane)
            if own is None:  # a side lane dropped meanwhile (its bundle left)
                return
            own.full -= 1
            if ranked and self.settings.enabled:
                own.state = observe(own.state, rtt_s=rtt, queued_s=ticket.queued_s, in_flight=ticket.in_flight,
                                    settings=self.settings)

    def limit_of(self, lane: str) -> float | None:
        """The concurrency limit of `lane` now (None: no request of it came yet)."""
        with self._lock:
            own = self._lanes.get(lane)
            return None if own is None else own.state.limit

    def remaining_s(self, ticket: Ticket, budget_s: float) -> float:
        """What is left of a `budget_s` deadline that started when the request arrived."""
        return max(budget_s - (self.clock() - ticket.arrived_at), 0.0)

    def snapshot(self) -> GateSnapshot:
        with self._lock:
            serving = self._lanes[SERVING_LANE]
            state = serving.state
            return GateSnapshot(enabled=self.settings.enabled, limit=state.limit, full_in_flight=serving.full,
                                short_rtt_s=state.short_rtt_s, long_rtt_s=state.long_rtt_s, admitted=self._admitted,
                                degraded=dict(self._degraded), queued_s_sum=self._queued_sum)


class ArrivalStamp:
    """The arrival time of the call a worker thread is serving (gRPC: set by the interceptor's
    wrapper in the worker, just before the servicer runs)."""

    def __init__(self) -> None:
        self._local = threading.local()

    def set(self, at: float | None) -> None:
        self._local.at = at

    def get(self) -> float | None:
        return getattr(self._local, "at", None)


__all__ = ["SERVING_LANE", "AdmissionGate", "ArrivalStamp", "GateSnapshot", "Ticket"]
