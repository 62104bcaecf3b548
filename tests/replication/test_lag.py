"""Pure RPO/lag math: stream ids, pair lag, budgets, percentiles."""
from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from regions.errors import InputError
from replication.lag import (
    ZERO, PairStatus, StreamId, pair_lag, parse_stream_id, percentile, stream_id_for_time, within_budget, worst_rpo,
)

ids = st.builds(StreamId, st.integers(min_value=0, max_value=2**45), st.integers(min_value=0, max_value=2**20))


@pytest.mark.parametrize(("raw", "expected"), [
    ("1700000000000-0", StreamId(1_700_000_000_000, 0)),
    (b"5-3", StreamId(5, 3)),
    ("42", StreamId(42, 0)),
    ("", ZERO),
    (None, ZERO),
    (StreamId(7, 1), StreamId(7, 1)),
])
def test_parse_stream_id(raw: object, expected: StreamId) -> None:
    assert parse_stream_id(raw) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize("raw", ["abc", "1-x", "-1-0", "1--2", "1.5-0"])
def test_parse_stream_id_refuses_garbage_naming_the_field(raw: str) -> None:
    with pytest.raises(InputError) as err:
        parse_stream_id(raw)
    assert err.value.field == "stream_id"


@given(ids)
def test_stream_id_round_trips_through_text(sid: StreamId) -> None:
    assert parse_stream_id(str(sid)) == sid


@given(ids, ids)
def test_order_matches_redis_order(a: StreamId, b: StreamId) -> None:
    assert (a < b) == ((a.ms, a.seq) < (b.ms, b.seq))


@pytest.mark.parametrize(("t", "expected"), [(0.0, StreamId(0, 0)), (1.5, StreamId(1500, 0)), (1_700_000_000.123, StreamId(1_700_000_000_123, 0))])
def test_stream_id_for_time(t: float, expected: StreamId) -> None:
    assert stream_id_for_time(t) == expected


@pytest.mark.parametrize("t", [-1.0, math.inf, math.nan])
def test_stream_id_for_time_refuses_bad_times(t: float) -> None:
    with pytest.raises(InputError):
        stream_id_for_time(t)


@pytest.mark.parametrize(("source_last", "position", "first", "count", "cap", "now", "seconds", "events", "capped"), [
    # caught up: equal positions
    (StreamId(1000, 0), StreamId(1000, 0), None, 0, 1000, 5.0, 0.0, 0, False),
    # destination ahead (e.g. source restored from an older AOF): still no loss pending
    (StreamId(1000, 0), StreamId(2000, 0), None, 0, 1000, 5.0, 0.0, 0, False),
    # 3 pending, the oldest acknowledged at t=1.0 s, now 4.5 s -> RPO 3.5 s
    (StreamId(3000, 0), StreamId(500, 0), StreamId(1000, 0), 3, 1000, 4.5, 3.5, 3, False),
    # count reached the cap: a lower bound
    (StreamId(9000, 0), StreamId(0, 0), StreamId(10, 0), 1000, 1000, 9.01, 9.0, 1000, True),
    # the pending entries were trimmed or deleted at the source: nothing left to lose
    (StreamId(3000, 0), StreamId(500, 0), None, 0, 1000, 9.0, 0.0, 0, False),
    # clocks: an entry "from the future" never gives a negative RPO
    (StreamId(3000, 0), StreamId(500, 0), StreamId(3000, 0), 1, None, 1.0, 0.0, 1, False),
])
def test_pair_lag_table(source_last: StreamId, position: StreamId, first: StreamId | None, count: int, cap: int | None,
                        now: float, seconds: float, events: int, capped: bool) -> None:
    lag = pair_lag(source_last=source_last, destination_position=position, first_pending=first, pending_count=count,
                   count_cap=cap, now=now)
    assert lag.lag_seconds == pytest.approx(seconds)
    assert (lag.lag_events, lag.events_capped, lag.caught_up) == (events, capped, events == 0)


@given(ids, ids, st.integers(min_value=1, max_value=5000), st.floats(min_value=0, max_value=1e10))
def test_rpo_is_never_negative_and_zero_exactly_when_caught_up(source_last: StreamId, position: StreamId, count: int, now: float) -> None:
    first = max(position, StreamId(position.ms, position.seq + 1))
    lag = pair_lag(source_last=source_last, destination_position=position, first_pending=first, pending_count=count,
                   count_cap=None, now=now)
    assert lag.lag_seconds >= 0.0
    assert lag.caught_up == (position >= source_last)


@given(ids, st.floats(min_value=0, max_value=1e9), st.floats(min_value=0, max_value=1e6))
def test_rpo_grows_with_time_while_behind(first: StreamId, now: float, later: float) -> None:
    kwargs = dict(source_last=StreamId(first.ms + 1, 0), destination_position=ZERO, first_pending=first, pending_count=1, count_cap=None)
    assert pair_lag(now=now + later, **kwargs).lag_seconds >= pair_lag(now=now, **kwargs).lag_seconds  # type: ignore[arg-type]


def test_negative_pending_count_is_refused() -> None:
    with pytest.raises(InputError):
        pair_lag(source_last=StreamId(2, 0), destination_position=ZERO, first_pending=StreamId(1, 0), pending_count=-1, count_cap=None, now=1.0)


def _pair(lag: float | None, error: str | None = None) -> PairStatus:
    return PairStatus(source="a", destination="b", geography="us", source_last_id=None, destination_last_id=None,
                      lag_seconds=lag, lag_events=None if lag is None else int(lag), error=error)


@pytest.mark.parametrize(("lags", "worst", "ok"), [
    ([0.0, 0.4], 0.4, True),
    ([0.0, 301.0], 301.0, False),
    ([None, 0.1], 0.1, False),   # an unreadable pair is not "within budget"
    ([], None, True),
])
def test_worst_rpo_and_budget(lags: list[float | None], worst: float | None, ok: bool) -> None:
    pairs = [_pair(x, None if x is not None else "down") for x in lags]
    assert worst_rpo(pairs) == worst
    assert within_budget(pairs, budget_s=300.0) is ok


@pytest.mark.parametrize(("values", "q", "expected"), [
    ([1.0], 99, 1.0), ([1.0, 2.0, 3.0, 4.0], 50, 2.5), ([3.0, 1.0, 2.0], 0, 1.0), ([3.0, 1.0, 2.0], 100, 3.0),
    (list(map(float, range(101))), 99, 99.0),
])
def test_percentile(values: list[float], q: float, expected: float) -> None:
    assert percentile(values, q) == pytest.approx(expected)


@given(st.lists(st.floats(min_value=-1e6, max_value=1e6), min_size=1), st.floats(min_value=0, max_value=100))
def test_percentile_lies_between_min_and_max(values: list[float], q: float) -> None:
    assert min(values) - 1e-6 <= percentile(values, q) <= max(values) + 1e-6


@pytest.mark.parametrize(("values", "q"), [([], 50), ([1.0], -1), ([1.0], 101)])
def test_percentile_refuses_bad_input(values: list[float], q: float) -> None:
    with pytest.raises(InputError):
        percentile(values, q)
