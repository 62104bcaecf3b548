"""The controller's own metrics and probes: GET /metrics, /healthz and /readyz (no token: they say
nothing an operator's change could use, and Prometheus and process supervisors carry no token).

    shopnow_controller_leader                         1 while this process holds the lease
    shopnow_controller_term                           the lease term it leads under (0 on a standby)
    shopnow_controller_store_reachable                1 while the control store answers the controller
    shopnow_controller_writing                        1 while this controller leads and can write
    shopnow_controller_fail_static                    1 while this round's decision is fail-static
    shopnow_controller_steering_refused               1 while the safety checks refuse the decision
    shopnow_controller_region_weight_percent{geography,region}   the decided weights
    shopnow_controller_region_health{region,state}    1 for the region's state (healthy, degraded,
                                                      unhealthy, drained), 0 for the others
    shopnow_controller_region_latency_outlier{region} 1 while the region is ejected as a latency outlier
    shopnow_controller_region_probe_window_p99_seconds{region}  p99 of its last complete probe window
    shopnow_controller_last_round_timestamp_seconds   when the last probe round ran
    shopnow_controller_rounds_total                   probe rounds run
    shopnow_controller_round_errors_total             rounds that ended with a store error or deposition
    shopnow_controller_decision_duration_seconds      decide() + check_steering() per round (histogram)
    shopnow_controller_probe_duration_seconds{region} homepage probe round trip per region (histogram)

The state gauges are read from the controller's last round at scrape time; the histograms and
counters are fed by Controller.on_step. Every series carries `controller` (the process's id),
except the Route 53 publishing series (`shopnow_dns_*`, failover.dns_publish), exposed here as they
are when publishing is configured.

/readyz answers 200 once a probe round finished within `stale_after_rounds` intervals, else 503.
"""
from __future__ import annotations

import time
from typing import Any, Callable, Iterator

from fastapi import FastAPI
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from contracts import openapi as oa
from contracts.http_errors import readiness_response
from failover.controller import Controller, StepResult
from failover.health import HealthState

DECISION_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
"""decide() is pure and takes about a millisecond; anything near the 1 s round interval is a bug."""
PROBE_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1.0, 2.0)
"""Around the 150 ms cell deadline and the 0.5 s probe timeout."""
STALE_AFTER_ROUNDS = 5
"""/readyz fails once no round finished for five intervals: the loop is stuck, not just slow."""


class _State(Collector):
    def __init__(self, controller: Controller) -> None:
        self._controller = controller

    def collect(self) -> Iterator[GaugeMetricFamily]:
        ctl = self._controller
        who = [ctl.holder]
        state = ctl.leadership.state
        leader = GaugeMetricFamily("shopnow_controller_leader", "1 while this controller holds the lease.",
                                   labels=["controller"])
        leader.add_metric(who, 1.0 if state.is_leader else 0.0)
        yield leader
        term = GaugeMetricFamily("shopnow_controller_term", "Lease term this controller leads under (0: standby).",
                                 labels=["controller"])
        term.add_metric(who, float(state.term or 0) if state.is_leader else 0.0)
        yield term
        store = ctl.store_status()
        reachable = GaugeMetricFamily("shopnow_controller_store_reachable",
                                      "1 while the control store answers the controller.", labels=["controller"])
        reachable.add_metric(who, 1.0 if store["reachable"] else 0.0)
        yield reachable
        writing = GaugeMetricFamily("shopnow_controller_writing", "1 while this controller leads and can write.",
                                    labels=["controller"])
        writing.add_metric(who, 1.0 if store["writing"] else 0.0)
        yield writing
        last = ctl.last
        if last is None:
            return
        static = GaugeMetricFamily("shopnow_controller_fail_static",
                                   "1 while this round's decision is fail-static (routing frozen).",
                                   labels=["controller"])
        static.add_metric(who, 1.0 if last.steering.fail_static else 0.0)
        yield static
        refused = GaugeMetricFamily("shopnow_controller_steering_refused",
                                    "1 while the safety checks refuse this round's decision.", labels=["controller"])
        refused.add_metric(who, 1.0 if last.problems else 0.0)
        yield refused
        weights = GaugeMetricFamily("shopnow_controller_region_weight_percent",
                                    "Share of a geography's personal traffic decided for the region.",
                                    labels=["controller", "geography", "region"])
        for geo, regions in sorted(last.steering.weights.items()):
            for region, weight in sorted(regions.items()):
                weights.add_metric([ctl.holder, geo, region], float(weight))
        yield weights
        health = GaugeMetricFamily("shopnow_controller_region_health",
                                   "1 for the region's health state as this controller sees it, 0 for the others.",
                                   labels=["controller", "region", "state"])
        for region, h in sorted(last.health.items()):
            for st in HealthState:
                health.add_metric([ctl.holder, region, st.value], 1.0 if h.state is st else 0.0)
        yield health
        outlier = GaugeMetricFamily("shopnow_controller_region_latency_outlier",
                                    "1 while the region is ejected as a latency outlier (failover.outlier).",
                                    labels=["controller", "region"])
        window = GaugeMetricFamily("shopnow_controller_region_probe_window_p99_seconds",
                                   "p99 of the last complete probe window per region (the outlier detector's input).",
                                   labels=["controller", "region"])
        for region, h in sorted(last.health.items()):
            outlier.add_metric([ctl.holder, region], 1.0 if h.outlier.ejected else 0.0)
            if h.outlier.last_p99_ms is not None:
                window.add_metric([ctl.holder, region], h.outlier.last_p99_ms / 1000.0)
        yield outlier
        yield window
        at = GaugeMetricFamily("shopnow_controller_last_round_timestamp_seconds", "When the last probe round ran.",
                               labels=["controller"])
        at.add_metric(who, last.now)
        yield at


