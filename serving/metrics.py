"""Prometheus metrics of one cell, on the cell's own CollectorRegistry.

Nothing is registered at import time: each `CellMetrics` owns a registry (handed in or created),
so several cells, or several tests, can live in one process without "Duplicated timeseries".
Others add their own metrics (replication lag, breaker state, ...) to `CellMetrics.registry`.

Metric names (prefix `shopnow_cell_`):
    requests_total{surface,tier,status}         answered requests
    tier_choices_total{tier}                    the tier that served
    tier_skips_total{tier,reason}               tiers passed over, and why
    request_latency_seconds{tier}               cell time per request (histogram, 1-200 ms buckets)
    bundle_info{version}                        1 for the serving bundle version, else absent
    bundle_loaded_timestamp_seconds             when the serving bundle was swapped in
    bundle_refusals_total{check}                bundles refused, by failed check
    stale_features{kind}                        features older than their bound at the last check (user|item)
    feature_age_seconds{kind}                   age of the oldest feature at the last check (user|item)
    events_accepted_total                       interaction events appended to the log
    events_refused_total{reason}                interaction events refused, by reason
    anonymous_answers_total{reason}             requests naming a user answered anonymously (foreign_user, deleted_user)
    routed_answers_total{bundle_version,route}  homepages by the bundle that ranked them (route serving|canary|experiment)
    shadow_comparisons_total{candidate,outcome} shadow scorings of the candidate (ok|error); serving.shadow
    shadow_overlap_at_8{candidate}              overlap@8 of candidate vs serving slate (histogram)
    shadow_rank_correlation{candidate}          Spearman rho of the serving slate under the candidate (histogram)
    shadow_candidate_latency_seconds{candidate} the candidate's time on a shadow request (histogram)
Every series a cell exposes carries `region` (the cell's region, given to CellMetrics), added at
render time to the series of every collector on the registry, so that those others add (breaker
state, ...) carry it too; a series that already has a `region` label keeps its own.
`render()` gives the body and content type of GET /metrics.
"""
from __future__ import annotations

from typing import Any, Iterable, Iterator, Mapping

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from contracts.tiers import TIER_NAMES
from serving.feature_store import Freshness

LATENCY_BUCKETS_S = (0.001, 0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.125, 0.15, 0.18, 0.2, 0.3, 0.5, 1.0)
"""Fine below 200 ms where the 150 ms cell deadline and 180 ms end-to-end p99 live; coarse above."""
NAMESPACE = "shopnow_cell"


class WithLabels(Collector):
    """Every series of `inner` with `labels` added (a label the series already has wins)."""

    def __init__(self, inner: CollectorRegistry, labels: Mapping[str, str]) -> None:
        self._inner, self._labels = inner, dict(labels)

    def collect(self) -> Iterator[Metric]:
        for family in self._inner.collect():
            out = Metric(family.name, family.documentation, family.type, family.unit)
            for sample in family.samples:
                out.add_sample(sample.name, {**self._labels, **sample.labels}, sample.value, sample.timestamp,
                               sample.exemplar)
            yield out


