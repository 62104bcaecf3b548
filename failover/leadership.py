"""Leader election over the control store's leases, and writes fenced by the leader's term.

One controller process leads; the others stand by and campaign every `ttl_s / 3` seconds.

    tick()   one step: renew the lease if we lead, else try to acquire it; returns is_leader
    run()    the loop: tick, sleep, until `stop()` says so (clock and sleep are injected)

Only the leader writes, and every leader write is fenced: `fenced_put` hands the store the
lease name, holder and term, and the store refuses it atomically once another holder has taken
the lease (a deposed leader that was paused, e.g. by GC or SIGSTOP, cannot overwrite its
successor). Locally, leadership is also given up as soon as the last successful renewal is
`ttl_s` old by our own clock, even if the store cannot be reached to say so.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Callable

from failover.control_store import ControlStore, Fence, check_key, check_ttl
from regions.errors import InputError, PermanentError, TemporaryError

DEFAULT_LEASE = "controller"


@dataclass(frozen=True)
class LeadershipSettings:
    """Election timing; each default carries its reason."""

    ttl_s: float = 3.0
    """A crashed leader is replaced within about 3-4 s: far inside the 10 min RTO, long enough
    that a busy 2-core machine does not make a healthy leader miss its renewals."""
    renew_fraction: float = 1 / 3
    """Renew three times per TTL: a leader keeps its lease through two late or failed renewals."""


@dataclass(frozen=True)
class LeaderState:
    """What this process knows after its last tick."""

    holder: str
    is_leader: bool
    term: int | None = None
    """The fencing token while we lead (None otherwise)."""
    valid_until: float | None = None
    """Local-clock time after which we stop considering ourselves leader without a renewal."""
    leader: str | None = None
    """Who leads, as far as the last tick saw (may be us)."""
    error: str | None = None
    """The last store error, if the last tick could not reach the store."""


class NotLeader(PermanentError):
    """A leader-only action was attempted by a process that is not the leader."""


class Leadership:
    """Campaign for lease `name` as `holder` over `store`."""

    def __init__(
        self, store: ControlStore, *, holder: str, name: str = DEFAULT_LEASE,
        ttl_s: float = LeadershipSettings.ttl_s, renew_fraction: float = LeadershipSettings.renew_fraction,
        clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
        on_change: Callable[[LeaderState, LeaderState], None] | None = None,
    ) -> None:
        self.store = store
        self.name = check_key(name, field="name")
        self.holder = check_key(holder, field="holder")
        self.ttl_s = check_ttl(ttl_s)
        if not 0 < renew_fraction < 1:
            raise InputError("renew_fraction", f"must be in (0, 1), got {renew_fraction!r}")
        self.interval_s = self.ttl_s * renew_fraction
        self._clock = clock
        self._sleep = sleep
        self._on_change = on_change
        self._state = LeaderState(holder=holder, is_leader=False)

    # -- state -------------------------------------------------------------------------------
    @property
    def state(self) -> LeaderState:
        """The state of the last tick, with leadership dropped if it has run out locally."""
        state = self._state
        if state.is_leader and state.valid_until is not None and self._clock() >= state.valid_until:
            return replace(state, is_leader=False, term=None, valid_until=None)
        return state

    @property
    def is_leader(self) -> bool:
        return self.state.is_leader

    def fence(self) -> Fence:
        """The fence for a leader write; raises NotLeader when we do not (or no longer) lead."""
        state = self.state
        if not state.is_leader or state.term is None:
            leader = f"{state.leader!r} leads" if state.leader else "no leader is known"
            raise NotLeader(f"{self.holder!r} is not the leader of {self.name!r} ({leader}); "
                            "only the leader may write")
        return Fence(lease=self.name, holder=self.holder, term=state.term)

    def fenced_put(self, key: str, value: bytes | str, *, cas: int | None = None) -> bool:
        """Write as the leader: NotLeader locally, FenceRejected from the store once deposed."""
        return self.store.fenced_put(key, value, fence=self.fence(), cas=cas)

    # -- the step and the loop ---------------------------------------------------------------
    def _set(self, new: LeaderState) -> LeaderState:
        old, self._state = self._state, new
        if self._on_change is not None and (old.is_leader, old.term, old.leader) != (new.is_leader, new.term, new.leader):
            self._on_change(old, new)
        return new

    def tick(self) -> bool:
        """Renew (if leading) or acquire the lease once; returns whether we lead now."""
        started = self._clock()
        was_leading = self.state.is_leader
        try:
            held = was_leading and self.store.renew_lease(self.name, self.holder, self.ttl_s)
            if held:
                self._set(replace(self._state, valid_until=started + self.ttl_s, error=None))
                return True
            if self.store.acquire_lease(self.name, self.holder, self.ttl_s):
                lease = self.store.lease_holder(self.name)
                if lease is not None and lease.holder == self.holder:
                    self._set(LeaderState(holder=self.holder, is_leader=True, term=lease.term,
                                          valid_until=started + self.ttl_s, leader=self.holder))
                    return True
            lease = self.store.lease_holder(self.name)
            self._set(LeaderState(holder=self.holder, is_leader=False, leader=lease.holder if lease else None))
            return False
        except TemporaryError as exc:
            # The store is unreachable: keep leading only while the last renewal is fresh.
            self._set(replace(self.state, error=str(exc)))
            return self.state.is_leader

    def run(self, *, stop: Callable[[], bool] = lambda: False,
            after_tick: Callable[[bool], None] | None = None) -> None:
        """Tick every `interval_s` until `stop()` returns True, calling `after_tick(is_leader)`
        after each tick (the leader's work goes there); release the lease on the way out."""
        try:
            while not stop():
                leading = self.tick()
                if after_tick is not None:
                    after_tick(leading)
                self._sleep(self.interval_s)
        finally:
            self.resign()

    def resign(self) -> None:
        """Give the lease back (if held) so that a standby takes over without waiting a TTL."""
        if self._state.is_leader:
            try:
                self.store.release_lease(self.name, self.holder)
            except TemporaryError:
                pass  # the lease expires on its own
        self._set(LeaderState(holder=self.holder, is_leader=False))
