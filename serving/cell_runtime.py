"""One region's cell, assembled: feature store, bundle holder and watcher, recommender, event log,
metrics, request statistics, readiness and chaos faults. The HTTP and gRPC servers both call it.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import os
import random
import threading
import time
from collections import deque
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

from contracts.bearer import bearer_token
from contracts.environment import EnvVar, load_settings
from contracts.events import Event
from contracts.impressions import Impression
from contracts.serving_plan import ServingPlan
from fallback_tiers.admission import AdmissionSettings
from fallback_tiers.tiers import SkipReason, Tier
from fallback_tiers.breaker import CircuitBreaker
from fallback_tiers.settings import BreakerSettings, LadderSettings
from regions import redis_keys
from regions.errors import InputError, ShopNowError, TemporaryError
from regions.tokens import read_roles
from regions.topology import Topology
from replication.artifact_store import ArtifactStore
from online_metrics.from_logs import measure_region
from replication.impression_log import append_impressions
from replication.interaction_log import append_events, parse_batch
from replication.redis_io import ClientSettings, connect
from replication.lag import parse_stream_id
from replication.metrics import collect_pairs, stream_lag
from serving.admission_gate import SERVING_LANE, AdmissionGate, Ticket
from serving.admission_metrics import AdmissionMetrics
from serving.bundle import LoadedBundle
from serving.bundle_holder import BundleHolder, BundleWatcher, Refusal
from serving.bundle_residency import residency_check
from serving.cold_start import add_items
from serving.cell_gauges import CellGauges
from serving.feature_store import (
    FeatureStore, FeatureStoreUnavailable, FreshnessBounds, assess_freshness, item_features_of,
)
from serving.feature_updater import CONSUMER
from serving.drift_monitor import FeatureSampler, SamplerSettings, cell_drift
from serving.item_feed import new_item_rows
from serving.metrics import CellMetrics
from serving.recommender import Answer, Recommender, Serving
from serving.request_stats import RequestStats
from serving.residency import TombstoneView
from serving.shadow import Offer, ShadowScorer
from serving.traffic_split import Route, route, shadow_due

log = logging.getLogger(__name__)

HOMEPAGE_FAULT_STATUSES = (0, 404, 500)
"""Chaos fault homepage_status: off, or the status the HTTP API answers homepages with."""
MAX_FAULT_LATENCY_MS = 10_000
"""Largest latency a chaos fault may add (POST /admin/faults ranking_latency_ms and answer_latency_ms, 0..10000)."""
FAULT_NAMES = ("answer_latency_ms", "freeze_index", "homepage_status", "ranking_latency_ms")
"""What POST /admin/faults sets; DELETE /admin/faults turns every one off (CLEARED_FAULTS)."""
CLEARED_FAULTS = {"ranking_latency_ms": 0, "freeze_index": False, "homepage_status": 0, "answer_latency_ms": [0, 0]}


MAX_REQUEST_SLOTS = 256
"""CellSettings.request_slots at most."""


@dataclass(frozen=True)
class CellSettings:
    bundle_poll_s: float = 2.0
    """A promoted bundle reaches every cell within ~2 s; polling a pointer file or object is cheap."""
    catalog_sync_s: float = 300.0
    """The local stack's item feed: live item features are re-seeded from the bundle's catalog every
    5 min (well inside the 15 min item-freshness bound). A real deployment feeds them from inventory."""
    readiness_redis_timeout_s: float = 0.1
    """/readyz must answer fast even when a peer's Redis hangs."""
    drift_interval_s: float = 2.0
    """The drift metrics (shopnow_cell_feature_psi & co.) are recomputed every 2 s from the sample
    (PSI of a few thousand rows: about a millisecond), whether or not anyone asks /readyz."""
    tokens_file: str = ""
    """JSON {token: role}; the chaos role may inject faults. Empty: fault injection is refused."""
    request_slots: int = 4
    """Recommendation requests (homepage, similar, cart) the HTTP server computes at once; the rest
    wait for a slot on the event loop, with no thread, and that wait counts as queued for admission
    (serving.admission_gate). The HTTP server's event loop runs its protocol and middleware in Python
    and needs the interpreter lock for every request: with the 40 threads of the threadpool all
    runnable, a half-core cell's loop got the lock so rarely that at the onset of 140 req/s requests
    waited unseen, before their arrival stamp, up to the 1 s client timeout. gRPC keeps its 16
    executor workers: its I/O is in the C core, and slots there were not shown to help
    (docs/gamedays.md, "Request slots")."""

    def __post_init__(self) -> None:
        slots = self.request_slots
        if isinstance(slots, bool) or not isinstance(slots, int) or not 1 <= slots <= MAX_REQUEST_SLOTS:
            raise InputError("request_slots", f"{slots!r} is not allowed; use a whole number in 1..{MAX_REQUEST_SLOTS}.")

    @classmethod
    def from_env(cls, environ: Mapping[str, str], *, base: "CellSettings | None" = None) -> "CellSettings":
        """`base` overridden by REGIONCTL_CELL_REQUEST_SLOTS when set (any other REGIONCTL_CELL_* is refused)."""
        return load_settings(base or cls(), environ, prefix="REGIONCTL_CELL_", what="cell setting",
                             variables={"REGIONCTL_CELL_REQUEST_SLOTS": EnvVar("request_slots")})