class CellMetrics:
    """The metrics of one cell. Methods record; `render()` exposes."""

    def __init__(self, registry: CollectorRegistry | None = None, *, region: str = "") -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self._exposed = CollectorRegistry(auto_describe=False)
        self._exposed.register(WithLabels(self.registry, {"region": region} if region else {}))
        r = self.registry
        self.requests = Counter("requests", "Answered recommendation requests.",
                                ["surface", "tier", "status"], namespace=NAMESPACE, registry=r)
        self.tier_choices = Counter("tier_choices", "Requests served by each tier.", ["tier"],
                                    namespace=NAMESPACE, registry=r)
        self.tier_skips = Counter("tier_skips", "Tiers passed over, by reason (deadline, breaker_open, no_data, ...).",
                                  ["tier", "reason"], namespace=NAMESPACE, registry=r)
        self.latency = Histogram("request_latency_seconds", "Time the cell spent on a request.", ["tier"],
                                 buckets=LATENCY_BUCKETS_S, namespace=NAMESPACE, registry=r)
        self.bundle_info = Gauge("bundle_info", "1 for the model bundle version now serving.", ["version"],
                                 namespace=NAMESPACE, registry=r)
        self.bundle_loaded = Gauge("bundle_loaded_timestamp_seconds", "When the serving bundle was swapped in.",
                                   namespace=NAMESPACE, registry=r)
        self.bundle_refusals = Counter("bundle_refusals", "Model bundles refused, by the check that failed.",
                                       ["check"], namespace=NAMESPACE, registry=r)
        self.stale_features = Gauge("stale_features", "Features older than their freshness bound at the last check.",
                                    ["kind"], namespace=NAMESPACE, registry=r)
        self.feature_age = Gauge("feature_age_seconds", "Age of the oldest feature at the last check.", ["kind"],
                                 namespace=NAMESPACE, registry=r)
        self.events_accepted = Counter("events_accepted", "Interaction events appended to the region's log.",
                                       namespace=NAMESPACE, registry=r)
        self.events_refused = Counter("events_refused", "Interaction events refused, by reason.", ["reason"],
                                      namespace=NAMESPACE, registry=r)
        self.feature_psi = Gauge("feature_psi", "PSI of each feature: scored sample vs the bundle's training distribution.",
                                 ["feature"], namespace=NAMESPACE, registry=r)
        self.feature_drift = Gauge("feature_drift_features", "Features whose PSI is above the alert threshold (0.25).",
                                   namespace=NAMESPACE, registry=r)
        self.feature_drift_rows = Gauge("feature_drift_sample_rows", "Scored feature vectors in the drift sample.",
                                        namespace=NAMESPACE, registry=r)
        self.anonymous_answers = Counter(
            "anonymous_answers", "Requests naming a user answered anonymously instead (serving.residency reasons).",
            ["reason"], namespace=NAMESPACE, registry=r)
        self.routed_answers = Counter("routed_answers", "Homepage answers by the bundle that ranked them and the route.",
                                      ["bundle_version", "route"], namespace=NAMESPACE, registry=r)
        self.shadow_comparisons = Counter("shadow_comparisons", "Shadow scorings of the candidate bundle, by outcome.",
                                          ["candidate", "outcome"], namespace=NAMESPACE, registry=r)
        ratio_buckets = (-0.5, 0.0, 0.25, 0.5, 0.625, 0.75, 0.875, 0.95, 1.0)
        self.shadow_overlap = Histogram("shadow_overlap_at_8", "Overlap@8 of the candidate's slate with the serving one.",
                                        ["candidate"], buckets=ratio_buckets, namespace=NAMESPACE, registry=r)
        self.shadow_rank_corr = Histogram("shadow_rank_correlation", "Rank correlation of the serving slate under the candidate.",
                                          ["candidate"], buckets=(-1.0, *ratio_buckets), namespace=NAMESPACE, registry=r)
        self.shadow_latency = Histogram("shadow_candidate_latency_seconds", "The candidate's time on a shadow request.",
                                        ["candidate"], buckets=LATENCY_BUCKETS_S, namespace=NAMESPACE, registry=r)
        for tier in TIER_NAMES:
            self.tier_choices.labels(tier=tier)
        for reason in ("foreign_user", "deleted_user"):
            self.anonymous_answers.labels(reason=reason)
        for kind in ("user", "item"):
            self.stale_features.labels(kind=kind).set(0)
            self.feature_age.labels(kind=kind).set(0)
        self._bundle_version: str | None = None

    def observe_request(
        self, *, surface: str, tier: str, status: str, latency_ms: float,
        skipped: Iterable[tuple[str, str]] = (),
    ) -> None:
        """One answered request: its surface, serving tier, status ("ok", "error", ...), the cell's
        time in milliseconds, and the (tier, reason) pairs it skipped."""
        self.requests.labels(surface=surface, tier=tier, status=status).inc()
        self.tier_choices.labels(tier=tier).inc()
        self.latency.labels(tier=tier).observe(max(latency_ms, 0.0) / 1000.0)
        for skipped_tier, reason in skipped:
            self.tier_skips.labels(tier=skipped_tier, reason=reason).inc()

    def observe_shadow(self, candidate: str, *, error: bool, overlap: float, rank_corr: float, candidate_ms: float) -> None:
        self.shadow_comparisons.labels(candidate=candidate, outcome="error" if error else "ok").inc()
        self.shadow_latency.labels(candidate=candidate).observe(max(candidate_ms, 0.0) / 1000.0)
        if not error:
            self.shadow_overlap.labels(candidate=candidate).observe(overlap)
            self.shadow_rank_corr.labels(candidate=candidate).observe(rank_corr)

    def set_bundle(self, version: str, *, loaded_at: float) -> None:
        """The bundle `version` serves from now (epoch seconds `loaded_at`); the previous one's series goes."""
        if self._bundle_version is not None and self._bundle_version != version:
            self.bundle_info.remove(self._bundle_version)
        self.bundle_info.labels(version=version).set(1)
        self.bundle_loaded.set(loaded_at)
        self._bundle_version = version

    def refuse_bundle(self, check: str) -> None:
        """A bundle failed `check` (e.g. "checksum", "schema_version", "golden") and was not loaded."""
        self.bundle_refusals.labels(check=check).inc()

    def observe_freshness(self, freshness: Freshness) -> None:
        """Record the result of serving.feature_store.assess_freshness."""
        self.stale_features.labels(kind="user").set(1 if freshness.user_stale else 0)
        self.stale_features.labels(kind="item").set(len(freshness.stale_items))
        self.feature_age.labels(kind="user").set(freshness.user_age_s or 0.0)
        self.feature_age.labels(kind="item").set(freshness.oldest_item_age_s or 0.0)

    def observe_drift(self, report: Mapping[str, Any]) -> None:
        """Record a serving.drift.drift_report (only a sample large enough sets the drift count)."""
        for feature, value in report["psi"].items():
            self.feature_psi.labels(feature=feature).set(value)
        self.feature_drift.set(len(report["drifted"]) if report["verdict"] != "too few samples" else 0)
        self.feature_drift_rows.set(report["rows"])

    def accept_events(self, count: int) -> None:
        self.events_accepted.inc(count)

    def refuse_events(self, reason: str, count: int = 1) -> None:
        """`count` events refused for `reason` (e.g. "invalid", "residency", "too_large", "log_unavailable")."""
        self.events_refused.labels(reason=reason).inc(count)

    def render(self) -> tuple[bytes, str]:
        """Body and Content-Type for GET /metrics (Prometheus text format)."""
        return generate_latest(self._exposed), CONTENT_TYPE_LATEST
