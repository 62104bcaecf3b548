"""The degradation ladder's tiers: the one `Tier` enum and the one order of their names.

    FULL        full ranking (retrieval + ranker + features)          needs a user, costs most
    CACHED      the user's last full slate, from Redis with a TTL     needs a user
    SEGMENT     the list of the user's segment, in memory             needs a user (segment key)
    POPULARITY  global popularity, in memory                          the floor: never skipped

The names are the cell answer's `tier`, the routing table's `max_tier`, the capacity
calibration's keys and the `tier` label of the cell's metrics.
"""
from __future__ import annotations

from enum import StrEnum

from regions.errors import InputError


class Tier(StrEnum):
    FULL = "full"
    CACHED = "cached"
    SEGMENT = "segment"
    POPULARITY = "popularity"

    @property
    def rank(self) -> int:
        """0 for FULL ... 3 for POPULARITY: a lower rank is tried first."""
        return _ORDER.index(self)

    @property
    def needs_user(self) -> bool:
        """Personal tiers need a user id; anonymous requests (cross-geography) skip them."""
        return self is not Tier.POPULARITY

    @property
    def is_floor(self) -> bool:
        return self is Tier.POPULARITY

    @classmethod
    def ladder(cls) -> tuple["Tier", ...]:
        """Every tier, most expensive first."""
        return _ORDER

    @classmethod
    def parse(cls, value: str, *, field: str = "max_tier") -> "Tier":
        """The tier named `value` (as in the cell answer); InputError naming `field` otherwise."""
        try:
            return cls(value.strip().lower())
        except ValueError as exc:
            allowed = ", ".join(t.value for t in _ORDER)
            raise InputError(field, f"{value!r} is not a tier; use one of {allowed}.") from exc


_ORDER: tuple[Tier, ...] = (Tier.FULL, Tier.CACHED, Tier.SEGMENT, Tier.POPULARITY)

TIER_NAMES: tuple[str, ...] = tuple(t.value for t in _ORDER)
"""("full", "cached", "segment", "popularity"): most expensive (best) first."""
