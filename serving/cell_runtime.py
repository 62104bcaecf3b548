"""One region's cell, assembled: feature store, bundle holder and watcher, recommender, event log,
metrics, request statistics, readiness and chaos faults. The HTTP and gRPC servers both call it.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from contracts.bearer import bearer_token
from contracts.events import Event
from fallback_tiers.breaker import CircuitBreaker
from fallback_tiers.settings import BreakerSettings, LadderSettings
from regions import redis_keys
from regions.errors import InputError, ShopNowError, TemporaryError
from regions.tokens import read_roles
from regions.topology import Topology
from replication.artifact_store import ArtifactStore
from replication.interaction_log import append_events, parse_batch
from replication.redis_io import ClientSettings, connect
from replication.lag import parse_stream_id
from replication.metrics import collect_pairs, stream_lag
from serving.bundle import LoadedBundle
from serving.bundle_holder import BundleHolder, BundleWatcher, Refusal
from serving.bundle_residency import residency_check
from serving.cell_gauges import CellGauges
from serving.feature_store import (
    FeatureStore, FeatureStoreUnavailable, FreshnessBounds, assess_freshness, item_features_of,
)
from serving.feature_updater import CONSUMER
from serving.drift_monitor import FeatureSampler, SamplerSettings, cell_drift
from serving.metrics import CellMetrics
from serving.recommender import Recommender, Serving
from serving.request_stats import RequestStats
from serving.residency import TombstoneView

log = logging.getLogger(__name__)

HOMEPAGE_FAULT_STATUSES = (0, 404, 500)
"""Chaos fault homepage_status: off, or the status the HTTP API answers homepages with."""
MAX_FAULT_LATENCY_MS = 10_000
"""Largest latency a chaos fault may add (POST /admin/faults ranking_latency_ms and answer_latency_ms, 0..10000)."""
FAULT_NAMES = ("answer_latency_ms", "freeze_index", "homepage_status", "ranking_latency_ms")
"""What POST /admin/faults sets; DELETE /admin/faults turns every one off (CLEARED_FAULTS)."""
CLEARED_FAULTS = {"ranking_latency_ms": 0, "freeze_index": False, "homepage_status": 0, "answer_latency_ms": [0, 0]}


@dataclass(frozen=True)
class CellSettings:
    bundle_poll_s: float = 2.0
    """A promoted bundle reaches every cell within ~2 s; polling a pointer file or object is cheap."""
    catalog_sync_s: float = 300.0
    """The local stack's item feed: live item features are re-seeded from the bundle's catalog every
    5 min (well inside the 15 min item-freshness bound). A real deployment feeds them from inventory."""
    readiness_redis_timeout_s: float = 0.1
    """/readyz must answer fast even when a peer's Redis hangs."""
    tokens_file: str = ""
    """JSON {token: role}; the chaos role may inject faults. Empty: fault injection is refused."""


LOG_BREAKER = BreakerSettings(failure_threshold=2, open_duration_s=5.0)
"""Two unacknowledged appends in a row (each already waited the log client's 1 s timeout and one
retry: not a busy moment) open the log's breaker for 5 s."""
OBSERVED_BACKLOG = 50_000
"""Answered requests waiting to be counted (flushed every second, and before /readyz and /metrics)."""


