"""A request deadline with an injected clock, and the budget it leaves for one stage.

    deadline = Deadline.start(0.150, clock=time.monotonic)   # at the edge of the cell
    budget = deadline.budget(0.100, reserve_s=0.005)         # what the full-ranking stage may use
    deadline.remaining(), deadline.expired()

The clock is a constructor argument so that tests drive virtual time; `now=` overrides it for
pure callers that already hold a timestamp. Seconds everywhere; the edge's header is milliseconds.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

from regions.errors import InputError

Clock = Callable[[], float]

DEADLINE_HEADER = "X-Deadline-Ms"


@dataclass(frozen=True)
class Deadline:
    started_at: float
    total_s: float
    clock: Clock = field(default=time.monotonic, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not math.isfinite(self.total_s) or self.total_s < 0:
            raise InputError("deadline", f"{self.total_s!r} s is not a deadline; give a finite number >= 0.")

    @classmethod
    def start(cls, total_s: float, *, clock: Clock = time.monotonic) -> "Deadline":
        """A deadline of `total_s` seconds from the clock's now."""
        return cls(started_at=clock(), total_s=total_s, clock=clock)

    @property
    def expires_at(self) -> float:
        return self.started_at + self.total_s

    def now(self) -> float:
        return self.clock()

    def remaining(self, now: float | None = None) -> float:
        """Seconds left, never negative."""
        t = self.clock() if now is None else now
        return max(0.0, self.expires_at - t)

    def elapsed(self, now: float | None = None) -> float:
        t = self.clock() if now is None else now
        return max(0.0, t - self.started_at)

    def expired(self, now: float | None = None) -> bool:
        return self.remaining(now) <= 0.0

    def budget(self, cap_s: float, *, reserve_s: float = 0.0, now: float | None = None) -> float:
        """What one stage may spend: at most `cap_s`, keeping `reserve_s` for the stages after it."""
        return stage_budget(remaining_s=self.remaining(now), cap_s=cap_s, reserve_s=reserve_s)


def stage_budget(*, remaining_s: float, cap_s: float, reserve_s: float = 0.0) -> float:
    """Pure: min(cap, remaining - reserve), never negative."""
    return max(0.0, min(cap_s, remaining_s - reserve_s))


def deadline_seconds(raw: str | None, *, default_s: float, max_s: float) -> float:
    """Parse the edge's X-Deadline-Ms header into seconds; absent -> `default_s`, capped at `max_s`.

    A value of 0 is allowed (the edge has nothing left: only the popularity floor will answer).
    """
    if raw is None or not raw.strip():
        return default_s
    try:
        ms = float(raw)
    except ValueError as exc:
        raise InputError(DEADLINE_HEADER, f"{raw!r} is not a number of milliseconds; send e.g. 120.") from exc
    if not math.isfinite(ms) or ms < 0:
        raise InputError(DEADLINE_HEADER, f"{raw!r} is not allowed; send a finite number of milliseconds >= 0.")
    return min(ms / 1000.0, max_s)
