"""The controller's driver: probe, decide, check, and (only as the leader) act.

    step(now)   one round: probe every cell (failover.probing), move each region's health
                (health.transition, with operator drains laid over), build the Snapshot (capacity
                from the topology, demand from the cells' readyz qps, replication lags from their
                readyz, overrides / failback progress / current weights from the store), decide(),
                check_steering(); then, if this process holds the lease, write with fenced puts:
                    routing/table        Steering.routing_table, version + 1, when it changed
                                         (and once on taking over)
                    health/<region>      when the region's state changes
                    control/failback     failback progress, when it changes
                    control/overrides    the active overrides, when one expired
                    control/leader       who leads and where its control API listens
                and journal what changed (weights, fail-static enter/exit, expired overrides,
                leader change) with the health votes and thresholds behind it.
    run(stop)   step every `interval_s` (fixed rate) until stop(); the clock and the wait are injected.

What to write is decided by failover.effects (pure: plan_take_over / plan_effects return a Plan
of values); `apply_plan` below is the one function that makes a Plan's fenced writes and journal
entries. A standby runs the same step (so its health is fresh when it takes over) and writes nothing.
Every controller also follows routing/table between rounds (failover.key_watch: the store's watch
on etcd, polling elsewhere), so a standby knows the newest table within milliseconds and can
still answer `status` with it while the store is unreachable. When the store cannot be reached
the controller writes nothing and says so: a STORE-UNAVAILABLE log line (STORE-BACK when it
answers again) and `store` in its status.
`change_overrides` is how the control API and drills change drains and steers: validated on a fresh
snapshot by a failover.safety function, written with compare-and-set under the leader's fence,
journaled with the caller as actor. Decision logic stays in the pure modules; this module is I/O.
"""
from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, replace
from typing import Any, Callable, Mapping

from capacity.calibration import Calibration
from contracts.store_keys import LEADER_KEY, OVERRIDES_KEY, TABLE_KEY
from failover.control_store import ControlStore, FenceRejected
from failover.dns_publish import DnsPublisher
from failover.effects import Entry, Plan, dump, health_votes, plan_effects, plan_take_over
from failover.health import HealthState, Probe, RegionHealth, drain, initial_health, transition, undrain, with_outlier
from failover.journal import Action, Journal
from failover.key_watch import Followed, KeyFollower
from failover.leadership import Leadership, LeadershipSettings, NotLeader
from failover.overrides import Overrides
from failover.probing import CellReport
from failover.safety import check_steering
from failover.settings import ControllerSettings
from failover.steering import Snapshot, Steering, decide
from failover.stored_state import Stored, read_stored
from regions.cas_retry import LOST, CasRetry, Lost
from regions.errors import InputError, PermanentError, TemporaryError
from regions.topology import Topology

OVERRIDES_RETRY = CasRetry(attempts=5, backoff_s=0.01, max_backoff_s=0.1, exhausted=lambda n: TemporaryError(
    f"the overrides changed {n} times while this change was made; retry", delay=0.5))
"""Operator changes race only with each other and with expiry; five lost races in a row is an error."""

Prober = Callable[[float], Mapping[str, CellReport]]


# -- pure helpers ---------------------------------------------------------------------------------

def weights_of(table: Mapping[str, Any] | None) -> dict[str, dict[str, int]]:
    """A geography's own weights from a routing table (anonymous routes are not weights)."""
    out: dict[str, dict[str, int]] = {}
    for geo, route in ((table or {}).get("geos") or {}).items():
        if isinstance(route, Mapping) and not route.get("anonymous"):
            out[geo] = {str(r): int(w) for r, w in (route.get("regions") or {}).items()}
    return out


def demand_by_geography(topology: Topology, reports: Mapping[str, CellReport]) -> dict[str, float]:
    """Requests per second per geography, summed over the cells whose readyz answered (unknown if none)."""
    demand: dict[str, float] = {}
    for region, report in sorted(reports.items()):
        if report.readyz is not None and region in topology.regions:
            geo = topology.regions[region].geography
            demand[geo] = demand.get(geo, 0.0) + report.readyz.qps
    return demand


def lags_of(reports: Mapping[str, CellReport]) -> dict[tuple[str, str], float]:
    """Replication lag per (source, destination), the worst any cell reported."""
    lags: dict[tuple[str, str], float] = {}
    for report in reports.values():
        for lag in report.readyz.replication if report.readyz else ():
            pair = (lag.source, lag.destination)
            lags[pair] = max(lags.get(pair, 0.0), lag.lag_s)
    return lags


