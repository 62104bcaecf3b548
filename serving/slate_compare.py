"""How alike two slates are: what shadow scoring exports. Pure.

    overlap_at(k, a, b)      |top-k of a & top-k of b| / k
    rank_correlation(a, b)   Spearman's rho between the positions of a's items in a and in b; an
                             item of a that b lacks sits at len(b) (past b's end). 1.0: same order;
                             about -1: reversed. Lists of fewer than two items give 1.0 when equal.
"""
from __future__ import annotations

from typing import Sequence


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
    order = sorted(range(n), key=lambda i: (theirs[i], i))
    ranks = [0] * n
    for r, i in enumerate(order):
        ranks[i] = r
    d2 = sum((i - ranks[i]) ** 2 for i in range(n))
    return 1.0 - 6.0 * d2 / (n * (n * n - 1))


__all__ = ["overlap_at", "rank_correlation"]
