"""The admission gate's state and counts as Prometheus metrics, read at scrape time.

    shopnow_cell_admission_enabled                         1 when admission control is on
    shopnow_cell_admission_limit                           the adaptive limit on concurrent full rankings
    shopnow_cell_admission_full_in_flight                  full rankings in flight now
    shopnow_cell_admission_rtt_seconds{window}             mean arrival -> answer of full rankings: the
                                                           last window (short) and the long-term average
    shopnow_cell_admission_requests_total                  homepage requests through the gate
    shopnow_cell_admission_degraded_total{reason,tier}     requests admission moved to a cheaper tier: why
                                                           (queue_time, concurrency_limit) and the best tier
                                                           it allowed (cached, segment)
    shopnow_cell_admission_queued_seconds_total            seconds queued before the handler, summed (the
                                                           mean is its rate over requests_total's)

The region label is added by serving.metrics, as for every cell series.
"""
from __future__ import annotations

from typing import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from serving.admission_gate import AdmissionGate


class AdmissionMetrics(Collector):
    def __init__(self, gate: AdmissionGate) -> None:
        self._gate = gate

    def collect(self) -> Iterator[Metric]:
        snap = self._gate.snapshot()
        yield GaugeMetricFamily("shopnow_cell_admission_enabled", "1 when the cell's admission control is on.",
                                value=1.0 if snap.enabled else 0.0)
        yield GaugeMetricFamily("shopnow_cell_admission_limit", "Adaptive limit on concurrent full rankings.",
                                value=snap.limit)
        yield GaugeMetricFamily("shopnow_cell_admission_full_in_flight", "Full rankings in flight.",
                                value=float(snap.full_in_flight))
        rtt = GaugeMetricFamily("shopnow_cell_admission_rtt_seconds",
                                "Mean arrival-to-answer time of full rankings: last window, long-term average.",
                                labels=["window"])
        rtt.add_metric(["short"], snap.short_rtt_s or 0.0)
        rtt.add_metric(["long"], snap.long_rtt_s or 0.0)
        yield rtt
        yield CounterMetricFamily("shopnow_cell_admission_requests", "Homepage requests through the admission gate.",
                                  value=float(snap.admitted))
        degraded = CounterMetricFamily("shopnow_cell_admission_degraded",
                                       "Requests admission control moved to a cheaper tier, by reason and allowed tier.",
                                       labels=["reason", "tier"])
        for (reason, tier), count in sorted(snap.degraded.items()):
            degraded.add_metric([reason, tier], float(count))
        yield degraded
        yield CounterMetricFamily("shopnow_cell_admission_queued_seconds",
                                  "Seconds homepage requests queued before their handler ran, summed.",
                                  value=snap.queued_s_sum)


__all__ = ["AdmissionMetrics"]