class CellRuntime:
    def __init__(self, *, topology: Topology, region: str, store: FeatureStore, artifacts: ArtifactStore,
                 cache_dir: Path, settings: CellSettings = CellSettings(),
                 ladder_settings: LadderSettings = LadderSettings(),
                 sampler_settings: SamplerSettings = SamplerSettings()) -> None:
        self.topology = topology
        self.region = region
        self.settings = settings
        self.store = store
        self.metrics = CellMetrics(region=region)
        self.stats = RequestStats()
        self._observed: deque[tuple[float, str, str, bool, float, Any]] = deque(maxlen=OBSERVED_BACKLOG)
        self._serving = Serving.of(None)
        self.holder = BundleHolder(store=artifacts, cache_dir=cache_dir, on_swap=self._on_swap, on_refuse=self._on_refuse,
                                   extra_checks=(residency_check(topology, topology.region(region).geography),))
        quick = ClientSettings(connect_timeout_s=settings.readiness_redis_timeout_s,
                               socket_timeout_s=settings.readiness_redis_timeout_s, retries=0)
        self._peers = {name: connect(topology, name, settings=quick) for name, r in topology.regions.items()
                       if r.geography == topology.region(region).geography}
        self.tombstones = TombstoneView(self._peers[region])
        self.recommender = Recommender(region=region, topology=topology, store=store, serving=lambda: self._serving,
                                       ladder_settings=ladder_settings, tombstones=lambda: self.tombstones.users,
                                       on_anonymous=lambda reason: self.metrics.anonymous_answers.labels(reason=reason).inc())
        self.sampler = FeatureSampler(sampler_settings)
        self.recommender.feature_sampler = self.sampler
        self.log_breaker = CircuitBreaker("log", settings=LOG_BREAKER)
        self._log_client = connect(topology, region, settings=ClientSettings(connect_timeout_s=0.2, socket_timeout_s=1.0, retries=1))
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._seeded_version: str | None = None
        self.metrics.registry.register(CellGauges(self, redis_ok=self._redis_answers))

    # -- bundle ----------------------------------------------------------------------------
    def _on_swap(self, bundle: LoadedBundle) -> None:
        self._serving = Serving.of(bundle)
        self.sampler.reset()
        self.metrics.set_bundle(bundle.version, loaded_at=time.time())
        self._seed_items(bundle)

    def _on_refuse(self, refusal: Refusal) -> None:
        self.metrics.refuse_bundle(refusal.check)

    def _seed_items(self, bundle: LoadedBundle) -> None:
        """Write the bundle's catalog (already in memory) into the region's item features: the
        local stack's item feed."""
        try:
            self.store.put_item_features(item_features_of(bundle.items, updated_at=time.time()))
            self._seeded_version = bundle.version
        except ShopNowError as exc:
            log.warning("could not seed item features of %s: %s (retried by the catalog sync)", bundle.version, exc)

    def start(self) -> None:
        """Load the current bundle (or the last good one), then watch in the background."""
        self.holder.poll()
        if self.holder.bundle is None:
            log.warning("no usable bundle: serving popularity from the list shipped in the package")
        watcher = BundleWatcher(self.holder, interval_s=self.settings.bundle_poll_s)
        watcher.start()
        sync = threading.Thread(target=self._catalog_sync, name="catalog-sync", daemon=True)
        sync.start()
        self.tombstones.start()
        self._threads = [watcher, sync]

    def _catalog_sync(self) -> None:
        next_sync = time.monotonic() + self.settings.catalog_sync_s
        while not self._stop.wait(1.0):
            self.flush_observed()
            bundle = self._serving.bundle
            if bundle is None:
                continue
            if self._seeded_version != bundle.version or time.monotonic() >= next_sync:
                self._seed_items(bundle)
                next_sync = time.monotonic() + self.settings.catalog_sync_s

    def stop(self) -> None:
        self._stop.set()
        self.recommender.close()
        self.tombstones.stop()
        for thread in self._threads:
            if isinstance(thread, BundleWatcher):
                thread.stop()

    # -- requests --------------------------------------------------------------------------
    def observe(self, *, surface: str, tier: str, ok: bool, latency_ms: float, skipped: Any = ()) -> None:
        """Count an answered request: queued here (an atomic append, no lock, no metric lookups on
        the request path); `flush_observed` applies it to the request stats and the metrics."""
        self._observed.append((time.time(), surface, tier, ok, latency_ms, skipped))

    def flush_observed(self) -> None:
        """Apply the queued observations (the catalog-sync thread does every second; /readyz and
        /metrics do first, so what they show includes every answer given before them)."""
        pending = self._observed
        while pending:
            try:
                at, surface, tier, ok, latency_ms, skipped = pending.popleft()
            except IndexError:  # another thread took the last one
                return
            self.stats.record(at=at, latency_ms=latency_ms, ok=ok, tier=tier)
            if ok:
                self.metrics.observe_request(surface=surface, tier=tier, status="ok", latency_ms=latency_ms, skipped=skipped)

    def log_events(self, raw: list[Any]) -> list[str]:
        """Validate, then append to the region's log. Returns stream ids once durable in Redis.
        InputError (nothing written) names the first bad event; TemporaryError when Redis is down."""
        parsed = parse_batch(raw, now=time.time(), topology=self.topology)
        if parsed.refused:
            for refusal in parsed.refused:
                self.metrics.refuse_events(refusal.field)
            first = parsed.refused[0]
            raise InputError(f"events[{first.index}].{first.field}", first.message)
        return self.store_events(parsed.events)

    def store_events(self, events: Sequence[Event]) -> list[str]:
        """Append validated events (the gRPC server converts its messages with
        contracts.cell_api.event_from_pb); residency is checked by append_events. The log has its
        own breaker (LOG_BREAKER): after two appends in a row that Redis did not acknowledge (refused
        or timed out: down or hung) batches are refused at once, TemporaryError, for its open time,
        then one trial goes through. A hung Redis would otherwise hold every batch for the log
        client's timeouts, and the edge stores it sooner in another region of the geography. (The
        ladder's read breaker is no guide here: its 50 ms reads time out on a merely busy machine.)"""
        if not self.log_breaker.try_acquire():
            self.metrics.refuse_events("log_unavailable", count=len(events))
            raise TemporaryError(f"the log of {self.region} is not answering: {LOG_BREAKER.failure_threshold} appends "
                                 f"in a row failed, retried after {LOG_BREAKER.open_duration_s:g} s (log breaker open)")
        try:
            ids = append_events(self._log_client, events, topology=self.topology, region=self.region)
        except InputError as exc:
            self.log_breaker.record_success()  # Redis answered (or was not needed): the batch is refused
            self.metrics.refuse_events(exc.field, count=len(events))
            raise
        except TemporaryError:
            self.log_breaker.record_failure()
            raise
        self.log_breaker.record_success()
        self.metrics.accept_events(len(ids))
        return ids

    # -- readiness -------------------------------------------------------------------------
    def _redis_answers(self) -> bool:
        try:
            return bool(self.store.ping())
        except FeatureStoreUnavailable:
            return False

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        self.flush_observed()
        now = time.time()
        summary = self.stats.summary(now)
        redis_ok = self._redis_answers()
        user_age = self._updater_lag(now) if redis_ok else None
        bundle = self._serving.bundle
        sampled = list(bundle.items.ids[:50]) if bundle is not None else []
        found: dict[str, float | None] = {}
        if redis_ok and sampled:
            try:
                found = {i: f.updated_at for i, f in self.store.get_item_features(sampled).items()}
            except FeatureStoreUnavailable:
                found = {}
        fresh = assess_freshness(  # no sampled item readable at all: none of them can be vouched for
            now=now, user_updated_at=None if user_age is None else now - user_age,
            item_updated_at=found or dict.fromkeys(sampled), bounds=FreshnessBounds.from_settings(self.topology.settings))
        stale = fresh.stale
        self.recommender.features_stale = stale
        self.metrics.observe_freshness(fresh)
        item_age = fresh.oldest_item_age_s
        refused = self.holder.refused
        drift = cell_drift(bundle.feature_stats, self.sampler.sample(), bundle.feature_names) if bundle is not None else None
        if drift is not None:
            self.metrics.observe_drift(drift)
        body = {
            "ready": True, "region": self.region, "bundle_version": self._serving.version,
            "bundle_loaded_at": self.holder.loaded_at,
            "bundle_refused": refused.to_dict() if refused else None,
            "store_error": self.holder.store_error, "index_frozen": self.holder.frozen,
            "redis_ok": redis_ok,
            "freshness": {"stale": bool(stale), "user_age_s": user_age, "oldest_item_age_s": item_age},
            "error_rate": summary.error_rate, "p99_ms": summary.p99_ms, "qps": summary.qps,
            "tier_mix": summary.tier_mix, "replication": self._replication(now),
            "breakers": {name: b.status.value for name, b in self.recommender.breakers.items()},
            "faults": {"ranking_latency_ms": self.recommender.faults.ranking_latency_ms,
                       "answer_latency_ms": list(self.recommender.faults.answer_latency_ms)},
            "drift": None if drift is None else {k: drift[k] for k in ("verdict", "rows", "max_psi", "drifted")},
        }
        return True, body

    def _updater_lag(self, now: float) -> float | None:
        """Age of the oldest event the feature updater has not applied yet (0 when caught up)."""
        try:
            client = self._peers[self.region]
            position = client.get(redis_keys.consumer_checkpoint(CONSUMER, redis_keys.EVENT_LOG))
            _, lag = stream_lag(client, stream=redis_keys.EVENT_LOG, position=parse_stream_id(position), now=now)
            return float(lag.lag_seconds)
        except Exception:  # readiness must answer; an unreadable lag is reported as unknown
            return None

    def _replication(self, now: float) -> list[dict[str, Any]]:
        try:
            pairs = collect_pairs(self.topology, self._peers, sources=[self.region], now=now)
        except Exception as exc:
            return [{"source": self.region, "error": str(exc)}]
        return [{"source": p.source, "destination": p.destination, "lag_s": p.lag_seconds, "lag_events": p.lag_events,
                 "error": p.error} for p in pairs]

    # -- chaos -----------------------------------------------------------------------------
    def check_chaos_token(self, authorization: str | None) -> tuple[int, str] | None:
        """None when allowed; else (status, message)."""
        token = bearer_token(authorization)
        if token is None:
            return 401, "a bearer token with role chaos is required"
        tokens: Mapping[str, str] = {}
        if self.settings.tokens_file and os.path.exists(self.settings.tokens_file):
            tokens = read_roles(Path(self.settings.tokens_file))
        role = tokens.get(token)
        if role is None:
            return 401, "unknown token"
        if role != "chaos":
            return 403, f"role {role!r} may not inject faults; the chaos role is required"
        return None

    def set_faults(self, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise InputError("body", "must be a JSON object")
        unknown = set(body) - set(FAULT_NAMES)
        if unknown:
            raise InputError(sorted(unknown)[0], f"unknown fault; allowed: {', '.join(FAULT_NAMES)}")
        answer_latency = _answer_latency(body["answer_latency_ms"]) if "answer_latency_ms" in body else None
        status = body.get("homepage_status", 0)
        if isinstance(status, bool) or not isinstance(status, int) or status not in HOMEPAGE_FAULT_STATUSES:
            raise InputError("homepage_status", f"must be one of {', '.join(map(str, HOMEPAGE_FAULT_STATUSES))}")
        value = body.get("ranking_latency_ms", 0)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= MAX_FAULT_LATENCY_MS:
            raise InputError("ranking_latency_ms", f"must be a number of milliseconds in 0..{MAX_FAULT_LATENCY_MS}")
        if not isinstance(body.get("freeze_index", False), bool):
            raise InputError("freeze_index", "must be true or false")
        # every field is valid: apply (a refused body changes nothing)
        if "ranking_latency_ms" in body:
            self.recommender.faults.ranking_latency_ms = float(value)
        if "freeze_index" in body:
            self.holder.frozen = body["freeze_index"]
        if "homepage_status" in body:
            self.recommender.faults.homepage_status = int(body["homepage_status"])
        if answer_latency is not None:
            self.recommender.faults.answer_latency_ms = answer_latency
        faults = self.recommender.faults
        log.warning("faults now: ranking_latency_ms=%s freeze_index=%s homepage_status=%s answer_latency_ms=%s",
                    faults.ranking_latency_ms, self.holder.frozen, faults.homepage_status, faults.answer_latency_ms)
        return {"ranking_latency_ms": faults.ranking_latency_ms, "freeze_index": self.holder.frozen,
                "homepage_status": faults.homepage_status, "answer_latency_ms": list(faults.answer_latency_ms)}


def _answer_latency(value: Any) -> tuple[float, float]:
    """[low, high] milliseconds (0 <= low <= high <= 10000), or one number for both."""
    pair = [value, value] if isinstance(value, (int, float)) and not isinstance(value, bool) else value
    if (not isinstance(pair, list) or len(pair) != 2
            or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in pair)
            or not 0 <= pair[0] <= pair[1] <= MAX_FAULT_LATENCY_MS):
        raise InputError("answer_latency_ms", f"must be [low, high] milliseconds with 0 <= low <= high <= "
                         f"{MAX_FAULT_LATENCY_MS} (or one number)")
    return float(pair[0]), float(pair[1])


__all__ = ["CLEARED_FAULTS", "FAULT_NAMES", "MAX_FAULT_LATENCY_MS", "CellRuntime", "CellSettings"]