class ControllerMetrics:
    """The registry of one controller process; `observe` is its Controller.on_step hook."""

    def __init__(self, controller: Controller, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        r, who = self.registry, controller.holder
        self.controller = controller
        self.rounds = Counter("shopnow_controller_rounds", "Probe rounds run.", ["controller"], registry=r)
        self.errors = Counter("shopnow_controller_round_errors", "Rounds that ended with a store error or deposition.",
                              ["controller"], registry=r)
        self.decision = Histogram("shopnow_controller_decision_duration_seconds",
                                  "decide() plus check_steering() per round.", ["controller"],
                                  buckets=DECISION_BUCKETS_S, registry=r)
        self.probe = Histogram("shopnow_controller_probe_duration_seconds", "Homepage probe round trip per region.",
                               ["controller", "region"], buckets=PROBE_BUCKETS_S, registry=r)
        self.rounds.labels(controller=who)
        self.errors.labels(controller=who)
        r.register(_State(controller))
        if controller.dns is not None:
            r.register(controller.dns.registry)
        controller.on_step.append(self.observe)

    def observe(self, result: StepResult) -> None:
        who = self.controller.holder
        self.rounds.labels(controller=who).inc()
        if result.error:
            self.errors.labels(controller=who).inc()
        self.decision.labels(controller=who).observe(result.decide_s)
        for region, report in sorted(result.reports.items()):
            if report.probe.latency_ms > 0:
                self.probe.labels(controller=who, region=region).observe(report.probe.latency_ms / 1000.0)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def readiness(controller: Controller, *, now: float) -> tuple[bool, dict[str, Any]]:
    """(ready, body): ready once a round finished within STALE_AFTER_ROUNDS intervals."""
    last = controller.last
    state = controller.leadership.state
    age = None if last is None else max(0.0, now - last.now)
    limit = STALE_AFTER_ROUNDS * controller.settings.interval_s
    ready = age is not None and age <= limit
    return ready, {"ready": ready, "controller": controller.holder, "leader": state.is_leader,
                   "term": state.term if state.is_leader else None, "leader_seen": state.leader,
                   "last_round_age_s": None if age is None else round(age, 3), "stale_after_s": limit,
                   "last_error": last.error if last else "no probe round finished yet"}


def mount(app: FastAPI, controller: Controller, *, clock: Callable[[], float] = time.time) -> ControllerMetrics:
    """Add GET /metrics, /healthz and /readyz to the control API app."""
    metrics = ControllerMetrics(controller)

    @app.get("/metrics", response_class=PlainTextResponse)
    def _metrics() -> Response:
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    @app.get("/healthz", responses=oa.ok({"type": "object", "required": ["status", "controller"]}))
    def _healthz() -> dict[str, str]:
        return {"status": "ok", "controller": controller.holder}

    @app.get("/readyz", responses={**oa.ok(), **oa.errors(503, why={503: "no probe round finished recently"})})
    def _readyz() -> JSONResponse:
        ready, body = readiness(controller, now=clock())
        return readiness_response(ready, body, why=f"no probe round finished within {body['stale_after_s']} s "
                                                   f"(last error: {body['last_error']})")

    return metrics


__all__ = ["ControllerMetrics", "mount", "readiness"]
