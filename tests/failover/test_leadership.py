"""Leader election: in-process with a controlled clock, then two (three) real processes."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from failover.control_store import ControlStore, FenceRejected, Lease
from failover.journal import Journal
from failover.leadership import Leadership, LeaderState, NotLeader
from failover.sqlite_store import SqliteStore
from regions.errors import InputError, TemporaryError
from regions.processes import ManagedProcess, python_module_argv, spawn, wait_until

REPO = Path(__file__).resolve().parents[2]
TTL = 3.0


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def stores(tmp_path: Path, clock: Clock) -> tuple[SqliteStore, SqliteStore]:
    """Two connections to one file, as two controller processes would have."""
    a, b = SqliteStore(tmp_path / "c.db", clock=clock), SqliteStore(tmp_path / "c.db", clock=clock)
    yield a, b
    a.close()
    b.close()


def _pair(stores: tuple[SqliteStore, SqliteStore], clock: Clock) -> tuple[Leadership, Leadership]:
    return (Leadership(stores[0], holder="A", ttl_s=TTL, clock=clock),
            Leadership(stores[1], holder="B", ttl_s=TTL, clock=clock))


def test_first_campaigner_leads_and_the_other_stands_by(stores: tuple[SqliteStore, SqliteStore], clock: Clock) -> None:
    a, b = _pair(stores, clock)
    assert a.tick() is True and b.tick() is False
    assert a.state.term == 1 and b.state.leader == "A" and not b.state.is_leader
    for _ in range(10):  # A renews every ttl/3; B never gets in
        clock.advance(a.interval_s)
        assert a.tick() is True and b.tick() is False
    assert a.state.term == 1


def test_standby_takes_over_when_the_leader_stops_renewing(stores: tuple[SqliteStore, SqliteStore],
                                                           clock: Clock) -> None:
    a, b = _pair(stores, clock)
    a.tick()
    old_fence = a.fence()
    clock.advance(TTL * 0.9)
    assert b.tick() is False  # not yet expired
    clock.advance(TTL * 0.2)
    assert a.is_leader is False  # its own clock says the lease ran out
    with pytest.raises(NotLeader):
        a.fenced_put("weights", "late")
    assert b.tick() is True and b.state.term == 2
    with pytest.raises(FenceRejected):  # even a write that slips past the local check is refused
        stores[0].fenced_put("weights", "late", fence=old_fence)
    assert b.fenced_put("weights", "fresh") is True
    assert a.tick() is False and a.state.leader == "B"


def test_resign_hands_over_without_waiting_for_the_ttl(stores: tuple[SqliteStore, SqliteStore], clock: Clock) -> None:
    a, b = _pair(stores, clock)
    a.tick()
    a.resign()
    assert not a.is_leader and b.tick() is True


class FlakyStore(ControlStore):
    """The real SQLite store, made unreachable on demand (as a dead Consul agent would be)."""

    def __init__(self, inner: SqliteStore) -> None:
        self.inner, self.down = inner, False

    def _check(self) -> None:
        if self.down:
            raise TemporaryError("store unreachable (test)")

    def get(self, key):  # type: ignore[no-untyped-def]
        self._check(); return self.inner.get(key)

    def put(self, key, value, *, cas=None):  # type: ignore[no-untyped-def]
        self._check(); return self.inner.put(key, value, cas=cas)

    def delete(self, key, *, cas=None):  # type: ignore[no-untyped-def]
        self._check(); return self.inner.delete(key, cas=cas)

    def list(self, prefix):  # type: ignore[no-untyped-def]
        self._check(); return self.inner.list(prefix)

    def acquire_lease(self, name, holder, ttl_s):  # type: ignore[no-untyped-def]
        self._check(); return self.inner.acquire_lease(name, holder, ttl_s)

    def renew_lease(self, name, holder, ttl_s):  # type: ignore[no-untyped-def]
        self._check(); return self.inner.renew_lease(name, holder, ttl_s)

    def release_lease(self, name, holder):  # type: ignore[no-untyped-def]
        self._check(); return self.inner.release_lease(name, holder)

    def lease_holder(self, name) -> Lease | None:  # type: ignore[no-untyped-def]
        self._check(); return self.inner.lease_holder(name)

    def fenced_put(self, key, value, *, fence, cas=None):  # type: ignore[no-untyped-def]
        self._check(); return self.inner.fenced_put(key, value, fence=fence, cas=cas)


def test_leader_steps_down_by_its_own_clock_when_the_store_is_unreachable(
        stores: tuple[SqliteStore, SqliteStore], clock: Clock) -> None:
    flaky = FlakyStore(stores[0])
    a = Leadership(flaky, holder="A", ttl_s=TTL, clock=clock)
    assert a.tick() is True
    flaky.down = True
    clock.advance(TTL / 2)
    assert a.tick() is True and a.state.error is not None  # still inside its last lease
    clock.advance(TTL / 2)
    assert a.tick() is False and a.is_leader is False
    flaky.down = False
    assert a.tick() is True and a.state.term == 2  # the lease had expired: a new term


def test_run_ticks_every_third_of_the_ttl_and_releases_on_stop(stores: tuple[SqliteStore, SqliteStore],
                                                               clock: Clock) -> None:
    changes: list[tuple[bool, bool]] = []
    sleeps: list[float] = []
    leading: list[bool] = []

    def on_change(old: LeaderState, new: LeaderState) -> None:
        changes.append((old.is_leader, new.is_leader))

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        clock.advance(seconds)

    a = Leadership(stores[0], holder="A", ttl_s=TTL, clock=clock, sleep=sleep, on_change=on_change)
    a.run(stop=lambda: len(sleeps) >= 5, after_tick=leading.append)
    assert sleeps == [pytest.approx(TTL / 3)] * 5
    assert leading == [True] * 5
    assert changes == [(False, True), (True, False)]
    assert stores[1].lease_holder("controller") is None  # released on the way out


@pytest.mark.parametrize(("kwargs", "field"), [({"ttl_s": 0}, "ttl_s"), ({"holder": ""}, "holder"),
                                               ({"renew_fraction": 1.0}, "renew_fraction"),
                                               ({"name": "/abs"}, "name")])
def test_bad_settings_name_the_field(stores: tuple[SqliteStore, SqliteStore], kwargs: dict[str, object],
                                     field: str) -> None:
    with pytest.raises(InputError) as info:
        Leadership(stores[0], **{"holder": "A", **kwargs})  # type: ignore[arg-type]
    assert info.value.field == field


# -- real processes ------------------------------------------------------------------------------
def _start(name: str, url: str, ttl: float, log_dir: Path) -> ManagedProcess:
    argv = python_module_argv("failover.election_main", "--store", url, "--id", name, "--ttl", str(ttl))
    return spawn(f"controller-{name}", argv, log_dir=log_dir, cwd=REPO)


def _says(proc: ManagedProcess, text: str) -> bool:
    return text in proc.log_tail(200)


def _takeover(store: SqliteStore, new: str, *, bound: float) -> float:
    started = time.monotonic()
    wait_until(lambda: (lease := store.lease_holder("controller")) is not None and lease.holder == new,
               timeout=bound, interval=0.02, what=f"{new} to take the lease")
    return time.monotonic() - started


def test_standby_process_takes_over_after_sigkill_and_after_sigterm(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    ttl = 2.0
    url = f"sqlite://{tmp_path / 'control.db'}"
    observer = SqliteStore(tmp_path / "control.db")  # wall clock, like the processes
    procs = [_start("A", url, ttl, tmp_path)]
    try:
        wait_until(lambda: _says(procs[0], "LEADER id=A"), timeout=30, what="A to lead")
        procs.append(_start("B", url, ttl, tmp_path))
        wait_until(lambda: _says(procs[1], "STANDBY id=B leader=A"), timeout=30, what="B to stand by")
        term_a = observer.lease_holder("controller").term  # type: ignore[union-attr]

        procs[0].kill()  # SIGKILL: no release, B must wait for the lease to run out
        after_kill = _takeover(observer, "B", bound=5 * ttl)
        procs.append(_start("C", url, ttl, tmp_path))
        wait_until(lambda: _says(procs[2], "STANDBY id=C leader=B"), timeout=30, what="C to stand by")
        wait_until(lambda: _says(procs[1], "LEADER id=B"), timeout=30, what="B to log its leadership")

        procs[1].stop()  # SIGTERM: B releases the lease on its way out
        after_term = _takeover(observer, "C", bound=5 * ttl)
        assert procs[1].popen.returncode == 0 and _says(procs[1], "STOPPED id=B")
        with capsys.disabled():
            print(f"\n[leadership] lease TTL {ttl:.1f}s: takeover after SIGKILL {after_kill:.2f}s, "
                  f"after SIGTERM {after_term:.2f}s")

        wait_until(lambda: json.loads(observer.get("heartbeats/controller").value)["holder"] == "C",  # type: ignore[union-attr]
                   timeout=30, what="C's heartbeat")
        beat = json.loads(observer.get("heartbeats/controller").value)  # type: ignore[union-attr]
        assert beat["term"] > term_a
        journal = Journal(observer)
        wait_until(lambda: [e.actor for e in journal.entries(limit=1)] == ["controller:C"], timeout=30,
                   what="C's leader_change entry")
        entries = journal.entries()  # A, B, C; more only if a busy machine made a leader miss renewals
        actors = [e.actor for e in entries]
        assert actors[0] == "controller:A" and "controller:B" in actors and actors[-1] == "controller:C"
        assert {e.action for e in entries} == {"leader_change"}
        terms = [e.term for e in entries]
        assert terms == sorted(set(terms))  # type: ignore[type-var]
        assert journal.verify().ok
    finally:
        for proc in procs:
            proc.kill()
        observer.close()
