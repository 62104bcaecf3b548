"""One cell's request logic: the homepage ladder, similar items, frequently bought together.

The homepage goes through fallback_tiers.Ladder with four tier callables:
    full       FAISS candidates + rule retrievers -> LightGBM over serving.features   (redis, ranker)
    cached     the user's last full slate from Redis                                  (redis)
    segment    the user's segment list from the bundle, in memory
    popularity the bundle's global popularity (or the list shipped in the package), in memory
The re-ranking rules (serving.reranking) run on every tier's output with the freshest stock the
cell can get: live item features from Redis when its breaker lets us, else the bundle's catalog.
Each request holds one reference to the serving bundle, so a swap mid-request is harmless.

Off the request path (one background thread, `_bookkeeping`): live item features are kept in
arrays (serving.live_items) and re-read in the background, and full slates are cached for the
cached tier in batches (serving.slate_writer). A full ranking makes one Redis round trip in steady
state: the user's state and seen set, pipelined (FeatureStore.get_user_context).
"""
from __future__ import annotations

import json
import logging
import random
import threading
import time
from dataclasses import dataclass, replace
from importlib import resources
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from contracts.impressions import Impression, is_probe_user
from fallback_tiers.breaker import BreakerStatus, CircuitBreaker
from fallback_tiers.deadline import Deadline
from fallback_tiers.ladder import Ladder, TierSpec
from fallback_tiers.settings import LadderSettings
from fallback_tiers.tiers import DependencyFailed, ScoredItem, SkipReason, Tier, TierOutput, TierRequest
from regions.errors import InputError, ShopNowError
from regions.geo import home_geography_of
from regions.topology import Topology
from serving.bundle import LoadedBundle
from serving.feature_store import CachedSlate, FeatureStore, FeatureStoreUnavailable, ItemFeatures
from serving.live_items import LiveItemCache
from serving.reranking import ItemMeta, RerankRules, rerank
from serving.residency import personalisation_refusal
from serving.slate_writer import SlateWriter
from serving.traffic_split import Route
from serving.user_state import UserState

log = logging.getLogger(__name__)

SLATE_FLUSH_S = 0.05
"""Pending slates are written to Redis every 50 ms, in one pipeline."""
ITEM_REFRESH_S = 1.0
"""Live item features used by requests and older than serving.live_items.TTL_S are re-read every second."""
RESERVE_FACTOR = 4
"""Backfill reserve = 4x the slate: enough for stock and diversity drops, cheap for the rules."""
PACKAGED_POPULARITY = "fallback_popularity.json"


class UnknownProduct(InputError):
    def __init__(self, field_name: str, product_id: str) -> None:
        super().__init__(field_name, f"unknown product {product_id!r}: it is not in the catalog of the serving bundle")


@dataclass(frozen=True)
class Answer:
    items: tuple[ScoredItem, ...]
    tier: str
    region: str
    bundle_version: str
    skipped: tuple[tuple[str, str], ...] = ()
    stale: bool = False
    latency_ms: float = 0.0
    experiment: str = ""
    arm: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "items": [{"item_id": i.item_id, "score": round(float(i.score), 6)} for i in self.items],
            "tier": self.tier, "region": self.region, "bundle_version": self.bundle_version,
            "skipped": [{"tier": t, "reason": r} for t, r in self.skipped], "stale": self.stale,
            "latency_ms": round(self.latency_ms, 3), "experiment": self.experiment, "arm": self.arm,
        }


Admit = Callable[[Route], "tuple[Tier, float | None, Callable[[Answer | None], None]]"]
"""The cell's admission for a routed request: (best tier, deadline seconds, finish(answer))."""


