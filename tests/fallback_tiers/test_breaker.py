"""Circuit breaker: pure transitions as a table, invariants under random use, thread safety."""
from __future__ import annotations

import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fallback_tiers.breaker import (
    BreakerState, BreakerStatus, CircuitBreaker, admit, effective_status, on_abandon, on_failure, on_success, peek,
)
from fallback_tiers.settings import BreakerSettings
from tests.fallback_tiers.virtual import VirtualClock

S = BreakerSettings(failure_threshold=5, open_duration_s=5.0, min_failing_s=0.0)
CLOSED, OPEN, HALF = BreakerStatus.CLOSED, BreakerStatus.OPEN, BreakerStatus.HALF_OPEN


@pytest.mark.parametrize(
    ("state", "now", "allowed", "after"),
    [
        (BreakerState(), 0.0, True, BreakerState()),
        (BreakerState(CLOSED, failures=4), 9.0, True, BreakerState(CLOSED, failures=4)),
        (BreakerState(OPEN, 5, opened_at=10.0), 14.999, False, BreakerState(OPEN, 5, opened_at=10.0)),
        (BreakerState(OPEN, 5, opened_at=10.0), 15.0, True, BreakerState(HALF, 5, 10.0, trial_started_at=15.0)),
        (BreakerState(HALF, 5, 10.0, trial_started_at=15.0), 16.0, False, BreakerState(HALF, 5, 10.0, 15.0)),
        # a trial that never reported is replaced after another open period
        (BreakerState(HALF, 5, 10.0, trial_started_at=15.0), 20.0, True, BreakerState(HALF, 5, 10.0, 20.0)),
        (BreakerState(HALF, 5, 10.0, trial_started_at=None), 16.0, True, BreakerState(HALF, 5, 10.0, 16.0)),
    ],
)
def test_admit_table(state: BreakerState, now: float, allowed: bool, after: BreakerState) -> None:
    assert admit(state, now=now, settings=S) == (allowed, after)
    assert peek(state, now=now, settings=S) is allowed


@pytest.mark.parametrize(
    ("state", "now", "after"),
    [
        (BreakerState(), 1.0, BreakerState(CLOSED, failures=1, last_failure_at=1.0, failing_since=1.0)),
        (BreakerState(CLOSED, failures=3), 1.0, BreakerState(CLOSED, failures=4, last_failure_at=1.0, failing_since=1.0)),
        (BreakerState(CLOSED, failures=4), 7.0, BreakerState(OPEN, failures=5, opened_at=7.0)),
        (BreakerState(HALF, 5, 1.0, trial_started_at=6.0), 6.5, BreakerState(OPEN, 6, opened_at=6.5)),
        # a late failure while open does not extend the open period
        (BreakerState(OPEN, 5, opened_at=1.0), 3.0, BreakerState(OPEN, 6, opened_at=1.0)),
    ],
)
def test_failure_table(state: BreakerState, now: float, after: BreakerState) -> None:
    assert on_failure(state, now=now, settings=S) == after


@pytest.mark.parametrize(
    ("state", "admitted_at", "after"),
    [
        # admitted before the last counted failure: in flight during it, the same incident
        (BreakerState(CLOSED, failures=1, last_failure_at=2.0), 1.9, BreakerState(CLOSED, failures=1, last_failure_at=2.0)),
        (BreakerState(CLOSED, failures=4, last_failure_at=2.0), 1.0, BreakerState(CLOSED, failures=4, last_failure_at=2.0)),
        # admitted after it: new evidence
        (BreakerState(CLOSED, failures=1, last_failure_at=2.0, failing_since=2.0), 2.0,
         BreakerState(CLOSED, failures=2, last_failure_at=3.0, failing_since=2.0)),
        (BreakerState(CLOSED, failures=4, last_failure_at=2.0), 2.5, BreakerState(OPEN, failures=5, opened_at=3.0)),
        # the first failure always counts; so does a failed trial, however old its admission
        (BreakerState(), 0.0, BreakerState(CLOSED, failures=1, last_failure_at=3.0, failing_since=3.0)),
        (BreakerState(HALF, 5, 1.0, trial_started_at=2.9), 0.5, BreakerState(OPEN, 6, opened_at=3.0)),
    ],
)
def test_failures_count_once_per_incident(state: BreakerState, admitted_at: float, after: BreakerState) -> None:
    assert on_failure(state, now=3.0, settings=S, admitted_at=admitted_at) == after


