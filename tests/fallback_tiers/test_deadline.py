"""Deadline arithmetic on virtual time, stage budgets, and the edge's X-Deadline-Ms header."""
from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fallback_tiers.deadline import Deadline, deadline_seconds, stage_budget
from regions.errors import InputError
from tests.fallback_tiers.virtual import VirtualClock


def test_deadline_counts_down_on_the_injected_clock() -> None:
    clock = VirtualClock()
    deadline = Deadline.start(0.150, clock=clock)
    assert deadline.remaining() == pytest.approx(0.150)
    assert not deadline.expired()
    clock.advance(0.100)
    assert deadline.remaining() == pytest.approx(0.050)
    assert deadline.elapsed() == pytest.approx(0.100)
    assert deadline.budget(0.100, reserve_s=0.010) == pytest.approx(0.040)
    clock.advance(0.060)
    assert deadline.remaining() == 0.0
    assert deadline.expired()
    assert deadline.budget(0.100) == 0.0


def test_now_argument_overrides_the_clock() -> None:
    deadline = Deadline(started_at=10.0, total_s=1.0, clock=lambda: 0.0)
    assert deadline.remaining(now=10.25) == pytest.approx(0.75)
    assert deadline.expired(now=11.0)
    assert not deadline.expired(now=10.999)


@pytest.mark.parametrize("total", [-0.001, math.inf, math.nan])
def test_bad_total_is_refused(total: float) -> None:
    with pytest.raises(InputError):
        Deadline(started_at=0.0, total_s=total)


@pytest.mark.parametrize(
    ("remaining", "cap", "reserve", "expected"),
    [
        (0.150, 0.100, 0.002, 0.100),   # the cap binds
        (0.050, 0.100, 0.002, 0.048),   # the deadline binds, less the reserve
        (0.001, 0.100, 0.002, 0.0),     # less than the reserve: nothing
        (0.0, 0.005, 0.0, 0.0),
        (1.0, 0.0, 0.0, 0.0),
    ],
)
def test_stage_budget_table(remaining: float, cap: float, reserve: float, expected: float) -> None:
    assert stage_budget(remaining_s=remaining, cap_s=cap, reserve_s=reserve) == pytest.approx(expected)


@given(
    remaining=st.floats(0, 10, allow_nan=False),
    cap=st.floats(0, 10, allow_nan=False),
    reserve=st.floats(0, 10, allow_nan=False),
)
def test_stage_budget_never_exceeds_cap_or_what_is_left(remaining: float, cap: float, reserve: float) -> None:
    budget = stage_budget(remaining_s=remaining, cap_s=cap, reserve_s=reserve)
    assert 0.0 <= budget <= cap
    assert budget <= max(0.0, remaining - reserve)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(None, 0.150), ("", 0.150), ("120", 0.120), ("0", 0.0), ("37.5", 0.0375), ("5000", 0.200)],
)
def test_header_parsing(raw: str | None, expected: float) -> None:
    assert deadline_seconds(raw, default_s=0.150, max_s=0.200) == pytest.approx(expected)


@pytest.mark.parametrize("raw", ["soon", "-1", "inf", "nan", "1e999"])
def test_bad_header_names_it(raw: str) -> None:
    with pytest.raises(InputError) as info:
        deadline_seconds(raw, default_s=0.150, max_s=0.200)
    assert info.value.field == "X-Deadline-Ms"
