"""Adapter: the seeded synthetic marketplace (serving.marketplace)."""
from __future__ import annotations

from dataclasses import dataclass

from serving.datasets.base import LoadOptions
from serving.marketplace import Dataset, generate_named
from serving.seen_items import SeenPolicies, SeenPolicy
from serving.time_constants import TimeConstants


@dataclass(frozen=True)
class SyntheticAdapter:
    name: str = "synthetic"
    description: str = "seeded synthetic marketplace (views, carts, purchases; --size, --seed)"
    seen_policy: SeenPolicies = SeenPolicies.same(SeenPolicy(kinds=("purchase",), window_days=30.0))
    """A general marketplace: what was bought this month is not shown again on any surface."""
    time_constants: TimeConstants = TimeConstants()
    """Interest fade, popularity half-life, segment list length: the marketplace defaults (not tuned to this data)."""

    def load(self, options: LoadOptions) -> Dataset:
        data = generate_named(options.size, seed=options.seed, geographies=options.geographies)
        if options.max_users is None:
            return data
        from serving.datasets.slicing import first_users

        return first_users(data, options.max_users)
