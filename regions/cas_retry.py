"""The one compare-and-swap retry policy: how often a read-modify-write may lose its race, how long
to wait between tries, and what to raise when it has lost them all (a value, tenacity-style).

    policy = CasRetry(attempts=5, exhausted=lambda n: TemporaryError(f"... after {n} attempts"))
    value = policy.run(try_once)

`try_once()` reads, decides and writes with compare-and-set; it returns the result when its write
went through, or `LOST` when another writer came first (the next try re-reads). Any exception it
raises propagates at once: only a lost race is retried. After `attempts` lost races `run` raises
`exhausted(attempts)`, so no loop can give up silently. The wait before try k+1 is
`min(max_backoff_s, backoff_s * multiplier**(k-1))` (0 when backoff_s is 0).

Every CAS loop in the tree (the controller's overrides, the journal's append and head, chaos's
partitions, the S3 pointer, Consul's unconditional delete, the tombstone-checked event append) runs under a policy of this shape.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Final, TypeVar

from regions.errors import InputError

T = TypeVar("T")


class Lost:
    __slots__ = ()

    def __repr__(self) -> str:
        return "LOST"


LOST: Final = Lost()
"""What one try returns when its compare-and-set lost the race (the one value of `Lost`)."""


@dataclass(frozen=True, kw_only=True)
class CasRetry:
    attempts: int
    exhausted: Callable[[int], Exception]
    """The error to raise after `attempts` lost races (given the count); name the key and what to do."""
    backoff_s: float = 0.0
    multiplier: float = 2.0
    max_backoff_s: float = 0.2
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False, repr=False)

    def __post_init__(self) -> None:
        if isinstance(self.attempts, bool) or not isinstance(self.attempts, int) or self.attempts < 1:
            raise InputError("attempts", f"must be an integer >= 1, got {self.attempts!r}")
        for name in ("backoff_s", "max_backoff_s"):
            if getattr(self, name) < 0:
                raise InputError(name, f"must be >= 0, got {getattr(self, name)!r}")
        if self.multiplier < 1:
            raise InputError("multiplier", f"must be >= 1, got {self.multiplier!r}")

    def wait_before(self, attempt: int) -> float:
        """Seconds to wait before try number `attempt` (1-based; the first try never waits)."""
        if attempt <= 1 or self.backoff_s == 0:
            return 0.0
        return min(self.max_backoff_s, self.backoff_s * self.multiplier ** (attempt - 2))

    def run(self, try_once: Callable[[], T | Lost]) -> T:
        for attempt in range(1, self.attempts + 1):
            wait = self.wait_before(attempt)
            if wait:
                self.sleep(wait)
            result = try_once()
            if not isinstance(result, Lost):
                return result
        raise self.exhausted(self.attempts)
