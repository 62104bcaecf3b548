"""Shadow scoring: the candidate bundle ranks a sample of homepage requests beside the serving one,
off the request path, and the two slates are compared (serving.slate_compare).

The request thread only offers (user, geography, count, the serving answer) to a bounded queue;
one daemon thread asks the recommender for the candidate's slate (its own ranker breaker, nothing
cached, nothing logged) and records: overlap@8, rank correlation, the candidate's latency against
the serving one's (per request: the median of candidate / serving time is robust to a busy host,
which slows both), and errors (an exception, or a candidate that could not rank at tier full).
A full queue drops the offer (counted): shadow work never slows real answers.

`summary()` is what /readyz exports under "shadow" and the gates read; the cell's metrics export
the same figures (serving.metrics: shopnow_shadow_*).
"""
from __future__ import annotations

import logging
import queue
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from serving.slate_compare import overlap_at, rank_correlation

log = logging.getLogger(__name__)

QUEUE = 64
WINDOW = 2000
"""Comparisons kept per candidate (the newest)."""
OVERLAP_K = 8


@dataclass(frozen=True)
class Offer:
    user_id: str
    geography: str
    count: int
    serving_items: tuple[str, ...]
    serving_ms: float
    candidate: str


@dataclass(frozen=True)
class Comparison:
    overlap: float
    rank_corr: float
    serving_ms: float
    candidate_ms: float
    error: bool


def compare(offer: Offer, items: tuple[str, ...] | None, candidate_ms: float, *, tier_ok: bool) -> Comparison:
    """Pure: one comparison; `items` None when the candidate raised."""
    if items is None or not tier_ok:
        return Comparison(overlap=0.0, rank_corr=0.0, serving_ms=offer.serving_ms, candidate_ms=candidate_ms, error=True)
    return Comparison(overlap=overlap_at(OVERLAP_K, offer.serving_items, items),
                      rank_corr=rank_correlation(offer.serving_items, items),
                      serving_ms=offer.serving_ms, candidate_ms=candidate_ms, error=False)


def summarize(candidate: str | None, rows: list[Comparison], dropped: int) -> dict[str, Any]:
    """Pure: the figures of a window of comparisons."""
    ok = [r for r in rows if not r.error]
    out: dict[str, Any] = {"candidate": candidate, "compared": len(rows), "errors": len(rows) - len(ok),
                           "error_rate": (len(rows) - len(ok)) / len(rows) if rows else 0.0, "dropped": dropped}
    if ok:
        out.update(overlap_at_8=float(np.mean([r.overlap for r in ok])), rank_corr=float(np.mean([r.rank_corr for r in ok])))
    if rows:
        out.update(serving_p99_ms=float(np.percentile([r.serving_ms for r in rows], 99)),
                   candidate_p99_ms=float(np.percentile([r.candidate_ms for r in rows], 99)))
    if ok:
        out["latency_ratio_p50"] = float(np.median([r.candidate_ms / max(r.serving_ms, 0.1) for r in ok]))
    return out


class ShadowScorer:
    def __init__(self, score: Callable[[Offer], tuple[tuple[str, ...], float, bool]],
                 on_compare: Callable[[Comparison], None] = lambda _c: None) -> None:
        """`score(offer)` -> (candidate items, candidate latency ms, ranked at tier full)."""
        self._score = score
        self._on_compare = on_compare
        self._queue: queue.Queue[Offer | None] = queue.Queue(maxsize=QUEUE)
        self._rows: deque[Comparison] = deque(maxlen=WINDOW)
        self._candidate: str | None = None
        self.dropped = 0
        self._thread = threading.Thread(target=self._run, name="shadow-scorer", daemon=True)
        self._thread.start()

    def offer(self, offer: Offer) -> None:
        try:
            self._queue.put_nowait(offer)
        except queue.Full:
            self.dropped += 1

    def _run(self) -> None:
        while True:
            offer = self._queue.get()
            if offer is None:
                return
            if offer.candidate != self._candidate:
                self._rows.clear()
                self._candidate = offer.candidate
                self.dropped = 0
            try:
                items, ms, tier_ok = self._score(offer)
                row = compare(offer, items, ms, tier_ok=tier_ok)
            except Exception as exc:  # a broken candidate is what shadow scoring is for: count it
                log.debug("shadow scoring of %s failed: %s", offer.candidate, exc)
                row = compare(offer, None, 0.0, tier_ok=False)
            self._rows.append(row)
            self._on_compare(row)

    def reset(self) -> None:
        """Start the comparisons afresh (a new serving-plan revision: another stage)."""
        self._rows.clear()
        self.dropped = 0

    def summary(self) -> dict[str, Any]:
        return summarize(self._candidate, list(self._rows), self.dropped)

    def close(self) -> None:
        try:
            self._queue.put_nowait(None)
        except queue.Full:
            pass


__all__ = ["Comparison", "Offer", "ShadowScorer", "compare", "summarize"]
