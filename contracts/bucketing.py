"""Consistent bucketing of users: the one function canaries and experiments share.

    bucket(user_id, salt)            -> 0 .. BUCKETS-1, sha256 of salt + NUL + user id
    in_share(user_id, salt, percent) -> True for `percent` % of users (0..100, 0.01 steps); monotone
                                        in `percent` for one salt, so a 10 % canary keeps every
                                        user of its 1 % stage
    arm_of(user_id, experiment, arms)-> the arm a user sees, by the arms' weights, salted by the
                                        experiment id (two experiments bucket independently)

Deterministic across processes, languages and restarts (no Python hash()). Pure.
"""
from __future__ import annotations

import hashlib
from typing import Sequence

from regions.errors import InputError

BUCKETS = 10_000
"""Resolution of a share: 0.01 %."""


def bucket(user_id: str, salt: str) -> int:
    digest = hashlib.sha256(f"{salt}\x00{user_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


def check_percent(percent: float, field: str = "percent") -> float:
    if isinstance(percent, bool) or not isinstance(percent, (int, float)) or not 0 <= percent <= 100:
        raise InputError(field, f"{percent!r} is not a share; use a number of percent in 0..100")
    return float(percent)


def in_share(user_id: str, salt: str, percent: float) -> bool:
    return bucket(user_id, salt) < round(check_percent(percent) * BUCKETS / 100)


def arm_of(user_id: str, experiment: str, arms: Sequence[tuple[str, float]]) -> str:
    """The arm of `user_id` among (name, weight) pairs (weights > 0, any total)."""
    if not arms:
        raise InputError("arms", "an experiment needs at least one arm")
    total = sum(w for _, w in arms)
    if total <= 0 or any(w <= 0 for _, w in arms):
        raise InputError("arms", "every arm's weight must be > 0")
    point = bucket(user_id, f"experiment:{experiment}") / BUCKETS * total
    edge = 0.0
    for name, weight in arms:
        edge += weight
        if point < edge:
            return name
    return arms[-1][0]


__all__ = ["BUCKETS", "arm_of", "bucket", "check_percent", "in_share"]
