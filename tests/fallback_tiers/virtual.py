"""Virtual time for the ladder's tests: a clock that moves only when a test says so."""
from __future__ import annotations


class VirtualClock:
    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        assert seconds >= 0
        self.now += seconds