@dataclass(frozen=True, eq=False)
class Serving:
    """A bundle and what the cell derives from it once per swap."""

    bundle: LoadedBundle | None
    catalog: Mapping[str, ItemMeta]
    popularity: tuple[str, ...]
    version: str
    live: LiveItemCache
    """Live item features of this catalog (a new bundle starts a new cache)."""

    @classmethod
    def of(cls, bundle: LoadedBundle | None) -> "Serving":
        if bundle is None:
            rows = packaged_popularity()
            ids = tuple(r["item_id"] for r in rows)
            return cls(bundle=None, catalog={r["item_id"]: ItemMeta(category=r["category"], brand=r["brand"]) for r in rows},
                       popularity=ids, version="packaged-popularity",
                       live=LiveItemCache(ids, {i: n for n, i in enumerate(ids)}))
        items = bundle.items
        brands = _brand_names(bundle)
        catalog = {
            item_id: ItemMeta(category=items.categories[int(items.category[n])], brand=brands[n], stock=bool(items.stock[n] > 0))
            for n, item_id in enumerate(items.ids)
        }
        return cls(bundle=bundle, catalog=catalog, popularity=tuple(bundle.item_ids(bundle.popularity)), version=bundle.version,
                   live=LiveItemCache(items.ids, items.row_of))


def _brand_names(bundle: LoadedBundle) -> list[str]:
    return [f"brand-{int(b)}" for b in bundle.items.brand]


def packaged_popularity() -> list[dict[str, str]]:
    """The popularity list shipped in the package: what a cell serves with no usable bundle."""
    text = resources.files("serving").joinpath(PACKAGED_POPULARITY).read_text()
    return list(json.loads(text))


@dataclass
class Faults:
    """Chaos faults injected through the cell's admin API (see chaos/)."""

    ranking_latency_ms: float = 0.0
    answer_latency_ms: tuple[float, float] = (0.0, 0.0)
    """(low, high): every recommendation answer (HTTP and gRPC) waits a uniform draw from this range
    before the cell works on it, outside the cell's own timing (like a starved host or a slow network
    path): the cell stays up and its readyz stays fast and unaware (a gray failure). (0, 0): off."""
    homepage_status: int = 0
    """When 404 or 500, the cell's HTTP API answers homepages with that status instead of a slate
    (a broken release; game days prove that the load counts such answers as failures). 0: off."""

    def answer_delay_s(self) -> float:
        """How long this answer waits (seconds) under the answer-latency fault; 0.0 when off."""
        low, high = self.answer_latency_ms
        return random.uniform(low, high) / 1000.0 if high > 0 else 0.0


@dataclass
class _Request:
    """What one request learns as it goes: exclusions, staleness."""

    serving: Serving
    rules: RerankRules = RerankRules()
    candidate_count: int | None = None
    shadow: bool = False
    """A shadow scoring (serving.shadow): nothing cached, no drift sample."""
    exclude: frozenset[str] = frozenset()
    stale: bool = False
    ensured: TierOutput | None = None
    """The full tier's output, whose items' live features that tier already made usable."""
    user: tuple[UserState | None, dict[str, float]] | None = None
    """The user's stored state and seen set, once read (by the first tier that needed them)."""
    user_failed: DependencyFailed | None = None
    """The failure of that read, once: later tiers of the same request do not wait on Redis again
    (a hung Redis would otherwise cost each tier its own timeout, past the request's deadline)."""