def test_failures_must_last_min_failing_s_before_the_breaker_opens() -> None:
    cfg = BreakerSettings(failure_threshold=3, open_duration_s=5.0, min_failing_s=0.5)
    clock = VirtualClock(0.0)
    breaker = CircuitBreaker("redis", settings=cfg, clock=clock)
    for _ in range(10):  # a 0.2 s stall: ten failures one after the other, then a success
        breaker.record_failure(admitted_at=breaker.acquire())
        clock.advance(0.02)
    assert breaker.status is CLOSED and breaker.state.failures == 10
    breaker.record_success()
    assert breaker.state == BreakerState()
    down_at = clock.now
    for _ in range(30):  # a dependency that stays down: open once the streak is 0.5 s old
        breaker.record_failure(admitted_at=breaker.acquire())
        if breaker.status is OPEN:
            break
        clock.advance(0.05)
    assert breaker.status is OPEN and breaker.state.opened_at == pytest.approx(down_at + 0.5)


def test_a_stall_that_fails_every_open_call_is_one_failure_and_a_dead_dependency_still_opens() -> None:
    clock = VirtualClock()
    breaker = CircuitBreaker("redis", settings=S, clock=clock)
    admitted = [breaker.acquire() for _ in range(8)]  # eight requests in flight, then the process stalls
    clock.advance(0.06)
    for at in admitted:
        breaker.record_failure(admitted_at=at)
    assert breaker.status is CLOSED and breaker.state.failures == 1
    for _ in range(S.failure_threshold - 1):  # a dead Redis: each new call fails, one after the other
        at = breaker.acquire()
        clock.advance(0.001)
        breaker.record_failure(admitted_at=at)
    assert breaker.status is OPEN


@pytest.mark.parametrize(
    ("state", "after"),
    [
        (BreakerState(CLOSED, failures=4), BreakerState()),
        (BreakerState(HALF, 5, 1.0, trial_started_at=6.0), BreakerState()),
        (BreakerState(OPEN, 5, opened_at=1.0), BreakerState(OPEN, 5, opened_at=1.0)),
    ],
)
def test_success_table(state: BreakerState, after: BreakerState) -> None:
    assert on_success(state, now=9.0) == after


@pytest.mark.parametrize(
    ("state", "after"),
    [
        (BreakerState(HALF, 5, 1.0, trial_started_at=6.0), BreakerState(HALF, 5, 1.0, trial_started_at=None)),
        (BreakerState(CLOSED, failures=2), BreakerState(CLOSED, failures=2)),
        (BreakerState(OPEN, 5, opened_at=1.0), BreakerState(OPEN, 5, opened_at=1.0)),
    ],
)
def test_abandon_table(state: BreakerState, after: BreakerState) -> None:
    assert on_abandon(state) == after


@pytest.mark.parametrize(
    ("state", "now", "status"),
    [(BreakerState(), 0.0, CLOSED), (BreakerState(OPEN, 5, opened_at=0.0), 4.0, OPEN),
     (BreakerState(OPEN, 5, opened_at=0.0), 5.0, HALF), (BreakerState(HALF, 5, 0.0, 5.0), 5.0, HALF)],
)
def test_effective_status(state: BreakerState, now: float, status: BreakerStatus) -> None:
    assert effective_status(state, now=now, settings=S) is status


