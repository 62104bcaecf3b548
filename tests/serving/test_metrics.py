"""The cell's Prometheus metrics: own registry, what each recorder counts, the /metrics body."""
from __future__ import annotations

import pytest
from prometheus_client import REGISTRY, CollectorRegistry, Gauge
from prometheus_client.parser import text_string_to_metric_families

from serving.feature_store import assess_freshness
from contracts.tiers import TIER_NAMES
from serving.metrics import CellMetrics


def _samples(metrics: CellMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    body, content_type = metrics.render()
    assert content_type.startswith("text/plain")
    out = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def test_two_cells_in_one_process_do_not_collide() -> None:
    a, b = CellMetrics(), CellMetrics()
    a.accept_events(3)
    assert _samples(a)[("shopnow_cell_events_accepted_total", ())] == 3
    assert _samples(b)[("shopnow_cell_events_accepted_total", ())] == 0
    assert REGISTRY.get_sample_value("shopnow_cell_events_accepted_total") is None  # nothing global


def test_a_handed_in_registry_is_used_and_others_can_add_metrics() -> None:
    registry = CollectorRegistry()
    metrics = CellMetrics(registry)
    Gauge("shopnow_replication_lag_seconds", "Lag.", ["source"], registry=metrics.registry).labels(source="us-west").set(0.4)
    samples = _samples(metrics)
    assert samples[("shopnow_replication_lag_seconds", (("source", "us-west"),))] == 0.4
    assert registry.get_sample_value("shopnow_cell_events_accepted_total") == 0


def test_tier_series_exist_before_any_request() -> None:
    samples = _samples(CellMetrics())
    for tier in TIER_NAMES:
        assert samples[("shopnow_cell_tier_choices_total", (("tier", tier),))] == 0


@pytest.mark.parametrize(("latency_ms", "le_first_bucket"), [
    (0.5, "0.001"), (1.0, "0.001"), (1.5, "0.002"), (42.0, "0.05"), (180.0, "0.18"), (199.0, "0.2"), (5000.0, "+Inf"),
])
def test_request_latency_lands_in_millisecond_buckets(latency_ms: float, le_first_bucket: str) -> None:
    metrics = CellMetrics()
    metrics.observe_request(surface="homepage", tier="segment", status="ok", latency_ms=latency_ms)
    buckets = {dict(k[1])["le"]: v for k, v in _samples(metrics).items()
               if k[0] == "shopnow_cell_request_latency_seconds_bucket"}
    edges = sorted(buckets, key=float)
    first = next(le for le in edges if buckets[le] == 1)
    assert first == le_first_bucket
    assert all(buckets[le] == 0 for le in edges[: edges.index(first)])


def test_observe_request_counts_request_choice_and_skips() -> None:
    metrics = CellMetrics()
    metrics.observe_request(surface="homepage", tier="cached", status="ok", latency_ms=12,
                            skipped=[("full", "breaker_open")])
    metrics.observe_request(surface="homepage", tier="popularity", status="ok", latency_ms=3,
                            skipped=[("full", "breaker_open"), ("cached", "no_data"), ("segment", "no_data")])
    s = _samples(metrics)
    assert s[("shopnow_cell_requests_total", (("status", "ok"), ("surface", "homepage"), ("tier", "cached")))] == 1
    assert s[("shopnow_cell_tier_choices_total", (("tier", "popularity"),))] == 1
    assert s[("shopnow_cell_tier_choices_total", (("tier", "full"),))] == 0
    assert s[("shopnow_cell_tier_skips_total", (("reason", "breaker_open"), ("tier", "full")))] == 2
    assert s[("shopnow_cell_tier_skips_total", (("reason", "no_data"), ("tier", "segment")))] == 1
    assert s[("shopnow_cell_request_latency_seconds_count", (("tier", "cached"),))] == 1
    assert s[("shopnow_cell_request_latency_seconds_sum", (("tier", "cached"),))] == pytest.approx(0.012)


def test_bundle_info_shows_only_the_serving_version() -> None:
    metrics = CellMetrics()
    metrics.set_bundle("v1", loaded_at=100.0)
    metrics.set_bundle("v2", loaded_at=200.0)
    metrics.refuse_bundle("checksum")
    metrics.refuse_bundle("checksum")
    s = _samples(metrics)
    assert [dict(k[1]) for k in s if k[0] == "shopnow_cell_bundle_info"] == [{"version": "v2"}]
    assert s[("shopnow_cell_bundle_loaded_timestamp_seconds", ())] == 200.0
    assert s[("shopnow_cell_bundle_refusals_total", (("check", "checksum"),))] == 2


def test_freshness_and_events_gauges() -> None:
    metrics = CellMetrics()
    metrics.observe_freshness(assess_freshness(now=1000.0, user_updated_at=400.0,
                                               item_updated_at={"a": 50.0, "b": 990.0, "c": None}))
    metrics.refuse_events("invalid", 2)
    metrics.refuse_events("residency")
    s = _samples(metrics)
    assert s[("shopnow_cell_stale_features", (("kind", "user"),))] == 1
    assert s[("shopnow_cell_stale_features", (("kind", "item"),))] == 2  # a: 950 s old, c: missing
    assert s[("shopnow_cell_feature_age_seconds", (("kind", "user"),))] == 600.0
    assert s[("shopnow_cell_feature_age_seconds", (("kind", "item"),))] == 950.0
    assert s[("shopnow_cell_events_refused_total", (("reason", "invalid"),))] == 2
    assert s[("shopnow_cell_events_refused_total", (("reason", "residency"),))] == 1
