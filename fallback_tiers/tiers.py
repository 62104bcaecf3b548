"""The vocabulary of the degradation ladder: tiers, skip reasons, requests, tier outputs, metrics.

    FULL        full ranking (retrieval + ranker + features)          needs a user, costs most
    CACHED      the user's last full slate, from Redis with a TTL     needs a user
    SEGMENT     the list of the user's segment, in memory             needs a user (segment key)
    POPULARITY  global popularity, in memory                          the floor: never skipped

`Tier.rank` is the order (0 = most expensive, best); `SkipReason` is a small closed set so that
Prometheus counters labelled (tier, reason) stay bounded: 4 tiers x 9 reasons at most.

Nothing here knows FAISS, LightGBM or Redis; the ladder (fallback_tiers.ladder) is handed each
tier as a callable returning a `TierOutput`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Iterable, Sequence

from contracts.cell_api import MAX_COUNT
from contracts.tiers import Tier
from regions.errors import InputError, TemporaryError

if TYPE_CHECKING:  # prometheus_client is imported lazily: nothing is registered at import time
    from prometheus_client import CollectorRegistry, Counter





class SkipReason(StrEnum):
    """Why a tier above the serving one did not serve. Closed set: these are metric labels."""

    MAX_TIER = "max_tier"
    """The request allowed only cheaper tiers (overload shedding at the edge)."""
    ANONYMOUS = "anonymous"
    """No user id (anonymous cross-geography request): personal tiers are not tried."""
    NOT_CONFIGURED = "not_configured"
    """This process was given no callable for the tier."""
    BREAKER_OPEN = "breaker_open"
    """A dependency's circuit breaker refused the call; costs no time."""
    BUDGET = "budget"
    """What is left of the deadline is below the tier's minimum useful budget."""
    TIMEOUT = "timeout"
    """The tier raised TimeoutError, or came back late with the deadline already spent."""
    ERROR = "error"
    """The tier (or the rules on its output) raised any other exception."""
    EMPTY = "empty"
    """Nothing left after the rules (a cache miss, an unknown segment, all out of stock)."""
    TOO_FEW = "too_few"
    """Some items, but fewer than the settings' minimum fill after the rules and backfill."""


class DependencyFailed(TemporaryError):
    """Raised by a tier callable to blame one named dependency (e.g. "redis") for its failure.

    The ladder then records the failure on that dependency's breaker only; any other exception is
    blamed on every dependency the tier declares.
    """

    def __init__(self, dependency: str, message: str, *, delay: float = 1.0) -> None:
        super().__init__(f"{dependency}: {message}", delay=delay)
        self.dependency = dependency


@dataclass(frozen=True)
class ScoredItem:
    item_id: str
    score: float


@dataclass(frozen=True)
class TierOutput:
    """What a tier callable returns: its ranked items, and a ranked reserve for backfill.

    The rules drop out-of-stock items, duplicates and over-represented categories; the reserve
    (further down the same list) keeps the slate at its length.
    """

    items: tuple[ScoredItem, ...]
    reserve: tuple[ScoredItem, ...] = ()

    @classmethod
    def from_ids(cls, ids: Sequence[str], *, count: int) -> "TierOutput":
        """A ranked id list (segment, popularity) split into items and reserve; score = 1/(1+rank)."""
        scored = tuple(ScoredItem(i, 1.0 / (1 + n)) for n, i in enumerate(ids))
        return cls(items=scored[:count], reserve=scored[count:])


@dataclass(frozen=True)
class TierRequest:
    """One homepage request as the ladder sees it."""

    user_id: str | None
    """None for an anonymous request: only the popularity floor may serve it."""
    count: int
    max_tier: Tier = Tier.FULL
    """The most expensive tier allowed; the edge lowers it under overload."""

    def __post_init__(self) -> None:
        if isinstance(self.count, bool) or not isinstance(self.count, int) or not 1 <= self.count <= MAX_COUNT:
            raise InputError("count", f"{self.count!r} is not allowed; ask for 1 to {MAX_COUNT} items.")
        if self.user_id is not None and not self.user_id.strip():
            raise InputError("user_id", "an empty user id is not allowed; omit it for an anonymous request.")
        if not isinstance(self.max_tier, Tier):
            raise InputError("max_tier", f"{self.max_tier!r} is not a Tier; use Tier.parse() on text.")

    @property
    def anonymous(self) -> bool:
        return self.user_id is None


def min_items(count: int, fill_fraction: float) -> int:
    """Fewest items a non-floor tier must keep after the rules to serve (at least 1)."""
    return max(1, math.ceil(count * fill_fraction - 1e-9))


# -- metrics ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class TierCounters:
    """The two counters the ladder feeds. Build them with `create` on the registry you own."""

    served: "Counter"
    """shopnow_tier_served_total{tier}"""
    skipped: "Counter"
    """shopnow_tier_skipped_total{tier, reason}"""

    @classmethod
    def create(cls, registry: "CollectorRegistry", *, prefix: str = "shopnow") -> "TierCounters":
        """Register the counters on `registry` (never the global one) with every label pre-set to 0."""
        from prometheus_client import Counter

        served = Counter(f"{prefix}_tier_served_total", "Requests served, by tier.", ["tier"], registry=registry)
        skipped = Counter(
            f"{prefix}_tier_skipped_total", "Tiers skipped before the serving one, by tier and reason.",
            ["tier", "reason"], registry=registry,
        )
        for tier in Tier.ladder():
            served.labels(tier=tier.value)
            for reason in SkipReason:
                skipped.labels(tier=tier.value, reason=reason.value)
        return cls(served=served, skipped=skipped)


def record_tiers(counters: TierCounters, *, served: Tier, skipped: Iterable[tuple[Tier, SkipReason]]) -> None:
    """Count one answer: the tier that served, and each higher tier's skip reason."""
    counters.served.labels(tier=served.value).inc()
    for tier, reason in skipped:
        counters.skipped.labels(tier=tier.value, reason=reason.value).inc()