def with_drains(health: RegionHealth, overrides: Overrides, *, now: float) -> RegionHealth:
    """Health with the operator's drain laid over (or lifted) per the active overrides."""
    found = overrides.drains.get(health.region)
    if found is not None and not found.expired(now):
        return drain(health, now=now, reason=found.reason)
    return undrain(health, now=now) if health.state is HealthState.DRAINED else health


@dataclass(frozen=True, kw_only=True)
class StepResult:
    now: float
    leader: bool
    health: Mapping[str, RegionHealth]
    reports: Mapping[str, CellReport]
    snapshot: Snapshot
    steering: Steering
    problems: tuple[str, ...]
    """check_steering's objections: when not empty the table is not written."""
    wrote: tuple[str, ...] = ()
    journaled: tuple[str, ...] = ()
    error: str = ""
    decide_s: float = 0.0
    """Wall time of decide() plus check_steering() this round (the controller_metrics histogram)."""


def _written_table(plan: Plan, wrote: list[str]) -> Mapping[str, Any] | None:
    """The routing table `plan` wrote this round (None when it wrote none, or lost the CAS)."""
    if TABLE_KEY not in wrote:
        return None
    value = next((w.value for w in plan.writes if w.key == TABLE_KEY), None)
    return json.loads(value) if value is not None else None


def apply_plan(plan: Plan, *, leadership: Leadership, journal: Journal, actor: str, now: float,
               log: Callable[[str], None], wrote: list[str], journaled: list[str]) -> None:
    """Make `plan`'s writes as the leader (fenced; a lost compare-and-set skips that write's `then`:
    the next round re-reads), then its entries. Appends what it wrote and journaled as it goes."""
    fence = leadership.fence()

    def append(entries: tuple[Entry, ...], logs: tuple[str, ...]) -> None:
        for entry in entries:
            journal.append(actor=actor, action=entry.action, at=now, fence=fence, inputs=entry.inputs,
                           reason=entry.reason)
            journaled.append(entry.action.value)
        for line in logs:
            log(line)

    for write in plan.writes:
        if leadership.fenced_put(write.key, write.value, cas=write.cas):
            wrote.append(write.key)
            append(write.then, write.logs)
    append(plan.entries, plan.logs)


