"""How alike two slates are: what shadow scoring exports. Pure.

    overlap_at(k, a, b)      |top-k of a & top-k of b| / k
    rank_correlation(a, b)   Spearman's rho (scipy, mid-ranks for ties) between the positions of a's
                             items in a and in b; items of a that b lacks tie at len(b) (past b's
                             end). 1.0: same order; about -1: reversed; 0 when b holds none of a's
                             items or fewer than two of a's items are ranked apart.
"""
from __future__ import annotations

import math
from typing import Sequence

from scipy import stats


def overlap_at(k: int, a: Sequence[str], b: Sequence[str]) -> float:
    if k <= 0:
        return 0.0
    return len(set(a[:k]) & set(b[:k])) / k


def rank_correlation(a: Sequence[str], b: Sequence[str]) -> float:
    n = len(a)
    if n < 2:
        return 1.0 if list(a) == list(b[:n]) else 0.0
    where = {item: i for i, item in enumerate(b)}
    theirs = [where.get(item, len(b)) for item in a]
    if len(set(theirs)) < 2:
        return 0.0
    rho = float(stats.spearmanr(range(n), theirs).statistic)
    return rho if math.isfinite(rho) else 0.0


__all__ = ["overlap_at", "rank_correlation"]