RANKED_REASONS = frozenset({SkipReason.TIMEOUT.value, SkipReason.ERROR.value, SkipReason.EMPTY.value,
                            SkipReason.TOO_FEW.value})
"""A full tier skipped for these reasons did run (late, failed or short): its round trip counts."""

LOG_BREAKER = BreakerSettings(failure_threshold=2, open_duration_s=5.0)
"""Two unacknowledged appends in a row (each already waited the log client's 1 s timeout and one
retry: not a busy moment) open the log's breaker for 5 s."""


def _ranked(answer: Answer) -> bool:
    """A full ranking ran to its end for this answer (it served, or came back late, failed or short)."""
    return answer.tier == Tier.FULL.value or any(t == Tier.FULL.value and r in RANKED_REASONS for t, r in answer.skipped)


OBSERVED_BACKLOG = 50_000
"""Answered requests waiting to be counted (flushed every second, and before /readyz and /metrics)."""


class CellRuntime:
    def __init__(self, *, topology: Topology, region: str, store: FeatureStore, artifacts: ArtifactStore,
                 cache_dir: Path, settings: CellSettings = CellSettings(),
                 ladder_settings: LadderSettings = LadderSettings(),
                 sampler_settings: SamplerSettings = SamplerSettings(),
                 admission_settings: AdmissionSettings = AdmissionSettings()) -> None:
        self.topology = topology
        self.region = region
        self.settings = settings
        self.store = store
        self.metrics = CellMetrics(region=region)
        self.stats = RequestStats()
        self._observed: deque[tuple[float, str, str, bool, float, Any, str, str]] = deque(maxlen=OBSERVED_BACKLOG)
        self.version_stats: dict[str, RequestStats] = {}
        """Homepage requests per bundle version that ranked them (the rollout's gates compare them)."""
        self._serving = Serving.of(None)
        self._side: dict[str, Serving] = {}
        self._plan_revision = 0
        """Bundles held beside the serving one, by version (the serving plan's candidate and arms)."""
        self.holder = BundleHolder(store=artifacts, cache_dir=cache_dir, on_swap=self._on_swap, on_refuse=self._on_refuse,
                                   on_plan=self._on_plan,
                                   extra_checks=(residency_check(topology, topology.region(region).geography),))
        quick = ClientSettings(connect_timeout_s=settings.readiness_redis_timeout_s,
                               socket_timeout_s=settings.readiness_redis_timeout_s, retries=0)
        self._peers = {name: connect(topology, name, settings=quick) for name, r in topology.regions.items()
                       if r.geography == topology.region(region).geography}
        self.tombstones = TombstoneView(self._peers[region])
        self.recommender = Recommender(region=region, topology=topology, store=store, serving=lambda: self._serving,
                                       ladder_settings=ladder_settings, tombstones=lambda: self.tombstones.users,
                                       on_anonymous=lambda reason: self.metrics.anonymous_answers.labels(reason=reason).inc(),
                                       record_impressions=self._record_impressions)
        self.recommender.router = self._route
        self.recommender.on_answer = self._maybe_shadow
        self.shadow = ShadowScorer(self._shadow_score, on_compare=self._shadow_compared)
        self.sampler = FeatureSampler(sampler_settings)
        self.recommender.feature_sampler = self.sampler
        self.log_breaker = CircuitBreaker("log", settings=LOG_BREAKER)
        self._log_client = connect(topology, region, settings=ClientSettings(connect_timeout_s=0.2, socket_timeout_s=1.0, retries=1))
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._seeded_version: str | None = None
        self._serving_lock = threading.Lock()
        self._new_items_known = -1
        """How many rows of catalog:new the serving catalog was last synced with (-1: never)."""
        self.new_items: tuple[str, ...] = ()
        """Items added to the serving catalog by content since the bundle was loaded (serving.cold_start)."""
        self.metrics.registry.register(CellGauges(self, redis_ok=self._redis_answers))
        self.admission = AdmissionGate(admission_settings)
        self.metrics.registry.register(AdmissionMetrics(self.admission))

    # -- bundle ----------------------------------------------------------------------------
    def _on_swap(self, bundle: LoadedBundle) -> None:
        with self._serving_lock:
            self._serving = Serving.of(bundle)
            self._new_items_known, self.new_items = -1, ()
        self.sampler.reset()
        self.metrics.set_bundle(bundle.version, loaded_at=time.time())
        self._seed_items(bundle)

    def _on_plan(self, plan: ServingPlan, side: dict[str, LoadedBundle]) -> None:
        if plan.revision != self._plan_revision:  # another stage: its figures start afresh
            self._plan_revision = plan.revision
            self.version_stats.clear()
            self.shadow.reset()
        current = self._side
        self._side = {v: (current[v] if v in current and current[v].bundle is b else self._beside(b)) for v, b in side.items()}

    def _beside(self, bundle: LoadedBundle) -> Serving:
        """A bundle held beside the serving one; with the same catalog it shares the serving bundle's
        live item features (item data, not model: a candidate starts warm, so shadow and canary
        figures compare the models, not a cold cache)."""
        fresh = Serving.of(bundle)
        serving = self._serving.bundle
        if serving is not None and list(serving.items.ids) == list(bundle.items.ids):
            return dataclasses.replace(fresh, live=self._serving.live)
        return fresh

    def _route(self, user_id: str | None) -> tuple[Route, Serving]:
        serving, side = self._serving, self._side
        routed = route(self.holder.plan, user_id, serving_version=serving.version, held=side.keys())
        return routed, (serving if routed.version == serving.version else side[routed.version])

    def _maybe_shadow(self, user_id: str, geography: str, count: int, answer: Any) -> None:
        plan, side = self.holder.plan, self._side
        if shadow_due(plan, random.random(), held=side.keys(), answered_by=answer.bundle_version, tier=answer.tier):
            assert plan.candidate is not None
            self.shadow.offer(Offer(user_id=user_id, geography=geography, count=count,
                                    serving_items=tuple(i.item_id for i in answer.items), serving_ms=answer.latency_ms,
                                    candidate=plan.candidate))

    def _shadow_score(self, offer: Offer) -> tuple[tuple[str, ...], float, bool]:
        candidate = self._side.get(offer.candidate)
        if candidate is None:
            raise ShopNowError(f"candidate {offer.candidate} is no longer held")
        answer = self.recommender.homepage(user_id=offer.user_id, count=offer.count, geography=offer.geography,
                                           routed=(Route(version=offer.candidate), candidate), remember=False)
        return tuple(i.item_id for i in answer.items), answer.latency_ms, answer.tier == "full"

    def _shadow_compared(self, row: Any) -> None:
        self.metrics.observe_shadow(self.shadow.summary()["candidate"] or "", error=row.error, overlap=row.overlap,
                                    rank_corr=row.rank_corr, candidate_ms=row.candidate_ms)

    def _on_refuse(self, refusal: Refusal) -> None:
        self.metrics.refuse_bundle(refusal.check)

    def _seed_items(self, bundle: LoadedBundle) -> None:
        """Publish the bundle's time constants (regions.redis_keys.TIME_CONSTANTS) and write its
        catalog (already in memory) into the region's item features: the local stack's stand-in for
        inventory, except the items the item feed (serving.item_feed) updated within the item
        freshness bound (its values are newer)."""
        try:  # the feature updater decays interest with the bundle's half-life (serving.time_constants)
            self._log_client.set(redis_keys.TIME_CONSTANTS, bundle.time_constants.dumps())
        except Exception as exc:  # retried with the catalog sync
            log.warning("could not publish the time constants of %s: %s", bundle.version, exc)
            return
        try:
            now = time.time()
            self.store.seed_item_features(item_features_of(bundle.items, updated_at=now), now=now,
                                          keep_feed_s=self.topology.settings.item_freshness_s)
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

    def sync_new_items(self) -> int:
        """Add the items of `catalog:new` (serving.item_feed) that the serving catalog lacks, placed
        by content (serving.cold_start.add_items); returns how many were added. The answers keep the
        bundle's version; /readyz lists the added items under `new_items`."""
        serving = self._serving
        bundle = serving.bundle
        if bundle is None or bundle.item_rows is None:
            return 0
        try:
            count = int(self._log_client.hlen(redis_keys.NEW_ITEMS))
            if count == self._new_items_known:
                return 0
            rows = new_item_rows(self._log_client.hgetall(redis_keys.NEW_ITEMS)) if count else []
        except Exception as exc:  # a Redis outage: the next sync retries
            log.debug("could not read %s: %s", redis_keys.NEW_ITEMS, exc)
            return 0
        fresh = [r for r in rows if str(r["item_id"]) not in bundle.items.row_of]
        grown = None
        if fresh:
            try:
                grown = add_items(bundle, fresh)
            except ShopNowError as exc:
                log.warning("new items not added: %s", exc)
                return 0
        with self._serving_lock:
            if self._serving is not serving:  # a bundle swap meanwhile: the next sync starts over
                return 0
            if grown is not None:
                self._serving = replace(Serving.of(grown), version=serving.version)
                self.new_items = self.new_items + tuple(str(r["item_id"]) for r in fresh)
            self._new_items_known = count
        if grown is not None:
            log.info("added %d new items by content: %s", len(fresh), ", ".join(str(r["item_id"]) for r in fresh[:5]))
        return len(fresh)

    def drift(self) -> dict[str, Any] | None:
        """The drift report of the sampled feature vectors (also recorded in the metrics); None
        without a bundle or without training feature stats."""
        bundle = self._serving.bundle
        report = cell_drift(bundle.feature_stats, self.sampler.sample(), bundle.feature_names) if bundle is not None else None
        if report is not None:
            self.metrics.observe_drift(report)
        return report

    def _catalog_sync(self) -> None:
        next_sync = time.monotonic() + self.settings.catalog_sync_s
        next_drift = 0.0
        while not self._stop.wait(1.0):
            self.flush_observed()
            self.sync_new_items()
            if time.monotonic() >= next_drift:
                next_drift = time.monotonic() + self.settings.drift_interval_s
                try:
                    self.drift()
                except Exception:  # the sync thread must survive; /readyz reports the error
                    log.exception("drift check failed")
            bundle = self._serving.bundle
            if bundle is None:
                continue
            if self._seeded_version != bundle.version or time.monotonic() >= next_sync:
                self._seed_items(bundle)
                next_sync = time.monotonic() + self.settings.catalog_sync_s

    def stop(self) -> None:
        self._stop.set()
        self.shadow.close()
        self.recommender.close()
        self.tombstones.stop()
        for thread in self._threads:
            if isinstance(thread, BundleWatcher):
                thread.stop()

    # -- requests --------------------------------------------------------------------------
    def observe(self, *, surface: str, tier: str, ok: bool, latency_ms: float, skipped: Any = (),
                version: str = "", experiment: str = "") -> None:
        """Count an answered request: queued here (an atomic append, no lock, no metric lookups on
        the request path); `flush_observed` applies it to the request stats and the metrics.
        `version`: the bundle that ranked a homepage; `experiment`: the experiment that bucketed it."""
        self._observed.append((time.time(), surface, tier, ok, latency_ms, skipped, version, experiment))

    def homepage(self, *, user_id: str | None, count: int, asked: Tier, deadline_s: float, geography: str,
                 arrived_at: float | None) -> Answer:
        """A homepage through the admission gate (serving.admission_gate): the tiers it may use are
        decided from the time it queued since `arrived_at` (monotonic; None: not stamped) and the full
        rankings in flight of the bundle it is routed to (routed first: a candidate has its own
        limit); with admission on, its deadline counts from its arrival."""
        gate = self.admission
        tickets: list[Ticket] = []

        def admit(routed: Route) -> tuple[Tier, float, Any]:
            lane = SERVING_LANE if routed.version == self._serving.version else routed.version
            ticket = gate.admit(asked=asked, arrived_at=arrived_at, lane=lane)
            tickets.append(ticket)
            budget = gate.remaining_s(ticket, deadline_s) if gate.settings.enabled else deadline_s
            return ticket.admission.max_tier, budget, lambda answer: gate.done(
                ticket, ranked=answer is not None and _ranked(answer))

        answer = self.recommender.homepage(user_id=user_id, count=count, max_tier=asked, deadline_s=deadline_s,
                                           geography=geography, admit=admit)
        reason = tickets[0].admission.reason
        if reason is None:
            return answer
        lowered = {t.value for t in Tier.ladder() if asked.rank <= t.rank < tickets[0].admission.max_tier.rank}
        skipped = tuple((t, f"admission_{reason.value}" if t in lowered else r) for t, r in answer.skipped)
        return replace(answer, skipped=skipped)

    def flush_observed(self) -> None:
        """Apply the queued observations (the catalog-sync thread does every second; /readyz and
        /metrics do first, so what they show includes every answer given before them)."""
        pending = self._observed
        while pending:
            try:
                at, surface, tier, ok, latency_ms, skipped, version, experiment = pending.popleft()
            except IndexError:  # another thread took the last one
                return
            self.stats.record(at=at, latency_ms=latency_ms, ok=ok, tier=tier)
            if version and surface == "homepage":
                self._version_stats(version).record(at=at, latency_ms=latency_ms, ok=ok, tier=tier)
                routed = "experiment" if experiment else ("canary" if version == self.holder.plan.candidate else "serving")
                self.metrics.routed_answers.labels(bundle_version=version, route=routed).inc()
            if ok:
                self.metrics.observe_request(surface=surface, tier=tier, status="ok", latency_ms=latency_ms, skipped=skipped)

    def _version_stats(self, version: str) -> RequestStats:
        stats = self.version_stats.get(version)
        if stats is None:
            if len(self.version_stats) >= 8:  # versions come and go with rollouts: keep the newest few
                self.version_stats.pop(next(iter(self.version_stats)))
            stats = self.version_stats[version] = RequestStats()
        return stats

    def rollout_view(self, now: float) -> dict[str, Any]:
        """What /readyz says about the serving plan: the plan, the bundles held, per-version figures, shadow."""
        plan = self.holder.plan
        by_version = {}
        for version, stats in list(self.version_stats.items()):
            s = stats.summary(now)
            if s.requests:
                by_version[version] = {"requests": s.requests, "error_rate": s.error_rate, "p99_ms": s.p99_ms,
                                       "p50_ms": s.p50_ms,
                                       "tier_mix": s.tier_mix}
        return {"revision": plan.revision, "candidate": plan.candidate, "canary_percent": plan.canary_percent,
                "shadow_percent": plan.shadow_percent, "experiment": plan.experiment.id if plan.experiment else None,
                "held": sorted(self._side), "plan_error": self.holder.plan_error, "by_version": by_version,
                "shadow": self.shadow.summary()}

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

    def _record_impressions(self, impressions: Sequence[Impression]) -> None:
        append_impressions(self._log_client, impressions, topology=self.topology, region=self.region)

    def online_metrics(self, *, since_ts: float, until_ts: float | None, by: str, experiment: str | None,
                       outcomes_until_ts: float | None = None) -> dict[str, Any]:
        """Per-variant totals of what this cell showed (online_metrics.from_logs): counts and sums
        only, no user id, so a controller anywhere may read them. InputError names a bad parameter."""
        if not math.isfinite(since_ts) or since_ts < 0:
            raise InputError("since_ts", f"must be epoch seconds >= 0, got {since_ts!r}")
        if until_ts is not None and (not math.isfinite(until_ts) or until_ts < since_ts):
            raise InputError("until_ts", f"must be epoch seconds >= since_ts, got {until_ts!r}")
        if outcomes_until_ts is not None and (not math.isfinite(outcomes_until_ts) or outcomes_until_ts < since_ts):
            raise InputError("outcomes_until_ts", f"must be epoch seconds >= since_ts, got {outcomes_until_ts!r}")
        self.recommender.impressions.flush()
        got = measure_region(self._log_client, topology=self.topology, region=self.region, since_ts=since_ts,
                             until_ts=until_ts, by=by, experiment=experiment, outcomes_until_ts=outcomes_until_ts)
        return {"region": self.region, "by": by, "experiment": experiment, "since_ts": since_ts, "until_ts": until_ts,
                "totals": {k: t.to_dict() for k, t in got.totals.items()}, "impressions_read": got.impressions_read,
                "events_read": got.events_read, "malformed": got.malformed,
                "impressions_dropped": self.recommender.impressions.dropped}

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
        drift = self.drift()
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
            "rollout": self.rollout_view(now),
            "new_items": list(self.new_items),
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
