"""Operator overrides: steer weights for a geography and drains of a region, each with an expiry.

Values only. Validation of what an operator asks for is failover.safety's job; these functions
return new `Overrides` and never change the one they are given. Time is passed in.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Mapping

from regions.errors import InputError


@dataclass(frozen=True, kw_only=True)
class SteerOverride:
    """Fixed weights for a geography's regions, set by an operator, until `expires_at`."""

    geography: str
    weights: Mapping[str, int]
    created_at: float
    expires_at: float
    reason: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "weights", MappingProxyType(dict(sorted(self.weights.items()))))

    def expired(self, now: float) -> bool:
        return now >= self.expires_at


@dataclass(frozen=True, kw_only=True)
class DrainOverride:
    """A region taken out of service by an operator, until `expires_at` (then it fails back gradually)."""

    region: str
    created_at: float
    expires_at: float
    reason: str = ""
    forced: bool = False

    def expired(self, now: float) -> bool:
        return now >= self.expires_at


@dataclass(frozen=True)
class Overrides:
    """All operator overrides: steer weights by geography, drains by region."""

    steer: Mapping[str, SteerOverride] = field(default_factory=dict)
    drains: Mapping[str, DrainOverride] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "steer", MappingProxyType(dict(sorted(self.steer.items()))))
        object.__setattr__(self, "drains", MappingProxyType(dict(sorted(self.drains.items()))))

    def active(self, now: float) -> Overrides:
        """The overrides that have not expired at `now`."""
        return Overrides(
            steer={g: o for g, o in self.steer.items() if not o.expired(now)},
            drains={r: o for r, o in self.drains.items() if not o.expired(now)},
        )

    def expired(self, now: float) -> tuple[SteerOverride | DrainOverride, ...]:
        """The overrides that have expired at `now`, steer first, each group sorted by name."""
        return (tuple(o for o in self.steer.values() if o.expired(now))
                + tuple(o for o in self.drains.values() if o.expired(now)))

    def steer_for(self, geography: str, *, now: float) -> SteerOverride | None:
        found = self.steer.get(geography)
        return found if found is not None and not found.expired(now) else None

    def is_drained(self, region: str, *, now: float) -> bool:
        found = self.drains.get(region)
        return found is not None and not found.expired(now)

    def with_steer(self, override: SteerOverride) -> Overrides:
        return replace(self, steer={**self.steer, override.geography: override})

    def without_steer(self, geography: str) -> Overrides:
        return replace(self, steer={g: o for g, o in self.steer.items() if g != geography})

    def with_drain(self, override: DrainOverride) -> Overrides:
        return replace(self, drains={**self.drains, override.region: override})

    def without_drain(self, region: str) -> Overrides:
        return replace(self, drains={r: o for r, o in self.drains.items() if r != region})

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, for the control store."""
        return {
            "steer": {g: {"weights": dict(o.weights), "created_at": o.created_at, "expires_at": o.expires_at,
                          "reason": o.reason} for g, o in self.steer.items()},
            "drains": {r: {"created_at": o.created_at, "expires_at": o.expires_at, "reason": o.reason,
                           "forced": o.forced} for r, o in self.drains.items()},
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Overrides:
        """Inverse of to_dict; a malformed document raises InputError naming the entry."""
        try:
            steer = {g: SteerOverride(geography=g, weights={r: int(w) for r, w in o["weights"].items()},
                                      created_at=float(o["created_at"]), expires_at=float(o["expires_at"]),
                                      reason=str(o.get("reason", "")))
                     for g, o in raw.get("steer", {}).items()}
            drains = {r: DrainOverride(region=r, created_at=float(o["created_at"]), expires_at=float(o["expires_at"]),
                                       reason=str(o.get("reason", "")), forced=bool(o.get("forced", False)))
                      for r, o in raw.get("drains", {}).items()}
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise InputError("overrides", f"malformed overrides document ({exc!r}); expected the form of "
                                          "Overrides.to_dict()") from exc
        return cls(steer=steer, drains=drains)