class Controller:
    """The decide-then-act driver of one controller process (see the module docstring)."""

    def __init__(self, *, topology: Topology, store: ControlStore, holder: str, prober: Prober,
                 settings: ControllerSettings = ControllerSettings(), api_url: str = "",
                 lease_ttl_s: float = LeadershipSettings.ttl_s, leadership: Leadership | None = None,
                 clock: Callable[[], float] = time.time, wait: Callable[[float], None] | None = None,
                 log: Callable[[str], None] = lambda line: print(line, flush=True),
                 calibration: Calibration | None = None, dns: DnsPublisher | None = None) -> None:
        self.topology, self.store, self.holder, self.settings = topology, store, holder, settings
        self.calibration = calibration
        """The capacity model's calibration; drill pre-checks ask capacity.absorb with it."""
        self.actor = f"controller:{holder}"
        self.api_url = api_url
        self.leadership = leadership or Leadership(store, holder=holder, ttl_s=lease_ttl_s)
        self.journal = Journal(store, clock=clock)
        self._prober, self._clock, self._log = prober, clock, log
        self.clock = clock
        self._wake = threading.Event()
        self._wait = wait or self._default_wait
        start = clock()
        self._health: dict[str, RegionHealth] = {r: initial_health(r, now=start) for r in sorted(topology.regions)}
        self._leading = False
        self._written_health: dict[str, tuple[str, ...]] = {}
        self._last_problems: tuple[str, ...] = ()
        self.last: StepResult | None = None
        self.store_error = ""
        """The last round's control-store error ("" when the store answered)."""
        self.dns = dns
        """Route 53 publishing (failover.dns_publish), when configured: the leader offers its table every round."""
        self.table_follower = KeyFollower(store, TABLE_KEY, poll_interval_s=settings.interval_s,
                                          on_change=self._table_followed)
        self.rollouts: Any = None
        """failover.rollout_driver.RolloutDriver, when configured: the leader drives bundle rollouts
        and publishes each geography's serving plan every round."""
        self.on_step: list[Callable[[StepResult], None]] = []
        """Called with every round's result (failover.controller_metrics observes latencies)."""

    # -- the round -------------------------------------------------------------------------------
    def step(self, now: float) -> StepResult:
        reports = dict(self._prober(now))
        try:
            stored = read_stored(self.store)
        except TemporaryError as exc:
            stored = None
            store_error = str(exc)
        else:
            store_error = "; ".join(stored.problems)
        unreachable = None if stored is not None else store_error
        base = stored or Stored(overrides=self.last.snapshot.overrides if self.last else Overrides())
        health = {}
        for region, previous in self._health.items():
            report = reports.get(region)
            probe = report.probe if report else Probe.failed(at=now, error="not probed")
            moved = with_outlier(transition(previous, probe, settings=self.settings, now=now), probe,
                                 settings=self.settings, now=now)
            health[region] = with_drains(moved, base.overrides, now=now)
        self._health = health
        snapshot = Snapshot(topology=self.topology, health=health, now=now, settings=self.settings,
                            demand_qps=demand_by_geography(self.topology, reports),
                            current_weights=weights_of(base.table), overrides=base.overrides,
                            failback=base.failback, replication_lag_s=lags_of(reports), calibration=self.calibration)
        decide_started = time.perf_counter()
        steering = decide(snapshot)
        problems = check_steering(snapshot, steering)
        decide_s = time.perf_counter() - decide_started
        leading = self.leadership.tick()
        took_over = leading and not self._leading
        wrote: list[str] = []
        journaled: list[str] = []
        error = store_error
        settled = leading
        if leading and stored is None:
            settled = self._leading  # take over (or act) once the store answers again
        elif leading:
            try:
                if took_over:
                    settled = False
                    self._take_over(now, wrote, journaled)
                    settled = True
                plan = plan_effects(
                    holder=self.holder, now=now, health=snapshot.health, steering=steering, problems=problems,
                    settings=self.settings, table=stored.table, table_version=stored.table_version,
                    overrides=stored.overrides, overrides_version=stored.overrides_version,
                    failback_raw=stored.failback_raw, took_over=took_over, written_health=self._written_health,
                    last_problems=self._last_problems)
                self._apply(plan, now, wrote, journaled)
                if self.rollouts is not None:
                    wrote += self.rollouts.step(store=self.store, fence=self.leadership.fence(), now=now, reports=reports)
                if self.dns is not None:  # idempotent: an unchanged table makes no Route 53 call
                    self.dns.offer(_written_table(plan, wrote) or stored.table)
            except (FenceRejected, NotLeader) as exc:
                error, leading, settled = f"deposed: {exc}", False, False
                self._log(f"DEPOSED id={self.holder} error={exc}")
            except (TemporaryError, PermanentError) as exc:
                error = f"store: {exc}"
                if isinstance(exc, TemporaryError):  # read, then could not write: as unreachable
                    unreachable = str(exc)
        self._note_store(unreachable)
        if self._leading and not leading:
            self._log(f"STANDBY id={self.holder} leader={self.leadership.state.leader}")
        self._leading = settled
        result = StepResult(now=now, leader=leading, health=health, reports=reports, snapshot=snapshot,
                            steering=steering, problems=problems, wrote=tuple(wrote), journaled=tuple(journaled),
                            error=error, decide_s=decide_s)
        self.last = result
        for observe in self.on_step:
            observe(result)
        return result

    def _note_store(self, error: str | None) -> None:
        """Log when the store stops or starts answering (so an operator sees why nothing is written)."""
        if error is not None and not self.store_error:
            self._log(f"STORE-UNAVAILABLE id={self.holder} writing=no error={error}")
        elif error is None and self.store_error:
            self._log(f"STORE-BACK id={self.holder} writing={'yes' if self.leadership.is_leader else 'no (standby)'}")
        self.store_error = error or ""

    def _table_followed(self, followed: Followed) -> None:
        if not self._leading and followed.value is not None:
            self._log(f"FOLLOW id={self.holder} table_store_version={followed.value.version} mode={followed.mode or 'read'}")

    def followed_table(self) -> Mapping[str, Any] | None:
        """The newest routing table the follower read (None before the first read or if unreadable)."""
        found = self.table_follower.state.value
        try:
            table = json.loads(found.value) if found else None
        except ValueError:
            return None
        return table if isinstance(table, Mapping) else None

    def store_status(self) -> dict[str, Any]:
        """Whether the store answers and whether this controller writes, for `status`."""
        followed = self.table_follower.state
        writing = bool(self.last and self.last.leader and not self.store_error)
        return {"reachable": not self.store_error, "error": self.store_error, "writing": writing,
                "table_follow": {"mode": followed.mode, "store_version": followed.value.version if followed.value else 0,
                                 "seen_at": followed.seen_at}}

    def _take_over(self, now: float, wrote: list[str], journaled: list[str]) -> None:
        state = self.leadership.state
        self._written_health.clear()
        self._last_problems = ()
        self._apply(plan_take_over(holder=self.holder, term=state.term or 0, api_url=self.api_url,
                                   ttl_s=self.leadership.ttl_s, now=now), now, wrote, journaled)

    def _apply(self, plan: Plan, now: float, wrote: list[str], journaled: list[str]) -> None:
        """Apply `plan` as the leader, then remember what it wrote and journaled."""
        start = len(wrote)
        try:
            apply_plan(plan, leadership=self.leadership, journal=self.journal, actor=self.actor, now=now,
                       log=self._log, wrote=wrote, journaled=journaled)
        finally:
            self._written_health.update({k: plan.health_marks[k] for k in wrote[start:] if k in plan.health_marks})
        self._last_problems = plan.last_problems

    # -- the loop --------------------------------------------------------------------------------
    def _default_wait(self, seconds: float) -> None:
        self._wake.wait(seconds)
        self._wake.clear()

    def poke(self) -> None:
        """Run the next round now (after an operator change) instead of at the next interval."""
        self._wake.set()

    def run(self, *, stop: Callable[[], bool]) -> None:
        """Step every interval until stop(); an unexpected error is logged and the loop goes on."""
        self.table_follower.start()
        if self.dns is not None:
            self.dns.start()
        try:
            while not stop():
                started = self._clock()
                try:
                    self.step(started)
                except Exception as exc:  # the loop must outlive one bad round
                    self._log(f"STEP-FAILED id={self.holder} error={type(exc).__name__}: {exc}")
                self._wait(max(0.0, self.settings.interval_s - (self._clock() - started)))
        finally:
            self.table_follower.stop()
            if self.dns is not None:
                self.dns.stop()
            self.leadership.resign()

    # -- operator changes ------------------------------------------------------------------------
    def snapshot_now(self, now: float | None = None) -> Snapshot:
        """A fresh snapshot at `now` with the store's overrides (TemporaryError before the first round)."""
        if self.last is None:
            raise TemporaryError("the controller has not finished its first probe round; retry in a second",
                                 delay=self.settings.interval_s)
        now = self._clock() if now is None else now
        stored = read_stored(self.store)
        health = {r: with_drains(h, stored.overrides, now=now) for r, h in self.last.health.items()}
        return replace(self.last.snapshot, now=now, health=health, overrides=stored.overrides,
                       failback=stored.failback, current_weights=weights_of(stored.table))

    def change_overrides(self, mutate: Callable[[Snapshot], Overrides], *, actor: str, action: Action,
                         reason: str, inputs: Mapping[str, Any]) -> Overrides:
        """Validate with `mutate` (a failover.safety function) on a fresh snapshot, write, journal.

        Raises InputError (nothing written) when `mutate` refuses, NotLeader on a standby."""
        if not reason.strip():
            raise InputError("reason", "must say why (a non-empty reason is journaled with every change)")

        def try_once() -> Overrides | Lost:
            fence = self.leadership.fence()
            current = self.store.get(OVERRIDES_KEY)
            snapshot = self.snapshot_now()
            new = mutate(snapshot)
            if not self.store.fenced_put(OVERRIDES_KEY, dump(new.to_dict()), fence=fence,
                                         cas=current.version if current else 0):
                return LOST
            self.journal.append(actor=actor, action=action, fence=fence, reason=reason.strip(),
                                inputs={**inputs, "overrides_after": new.to_dict(),
                                        "health": health_votes(snapshot.health)})
            self.poke()
            return new

        return OVERRIDES_RETRY.run(try_once)

    def read_table(self) -> Mapping[str, Any] | None:
        return read_stored(self.store).table

    def leader_info(self) -> dict[str, Any]:
        """Who leads (from the lease) and where its API is (from control/leader)."""
        lease = self.store.lease_holder(self.leadership.name)
        found = self.store.get(LEADER_KEY)
        info = json.loads(found.value) if found else {}
        holder = lease.holder if lease else None
        return {"holder": holder, "term": lease.term if lease else None,
                "api_url": info.get("api_url") if info.get("holder") == holder else None,
                "self": self.holder, "is_self": holder == self.holder and self.leadership.is_leader}
