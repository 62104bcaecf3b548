"""Offline evaluation metrics. Pure: lists of item ids in, numbers out.

Relevance of an item for a user in the evaluation period = the strongest interaction with it
(contracts.events.EVENT_WEIGHTS: view 1, cart 3, purchase 5); impressions are not relevant.

    NDCG@10     graded gain (the weight), log2 discount, normalised by the ideal ordering
    HR@10       share of users with at least one relevant item in the top 10
    recall@100  share of a user's relevant items found in the method's top 100 (for the full
                pipeline: the ranked top 100; the ANN retrieval's own is the "ALS retrieval only"
                row, the requirement's "recall@100 of retrieval"; serving.training.RECALL_STAGE)
    coverage    distinct items recommended in anyone's top 10 / catalog size
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from regions.errors import InputError

COHORTS = ("all", "warm", "cold")
"""Users evaluated: all; warm = with an ALS embedding (interacted before the cutoff); cold = without."""


def dcg(gains: Sequence[float]) -> float:
    return float(sum(g / math.log2(n + 2) for n, g in enumerate(gains)))


def ndcg_at_k(ranked: Sequence[str], relevance: Mapping[str, float], k: int = 10) -> float:
    """NDCG@k of `ranked` against graded `relevance` (0 when nothing is relevant)."""
    if k < 1:
        raise InputError("k", f"must be >= 1, got {k}")
    ideal = dcg(sorted(relevance.values(), reverse=True)[:k])
    if ideal <= 0:
        return 0.0
    return dcg([relevance.get(i, 0.0) for i in ranked[:k]]) / ideal


def hit_at_k(ranked: Sequence[str], relevance: Mapping[str, float], k: int = 10) -> float:
    return 1.0 if any(relevance.get(i, 0.0) > 0 for i in ranked[:k]) else 0.0


def recall_at_k(ranked: Sequence[str], relevance: Mapping[str, float], k: int = 100) -> float:
    relevant = [i for i, g in relevance.items() if g > 0]
    if not relevant:
        return 0.0
    top = set(ranked[:k])
    return sum(1 for i in relevant if i in top) / len(relevant)


@dataclass(frozen=True)
class MethodMetrics:
    ndcg_at_10: float
    hr_at_10: float
    recall_at_100: float
    coverage: float
    users: int

    def to_json(self) -> dict[str, Any]:
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def evaluate(
    *, top10: Mapping[str, Sequence[str]], top100: Mapping[str, Sequence[str]],
    truth: Mapping[str, Mapping[str, float]], n_items: int,
) -> MethodMetrics:
    """Metrics of one method over the users in `truth` (a user missing from top10/top100 scores 0)."""
    if n_items < 1:
        raise InputError("n_items", f"must be >= 1, got {n_items}")
    users = sorted(truth)
    if not users:
        return MethodMetrics(0.0, 0.0, 0.0, 0.0, 0)
    ndcg = [ndcg_at_k(top10.get(u, ()), truth[u], 10) for u in users]
    hits = [hit_at_k(top10.get(u, ()), truth[u], 10) for u in users]
    recall = [recall_at_k(top100.get(u, ()), truth[u], 100) for u in users]
    shown = {i for u in users for i in top10.get(u, ())[:10]}
    return MethodMetrics(
        ndcg_at_10=float(np.mean(ndcg)), hr_at_10=float(np.mean(hits)), recall_at_100=float(np.mean(recall)),
        coverage=len(shown) / n_items, users=len(users),
    )


def relevance_by_user(pairs: Iterable[tuple[str, str, float]]) -> dict[str, dict[str, float]]:
    """(user, item, weight) -> {user: {item: strongest weight}}, weights <= 0 dropped."""
    out: dict[str, dict[str, float]] = {}
    for user, item, weight in pairs:
        if weight > 0:
            per = out.setdefault(user, {})
            per[item] = max(per.get(item, 0.0), weight)
    return out


def ratio(numerator: float, denominator: float) -> float:
    """numerator / denominator, inf when only the denominator is 0, 1 when both are."""
    if denominator == 0:
        return 1.0 if numerator == 0 else math.inf
    return numerator / denominator


def metrics_rows(methods: Mapping[str, MethodMetrics], *, cohort: str = "all",
                 baseline: str = "popularity") -> list[list[str]]:
    """Table rows (method, cohort, NDCG@10, x baseline, HR@10, recall@100, coverage, users) for printing."""
    base = methods[baseline].ndcg_at_10 if baseline in methods else 0.0
    return [[name, cohort, f"{m.ndcg_at_10:.4f}", f"{ratio(m.ndcg_at_10, base):.2f}x", f"{m.hr_at_10:.4f}",
             f"{m.recall_at_100:.4f}", f"{m.coverage:.4f}", str(m.users)] for name, m in methods.items()]
