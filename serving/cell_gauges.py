"""Live state of one cell as Prometheus gauges, read at scrape time (a custom collector).

    shopnow_cell_breaker_state{breaker,state}        1 for the breaker's current state (closed,
                                                     open, half_open), 0 for the others
    shopnow_cell_redis_ok                            1 when the region's Redis answered PING now
    shopnow_cell_index_frozen                        1 while the bundle watcher is frozen (chaos
                                                     freeze_index: the ANN index goes stale)
    shopnow_cell_bundle_refused                      1 while the store's current bundle is refused
                                                     (the cell keeps serving an older one)
    shopnow_cell_injected_fault{fault}               1 while a chaos fault is injected
                                                     (ranking_latency, freeze_index, answer_latency)
    shopnow_cell_injected_ranking_latency_seconds    the latency the chaos fault adds to ranking

Reading state at scrape time (instead of setting gauges where it changes) keeps the gauge and the
state it reports from ever disagreeing; the region label is added by serving.metrics.
"""
from __future__ import annotations

from typing import Any, Callable, Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from fallback_tiers.breaker import BreakerStatus


class CellGauges(Collector):
    """Gauges over a cell runtime's breakers, Redis, bundle holder and faults (see the module)."""

    def __init__(self, runtime: Any, *, redis_ok: Callable[[], bool]) -> None:
        self._runtime = runtime
        self._redis_ok = redis_ok

    def collect(self) -> Iterator[GaugeMetricFamily]:
        rt = self._runtime
        breakers = GaugeMetricFamily("shopnow_cell_breaker_state",
                                     "1 for the circuit breaker's current state, 0 for the others.",
                                     labels=["breaker", "state"])
        for name, breaker in sorted(rt.recommender.breakers.items()):
            current = breaker.status
            for status in BreakerStatus:
                breakers.add_metric([name, status.value], 1.0 if status is current else 0.0)
        yield breakers
        yield GaugeMetricFamily("shopnow_cell_redis_ok", "1 when the region's Redis answered PING at this scrape.",
                                value=1.0 if self._redis_ok() else 0.0)
        frozen = bool(rt.holder.frozen)
        yield GaugeMetricFamily("shopnow_cell_index_frozen", "1 while bundle updates are frozen (stale ANN index).",
                                value=1.0 if frozen else 0.0)
        refused, holder = rt.holder.refused, rt.holder
        refused_now = refused is not None and holder.wanted == refused.version and holder.version != holder.wanted
        yield GaugeMetricFamily("shopnow_cell_bundle_refused",
                                "1 while the store's current bundle is refused (the cell serves an older one).",
                                value=1.0 if refused_now else 0.0)
        latency_ms = float(rt.recommender.faults.ranking_latency_ms)
        faults = GaugeMetricFamily("shopnow_cell_injected_fault", "1 while a chaos fault is injected.",
                                   labels=["fault"])
        faults.add_metric(["ranking_latency"], 1.0 if latency_ms > 0 else 0.0)
        faults.add_metric(["freeze_index"], 1.0 if frozen else 0.0)
        faults.add_metric(["answer_latency"], 1.0 if rt.recommender.faults.answer_latency_ms[1] > 0 else 0.0)
        yield faults
        yield GaugeMetricFamily("shopnow_cell_injected_ranking_latency_seconds",
                                "Latency the chaos fault adds to the ranking stage.", value=latency_ms / 1000.0)


__all__ = ["CellGauges"]