def test_lifecycle_on_virtual_time() -> None:
    clock = VirtualClock()
    breaker = CircuitBreaker("redis", settings=BreakerSettings(failure_threshold=3, open_duration_s=2.0, min_failing_s=0.0),
                             clock=clock)
    for _ in range(2):
        assert breaker.try_acquire()
        breaker.record_failure()
    assert breaker.status is CLOSED
    assert breaker.try_acquire()
    breaker.record_failure()
    assert breaker.status is OPEN and not breaker.would_allow() and not breaker.try_acquire()
    clock.advance(2.0)
    assert breaker.status is HALF and breaker.would_allow()
    assert breaker.try_acquire()           # the trial
    assert not breaker.try_acquire()       # only one
    breaker.record_failure()               # trial fails: open again for 2 s
    assert breaker.status is OPEN
    clock.advance(1.999)
    assert not breaker.try_acquire()
    clock.advance(0.001)
    assert breaker.try_acquire()
    breaker.record_success()
    assert breaker.status is CLOSED and breaker.state == BreakerState()
    assert "redis" in repr(breaker)


_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("advance"), st.floats(0, 3, allow_nan=False)),
        st.tuples(st.sampled_from(["acquire", "success", "failure", "abandon"]), st.just(0.0)),
    ),
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(ops=_OPS, threshold=st.integers(1, 4), open_s=st.sampled_from([0.5, 1.0, 2.5]))
def test_invariants_under_any_sequence(ops: list[tuple[str, float]], threshold: int, open_s: float) -> None:
    cfg = BreakerSettings(failure_threshold=threshold, open_duration_s=open_s, min_failing_s=0.0)
    clock = VirtualClock(0.0)
    breaker = CircuitBreaker("dep", settings=cfg, clock=clock)
    consecutive = 0
    for op, dt in ops:
        before = breaker.state
        if op == "advance":
            clock.advance(dt)
            continue
        if op == "acquire":
            peeked = breaker.would_allow()
            assert breaker.state == before  # peeking changes nothing
            allowed = breaker.try_acquire()
            assert allowed is peeked
            if before.status is OPEN and clock.now - before.opened_at < open_s:
                assert not allowed  # never through an open breaker before its time
            if before.status is HALF and before.trial_started_at is not None \
                    and clock.now - before.trial_started_at < open_s:
                assert not allowed  # one trial at a time
        elif op == "success":
            breaker.record_success()
            if before.status is not OPEN:
                consecutive = 0
                assert breaker.state == BreakerState()
        elif op == "failure":
            breaker.record_failure()
            consecutive += 1
            if before.status is CLOSED and consecutive >= threshold:
                assert breaker.state.status is OPEN and breaker.state.opened_at == clock.now
            if before.status is HALF:
                assert breaker.state.status is OPEN
        else:
            breaker.abandon()
        state = breaker.state
        assert state.status is not CLOSED or state.failures < threshold


def test_half_open_admits_exactly_one_of_many_threads() -> None:
    clock = VirtualClock()
    breaker = CircuitBreaker("ranker", settings=BreakerSettings(failure_threshold=1, open_duration_s=1.0, min_failing_s=0.0),
                             clock=clock)
    breaker.record_failure()
    clock.advance(1.0)
    barrier = threading.Barrier(16)
    results: list[bool] = []
    lock = threading.Lock()

    def contend() -> None:
        barrier.wait()
        allowed = breaker.try_acquire()
        with lock:
            results.append(allowed)

    threads = [threading.Thread(target=contend) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False] * 15 + [True]


def test_concurrent_failures_are_all_counted() -> None:
    breaker = CircuitBreaker("redis", settings=BreakerSettings(failure_threshold=1000), clock=VirtualClock())

    def fail() -> None:
        for _ in range(100):
            breaker.record_failure()

    threads = [threading.Thread(target=fail) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert breaker.state == BreakerState(CLOSED, failures=800, last_failure_at=1000.0, failing_since=1000.0)  # no admission time: all count