class Recommender:
    def __init__(
        self, *, region: str, topology: Topology, store: FeatureStore, serving: Callable[[], Serving],
        ladder_settings: LadderSettings = LadderSettings(), rules: RerankRules = RerankRules(),
        cache_ttl_s: float | None = None, clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        tombstones: Callable[[], frozenset[str]] = frozenset, on_anonymous: Callable[[str], None] = lambda _reason: None,
        record_impressions: Callable[[Sequence[Impression]], None] | None = None,
    ) -> None:
        self.region = region
        self.tombstones = tombstones
        """The region's deleted users (serving.residency.TombstoneView.users); never personalised."""
        self.on_anonymous = on_anonymous
        """Called with the reason when a request naming a user is answered anonymously."""
        self.topology = topology
        self.store = store
        self.feature_sampler: Any = None
        """serving.drift_monitor.FeatureSampler of the cell (None: no drift sampling)."""
        self.serving = serving
        self.ladder_settings = ladder_settings
        self.rules = rules
        self.cache_ttl_s = cache_ttl_s
        self.clock = clock
        self.sleep = sleep
        self.faults = Faults()
        self.slates = SlateWriter(self._write_slates)
        self._record_impressions = record_impressions
        self.impressions = SlateWriter(self._write_impressions, latest_only=False)
        """What known users were shown (contracts.impressions), queued like the slates and written
        by the background thread into the region's impressions stream (replication.impression_log)."""
        self._stop = threading.Event()
        self._background = threading.Thread(target=self._bookkeeping, name="cell-bookkeeping", daemon=True)
        self.features_stale = False
        """Set by the cell's freshness check (user features older than 5 min or item features
        older than 15 min); every answer carries it in `stale`."""
        self.breakers = {
            "redis": CircuitBreaker("redis", settings=ladder_settings.breaker),
            "ranker": CircuitBreaker("ranker", settings=ladder_settings.breaker),
        }
        self._ranker_breakers: dict[str, CircuitBreaker] = {}
        """The ranker breaker of each bundle beside the serving one: a slow canary opens its own
        breaker, never the serving bundle's."""
        self.router: Callable[[str | None], tuple[Route, Serving]] = lambda _user: (
            Route(version=self.serving().version), self.serving())
        """The serving plan's split (serving.traffic_split), set by the cell; default: the serving bundle."""
        self.on_answer: Callable[[str, str, int, "Answer"], None] | None = None
        """Called with (user id, geography, count, answer) after each personalised homepage (not shadow
        ones): the cell's shadow scorer samples there."""
        self._background.start()

    def close(self) -> None:
        """Stop the background thread (it writes the slates still pending first)."""
        self._stop.set()
        if self._background.is_alive():
            self._background.join(timeout=2.0)

    def _bookkeeping(self) -> None:
        """Off the request path: cache pending slates every SLATE_FLUSH_S, re-read the live item
        features requests marked every ITEM_REFRESH_S."""
        next_refresh = 0.0
        while not self._stop.wait(SLATE_FLUSH_S):
            self.slates.flush()
            self.impressions.flush()
            now = time.monotonic()
            if now >= next_refresh:
                next_refresh = now + ITEM_REFRESH_S
                self.refresh_items(now)
        self.slates.flush()
        self.impressions.flush()

    def refresh_items(self, now: float) -> int:
        """Re-read (up to a chunk of) the live item features requests marked; 0 when Redis's breaker is not closed."""
        cache = self.serving().live
        try:
            return cache.refresh(lambda ids: self._outside_tier(lambda: self.store.get_item_features(ids)), now)
        except DependencyFailed:
            return 0
        except Exception:  # the background thread must survive anything; the request path reads inline
            log.exception("live item refresh failed")
            return 0

    # -- helpers ---------------------------------------------------------------------------
    @staticmethod
    def _in_tier(call: Callable[[], Any]) -> Any:
        """A Redis call inside a tier: the ladder holds the breaker and records the outcome."""
        try:
            return call()
        except FeatureStoreUnavailable as exc:
            raise DependencyFailed("redis", str(exc)) from exc

    def _outside_tier(self, call: Callable[[], Any]) -> Any:
        """A Redis call outside any tier (live stock for the rules, caching a slate): only while
        the breaker is closed, so it never takes a half-open trial away from a tier."""
        breaker = self.breakers["redis"]
        if breaker.status is not BreakerStatus.CLOSED:
            raise DependencyFailed("redis", "the redis breaker is not closed")
        began = breaker.now()
        try:
            result = call()
        except FeatureStoreUnavailable as exc:
            breaker.record_failure(admitted_at=began)
            raise DependencyFailed("redis", str(exc)) from exc
        return result

    def _ensure_live(self, ctx: _Request, rows: np.ndarray, *, in_tier: bool = False) -> None:
        """Make the live features of `rows` usable: those without a usable value are read from Redis
        now, in one call (inside a tier a failure fails the tier; outside, the answer is stale and
        the rules trust the catalog); those merely older than the TTL are left to the background."""
        cache = ctx.serving.live
        now = time.monotonic()
        missing = cache.unusable(rows, now)
        if len(missing):
            ids = [cache.ids[r] for r in missing.tolist()]
            call = lambda: self.store.get_item_features(ids)  # noqa: E731
            try:
                fetched: Mapping[str, ItemFeatures] = self._in_tier(call) if in_tier else self._outside_tier(call)
            except DependencyFailed:
                ctx.stale = True
                if in_tier:
                    raise
            else:
                cache.store(missing, fetched, now)
        cache.mark(rows, now)
        if cache.refresh_failed:
            ctx.stale = True

    def _user_context(self, ctx: _Request, user_id: str, *, surface: str,
                      in_tier: bool) -> tuple[UserState | None, dict[str, float]]:
        """The user's state and seen set, read once per request (one pipelined call), and the
        request's exclusions from them: the cart and what the bundle's seen policy for `surface`
        forbids (serving.seen_items, the function the offline evaluation applies). Inside a tier a
        failure fails the tier; outside (the in-memory tiers, similar, cart) it is read only while
        Redis's breaker is closed, and without it nothing of the user's is excluded."""
        if ctx.user is not None:
            return ctx.user
        if ctx.user_failed is not None:
            if in_tier:
                raise ctx.user_failed
            return None, {}
        bundle = ctx.serving.bundle
        if bundle is None:
            return None, {}
        call = lambda: self.store.get_user_context(user_id, kinds=bundle.seen_policy.of(surface).kinds)  # noqa: E731
        try:
            ctx.user = self._in_tier(call) if in_tier else self._outside_tier(call)
        except DependencyFailed as exc:
            ctx.user_failed = exc
            if in_tier:
                raise
            return None, {}
        stored, seen = ctx.user
        ctx.exclude = ctx.exclude | frozenset(stored.cart if stored else ()) | \
            bundle.not_again(seen, now=self.clock(), surface=surface)
        return ctx.user

    def _rules(self, ctx: _Request) -> Callable[[TierOutput, int], tuple[ScoredItem, ...]]:
        def apply(output: TierOutput, count: int) -> tuple[ScoredItem, ...]:
            cache = ctx.serving.live
            if not ctx.stale and output is not ctx.ensured:
                self._ensure_live(ctx, cache.rows([i.item_id for i in output.items] + [i.item_id for i in output.reserve]))
            return rerank(output.items, reserve=output.reserve, count=count, catalog=ctx.serving.catalog,
                          stock=cache.stock_view(), rules=ctx.rules, exclude=ctx.exclude)
        return apply

    # -- tiers -----------------------------------------------------------------------------
    def _full(self, ctx: _Request, user_id: str, geo: str) -> Callable[[TierRequest, float], TierOutput]:
        def fetch(request: TierRequest, budget_s: float) -> TierOutput:
            began = time.monotonic()
            bundle = ctx.serving.bundle
            assert bundle is not None
            now = self.clock()
            stored, _seen = self._user_context(ctx, user_id, surface="home", in_tier=True)
            state = stored or UserState()
            vector = bundle.user_embedding(user_id, state)
            segment = bundle.user_segment.get(user_id) or bundle.segment_of({"geo": geo})
            cands = bundle.candidates(state=state, user_vector=vector, segment_key=segment, now=now,
                                      ann_k=ctx.candidate_count)
            self._ensure_live(ctx, cands.rows, in_tier=True)
            live = ctx.serving.live.live(cands.rows)
            if self.faults.ranking_latency_ms > 0:
                spent = time.monotonic() - began
                delay_s = self.faults.ranking_latency_ms / 1000.0
                self.sleep(max(min(delay_s, budget_s - spent), 0.0))
                if delay_s > budget_s - spent:
                    raise DependencyFailed("ranker", f"ranker slower than the {budget_s * 1000:.0f} ms stage budget (injected)")
            try:
                scores = bundle.rank(state, cands, now, user_vector=vector, live=live)
                if self.feature_sampler is not None and not ctx.shadow:
                    self.feature_sampler.maybe(lambda: bundle.features(state=state, user_vector=vector, candidates=cands,
                                                                       now=now, live=live))
            except (ShopNowError, ValueError) as exc:
                raise DependencyFailed("ranker", f"ranking failed: {exc}") from exc
            top = np.argsort(-scores, kind="stable")[: request.count * (1 + RESERVE_FACTOR)]
            ids = bundle.items.ids
            scored = tuple(ScoredItem(ids[r], s) for r, s in zip(cands.rows[top].tolist(), scores[top].tolist()))
            ctx.ensured = TierOutput(items=scored[: request.count], reserve=scored[request.count:])
            return ctx.ensured
        return fetch

    def _cached(self, ctx: _Request, user_id: str) -> Callable[[TierRequest, float], TierOutput]:
        def fetch(request: TierRequest, budget_s: float) -> TierOutput:
            self._user_context(ctx, user_id, surface="home", in_tier=True)
            slate: CachedSlate | None = self._in_tier(lambda: self.store.get_cached_slate(user_id))
            if slate is None:
                return TierOutput(items=())
            scored = tuple(ScoredItem(i, s) for i, s in zip(slate.item_ids, slate.scores))
            return TierOutput(items=scored[: request.count], reserve=scored[request.count:])
        return fetch

    def _segment(self, ctx: _Request, user_id: str, geo: str) -> Callable[[TierRequest, float], TierOutput]:
        def fetch(request: TierRequest, budget_s: float) -> TierOutput:
            bundle = ctx.serving.bundle
            assert bundle is not None
            if user_id:
                self._user_context(ctx, user_id, surface="home", in_tier=False)
            key = (bundle.user_segment.get(user_id) if user_id else None) or bundle.segment_of({"geo": geo})
            rows = bundle.segment_list(key)[: request.count * (1 + RESERVE_FACTOR)]
            return TierOutput.from_ids(bundle.item_ids(rows), count=request.count)
        return fetch

    def _popularity(self, ctx: _Request, user_id: str | None = None) -> Callable[[TierRequest, float], TierOutput]:
        def fetch(request: TierRequest, budget_s: float) -> TierOutput:
            if user_id:
                self._user_context(ctx, user_id, surface="home", in_tier=False)
            return TierOutput.from_ids(ctx.serving.popularity[: max(request.count * (1 + RESERVE_FACTOR), 50)], count=request.count)
        return fetch

    # -- surfaces --------------------------------------------------------------------------
    def _breakers(self, routed: Route) -> Mapping[str, CircuitBreaker]:
        if routed.version == self.serving().version:
            return self.breakers
        breaker = self._ranker_breakers.get(routed.version)
        if breaker is None:
            if len(self._ranker_breakers) > 8:  # versions come and go with rollouts; keep a few
                self._ranker_breakers.clear()
            breaker = self._ranker_breakers[routed.version] = CircuitBreaker("ranker", settings=self.ladder_settings.breaker)
        return {**self.breakers, "ranker": breaker}

    def homepage(self, *, user_id: str | None, count: int, max_tier: Tier = Tier.FULL,
                 deadline_s: float | None = None, geography: str = "",
                 routed: tuple[Route, Serving] | None = None, remember: bool = True,
                 admit: Admit | None = None) -> Answer:
        """`geography`: the user's home geography as the caller (the edge) computed it; "" computes
        it here, once. A named geography must exist; residency is still checked by the feature store.
        `routed`: the route and its bundle (shadow scoring); default: the serving plan's split for this user.
        `remember`: cache a full slate for the cached tier (shadow answers are not cached).
        `admit`: the cell's admission gate, asked once the request is routed (so each bundle counts
        against its own limit): route -> (best tier, deadline, finish); `finish(answer)` is called
        when the ladder is done (None when it raised). It overrides `max_tier` and `deadline_s`."""
        started = time.perf_counter()
        geo = ""
        request = TierRequest(user_id=user_id, count=count, max_tier=max_tier)  # the ladder's view: as asked
        if user_id is not None:
            geo = self.topology.geography(geography).name if geography else home_geography_of(user_id, self.topology)
            refusal = personalisation_refusal(self.topology, region=self.region, user_id=user_id, geography=geo,
                                              tombstones=self.tombstones())
            if refusal:  # anonymous: the serving geography's segment, then popularity; nothing of the user's is read
                self.on_anonymous(refusal)
                user_id = None
        route, serving = routed or self.router(user_id)
        finish: Callable[["Answer | None"], None] | None = None
        if admit is not None:
            max_tier, deadline_s, finish = admit(route)
            request = replace(request, max_tier=max_tier)
        ctx = _Request(serving=serving, rules=self.rules.with_overrides(route.rules) if route.rules else self.rules,
                       candidate_count=route.candidate_count, shadow=not remember)
        specs = [TierSpec(Tier.POPULARITY, self._popularity(ctx, user_id))]
        if user_id is None and geo and serving.bundle is not None:
            specs = [TierSpec(Tier.SEGMENT, self._segment(ctx, "", self.topology.region(self.region).geography)), *specs]
        if user_id is not None and serving.bundle is not None:
            specs = [
                TierSpec(Tier.FULL, self._full(ctx, user_id, geo), frozenset({"redis", "ranker"})),
                TierSpec(Tier.CACHED, self._cached(ctx, user_id), frozenset({"redis"})),
                TierSpec(Tier.SEGMENT, self._segment(ctx, user_id, geo)),
                *specs,
            ]
        elif user_id is not None:
            specs = [TierSpec(Tier.CACHED, self._cached(ctx, user_id), frozenset({"redis"})), *specs]
        ladder = Ladder(tiers=specs, breakers=self._breakers(route), post_process=self._rules(ctx),
                        settings=self.ladder_settings)
        deadline = Deadline.start(deadline_s if deadline_s is not None else self.ladder_settings.deadline_s)
        answer: Answer | None = None
        try:
            result = ladder.run(request, deadline)
            answer = Answer(
                items=result.items, tier=result.tier.value, region=self.region, bundle_version=serving.version,
                skipped=tuple((t.value, r.value) for t, r in result.skipped),
                stale=ctx.stale or self.features_stale, latency_ms=(time.perf_counter() - started) * 1000,
                experiment=route.experiment, arm=route.arm,
            )
        finally:
            if finish is not None:
                finish(answer)
        assert answer is not None  # the ladder returned
        if result.tier is Tier.FULL and user_id is not None and remember:
            self._remember(user_id, result.items, serving.version)
        if remember and user_id is not None and answer.items and self._record_impressions is not None \
                and not is_probe_user(user_id):
            self.impressions.offer(user_id, Impression.new(  # shadow answers (remember=False) were never shown
                user_id=user_id, items=tuple(i.item_id for i in answer.items), ts=self.clock(), region=self.region,
                bundle_version=answer.bundle_version, tier=answer.tier, experiment=answer.experiment, arm=answer.arm))
        if remember and user_id is not None and self.on_answer is not None:
            self.on_answer(user_id, geo, count, answer)
        return answer

    def _write_impressions(self, queued: Sequence[tuple[str, Impression]]) -> None:
        """Only a user served personally in this region is recorded (an anonymous answer names nobody), so
        residency holds; a failed write drops the batch (counted in `impressions.dropped`)."""
        assert self._record_impressions is not None
        self._record_impressions([imp for _, imp in queued])

    def _remember(self, user_id: str, items: Sequence[ScoredItem], version: str) -> None:
        """Cache the full slate for the cached tier, off the request path: queued here, written by
        the background thread in batches (serving.slate_writer). When the writer falls behind,
        slates are dropped: it is a cache, the next full answer refreshes it."""
        slate = CachedSlate(item_ids=tuple(i.item_id for i in items), scores=tuple(i.score for i in items),
                            bundle_version=version, tier=Tier.FULL.value, created_at=self.clock())
        self.slates.offer(user_id, slate)

    def _write_slates(self, slates: Sequence[tuple[str, CachedSlate]]) -> None:
        try:
            self._outside_tier(lambda: self.store.put_cached_slates(slates, ttl_s=self.cache_ttl_s))
        except DependencyFailed:
            log.debug("could not cache %d slates", len(slates))
        except InputError:  # one user this region may not hold: refused alone, the others are cached
            for one in slates:
                try:
                    self._outside_tier(lambda: self.store.put_cached_slates([one], ttl_s=self.cache_ttl_s))
                except (DependencyFailed, InputError) as exc:
                    log.debug("could not cache the slate of %s: %s", one[0], exc)

    def _seen_for(self, ctx: _Request, user_id: str | None, *, surface: str, geography: str) -> None:
        """On similar and cart: exclude what the user consumed (the surface's seen policy), when
        the request names a user whose personal data this region may read, and Redis answers."""
        if not user_id or ctx.serving.bundle is None:
            return
        geo = self.topology.geography(geography).name if geography else home_geography_of(user_id, self.topology)
        refusal = personalisation_refusal(self.topology, region=self.region, user_id=user_id, geography=geo,
                                          tombstones=self.tombstones())
        if refusal:
            self.on_anonymous(refusal)
            return
        self._user_context(ctx, user_id, surface=surface, in_tier=False)

    def similar(self, *, product_id: str, count: int, user_id: str | None = None, geography: str = "") -> Answer:
        started = time.perf_counter()
        serving = self.serving()
        ctx = _Request(serving=serving, rules=self.rules, exclude=frozenset({product_id}))
        bundle = serving.bundle
        row = bundle.items.row_of.get(product_id) if bundle is not None else None
        if bundle is None or row is None:
            raise UnknownProduct("product_id", product_id)
        self._seen_for(ctx, user_id, surface="similar", geography=geography)
        rows, scores = bundle.ann_candidates(bundle.items.embeddings[row], count * (1 + RESERVE_FACTOR) + 1)
        scored = [ScoredItem(bundle.items.ids[int(r)], float(s)) for r, s in zip(rows, scores) if int(r) != row]
        items = self._rules(ctx)(TierOutput(items=tuple(scored[:count]), reserve=tuple(scored[count:]) + _backfill(serving, count)), count)
        tier = Tier.FULL.value if scored else Tier.POPULARITY.value
        return Answer(items=tuple(items), tier=tier, region=self.region, bundle_version=serving.version,
                      stale=ctx.stale or self.features_stale, latency_ms=(time.perf_counter() - started) * 1000)

    def cart(self, *, cart_items: Sequence[str], count: int, user_id: str | None = None, geography: str = "") -> Answer:
        started = time.perf_counter()
        serving = self.serving()
        ctx = _Request(serving=serving, rules=self.rules, exclude=frozenset(cart_items))
        bundle = serving.bundle
        if bundle is None:
            raise UnknownProduct("cart_items", ",".join(cart_items))
        for item_id in cart_items:
            if item_id not in bundle.items.row_of:
                raise UnknownProduct("cart_items", item_id)
        self._seen_for(ctx, user_id, surface="cart", geography=geography)
        seen: dict[str, float] = {}
        for item_id in cart_items:
            for rank, r in enumerate(bundle.items.copurchase[bundle.items.row_of[item_id]]):
                other = bundle.items.ids[int(r)]
                seen[other] = seen.get(other, 0.0) + 1.0 / (1 + rank)
        ranked = sorted(seen.items(), key=lambda kv: (-kv[1], kv[0]))
        scored = tuple(ScoredItem(i, s) for i, s in ranked)
        items = self._rules(ctx)(TierOutput(items=scored[:count], reserve=scored[count:] + _backfill(serving, count)), count)
        tier = Tier.FULL.value if scored else Tier.POPULARITY.value
        return Answer(items=tuple(items), tier=tier, region=self.region, bundle_version=serving.version,
                      stale=ctx.stale or self.features_stale, latency_ms=(time.perf_counter() - started) * 1000)


def _backfill(serving: Serving, count: int) -> tuple[ScoredItem, ...]:
    """Popularity behind a short similar/cart list, so that the slate keeps its length."""
    return TierOutput.from_ids(serving.popularity[: count * (1 + RESERVE_FACTOR)], count=0).reserve


__all__ = ["Answer", "Recommender", "Serving", "UnknownProduct", "SkipReason", "packaged_popularity"]
