"""The time constants of a data set: how fast interest fades, how fast popularity forgets, how long
a segment list is. A data-set adapter declares them (serving/datasets/, a CSV directory's
time_constants.json), training uses them and writes them into the bundle (time_constants.json),
and the serving side reads them back from there:

    interest_half_life_days     user category affinity (serving.user_state): training's replay,
                                the feature updater (which reads them from the region's Redis key
                                regions.redis_keys.TIME_CONSTANTS, written by the cell that loaded the
                                bundle) and the ranker's features all decay with the same half-life
    popularity_half_life_days   the bundle's popularity and segment lists (serving.training)
    segment_list_length         items per segment list (segments.json; the segment tier and the
                                segment candidate source read from it)

The defaults are the synthetic marketplace's (3 days, 7 days, 100 items).
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from typing import Any, Mapping

from regions.errors import InputError

DAY = 86400.0
FILE = "time_constants.json"


@dataclass(frozen=True)
class TimeConstants:
    interest_half_life_days: float = 3.0
    """Category interest fades over days, not minutes (a marketplace session's intent)."""
    popularity_half_life_days: float = 7.0
    """Popularity follows this week's demand, not last month's."""
    segment_list_length: int = 100
    """The segment tier shows 10-20 of them; 100 leaves room for exclusions and stock."""

    def __post_init__(self) -> None:
        for name in ("interest_half_life_days", "popularity_half_life_days"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                    or not 1 / 24 <= value <= 3650:
                raise InputError(f"time_constants.{name}", f"must be a number of days in [1/24, 3650], got {value!r}")
        n = self.segment_list_length
        if isinstance(n, bool) or not isinstance(n, int) or not 10 <= n <= 10_000:
            raise InputError("time_constants.segment_list_length", f"must be a whole number in [10, 10000], got {n!r}")

    @property
    def interest_half_life_s(self) -> float:
        return self.interest_half_life_days * DAY

    def dumps(self) -> str:
        return json.dumps(asdict(self), indent=1, sort_keys=True)

    @staticmethod
    def from_json(raw: Any) -> "TimeConstants":
        """From a decoded JSON object; InputError naming the field for an unknown or bad one."""
        if not isinstance(raw, Mapping):
            raise InputError("time_constants", f"must be a JSON object, got {type(raw).__name__}")
        allowed = set(TimeConstants.__dataclass_fields__)
        unknown = sorted(set(raw) - allowed)
        if unknown:
            raise InputError("time_constants", f"unknown field(s) {unknown}; allowed: {', '.join(sorted(allowed))}")
        return TimeConstants(**dict(raw))

    @staticmethod
    def loads(text: str) -> "TimeConstants":
        try:
            raw = json.loads(text)
        except ValueError as exc:
            raise InputError("time_constants", f"is not JSON: {exc}") from None
        return TimeConstants.from_json(raw)


__all__ = ["FILE", "TimeConstants"]
