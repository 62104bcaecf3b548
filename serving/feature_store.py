"""The feature store of one region: a thin adapter over that region's Redis.

What it holds (keys: regions.redis_keys):
- user session state  `uf:<user>`    hash, serving.user_state.UserState.to_hash()
- item live features  `if:<item>`    hash: price, stock, popularity, rating, category, updated_at
- cached results      `cache:<user>` JSON slate with a TTL

Writes of personal data (user state, cached results) ask the geo policy first
(regions.geo.require_personal_data_allowed): an EU user's state is refused by a US region with
InputError before anything reaches Redis. Reads are not checked: a region that never accepted
the write holds nothing to read.

Errors:
    FeatureStoreUnavailable(TemporaryError)   Redis is down, slow (timeout), loading or read-only
    FeatureStoreDataError(PermanentError)     a key holds something that is not what we wrote
Both are raised `from` the redis-py exception. Socket timeouts are short and redis-py's own
retries are off: a dead Redis costs one connect attempt, and the circuit breaker in front of
this adapter decides what happens next.

`assess_freshness` is pure (time is passed in); /readyz and response metadata use it.
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Mapping, Sequence

import orjson
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from regions import redis_keys
from regions.errors import InputError, PermanentError, TemporaryError
from regions.geo import home_geography_of, require_personal_data_allowed
from regions.topology import Settings, Topology
from serving.user_state import UserState

_SEED_ITEMS_LUA = """
-- KEYS: if:<item> per item. ARGV[1]: JSON {"since": ts, "items": [[field, value, ...], ...]}.
-- A hash the item feed wrote at or after `since` (source = feed) is left alone.
local batch = cjson.decode(ARGV[1])
local written = 0
for n, fields in ipairs(batch.items) do
  local src = redis.call('HMGET', KEYS[n], 'source', 'updated_at')
  if src[1] ~= 'feed' or (tonumber(src[2]) or 0) < batch.since then
    redis.call('HSET', KEYS[n], unpack(fields))
    redis.call('HDEL', KEYS[n], 'source')
    written = written + 1
  end
end
return written
"""

ITEM_FIELDS = ("price", "stock", "popularity", "rating", "category", "updated_at")
"""Fields of an item's live-feature hash, in HMGET order."""


if TYPE_CHECKING:
    from serving.features import ItemTable


@dataclass(frozen=True)
class FeatureStoreSettings:
    """How the adapter talks to Redis; each default carries its reason."""

    connect_timeout_s: float = 0.05
    """A dead or unreachable Redis must cost little of a 150 ms request deadline."""
    read_timeout_s: float = 0.05
    """Loopback Redis answers in well under a millisecond; 50 ms means it is stuck."""
    retries: int = 0
    """The circuit breaker and the tier ladder decide about retrying, not redis-py."""
    cache_ttl_s: float = 6 * 3600.0
    """A cached slate must outlive a long incident of the full-ranking tier, yet reflect this day's interests."""
    write_chunk: int = 1000
    """Items per pipeline when seeding: bounded memory and reply size per round trip."""
    retry_delay_s: float = 1.0
    """Suggested wait carried by FeatureStoreUnavailable."""
    max_connections: int = 64
    """Bounds sockets per cell process; more would only queue inside Redis."""


@dataclass(frozen=True)
class FreshnessBounds:
    """Maximum age of features before they count as stale (product requirements)."""

    user_s: float = 300.0
    """User features fresher than 5 minutes."""
    item_s: float = 900.0
    """Item features fresher than 15 minutes."""

    @classmethod
    def from_settings(cls, settings: Settings) -> "FreshnessBounds":
        """The bounds of a topology's [settings] (user_freshness_s, item_freshness_s)."""
        return cls(user_s=settings.user_freshness_s, item_s=settings.item_freshness_s)


class FeatureStoreUnavailable(TemporaryError):
    """The region's Redis did not answer (down, timed out, loading, read-only)."""


class FeatureStoreDataError(PermanentError):
    """A feature-store key holds data of the wrong type or shape."""


@dataclass(frozen=True)
class ItemFeatures:
    item_id: str
    price: float = 0.0
    stock: int = 0
    """Units in stock; a missing value counts as 0 (out of stock) so that rules never show it."""
    popularity: float = 0.0
    rating: float = 0.0
    category: str = ""
    updated_at: float = 0.0
    """Epoch seconds of the last update; 0 when unknown (always stale)."""

    def to_hash(self) -> dict[str, str]:
        return {
            "price": repr(float(self.price)), "stock": str(int(self.stock)),
            "popularity": repr(float(self.popularity)), "rating": repr(float(self.rating)),
            "category": self.category, "updated_at": repr(float(self.updated_at)),
        }


@dataclass(frozen=True)
class CachedSlate:
    """A user's last full-ranking slate, served by the cached tier."""

    item_ids: tuple[str, ...]
    scores: tuple[float, ...]
    bundle_version: str
    tier: str
    created_at: float

    def to_json(self) -> str:
        return orjson.dumps({
            "item_ids": list(self.item_ids), "scores": list(self.scores), "bundle_version": self.bundle_version,
            "tier": self.tier, "created_at": self.created_at,
        }).decode()

    @classmethod
    def from_json(cls, text: str) -> "CachedSlate":
        """Decode; raises InputError naming the field when the JSON is not a slate."""
        try:
            raw = orjson.loads(text)
        except ValueError as exc:
            raise InputError("cached_result", f"is not JSON: {exc}") from exc
        if not isinstance(raw, dict):
            raise InputError("cached_result", "must be a JSON object")
        try:
            item_ids = tuple(str(i) for i in raw["item_ids"])
            scores = tuple(float(s) for s in raw["scores"])
            slate = cls(item_ids=item_ids, scores=scores, bundle_version=str(raw["bundle_version"]),
                        tier=str(raw["tier"]), created_at=float(raw["created_at"]))
        except KeyError as exc:
            raise InputError(f"cached_result.{exc.args[0]}", "is missing") from exc
        except (TypeError, ValueError) as exc:
            raise InputError("cached_result", f"has a field of the wrong type: {exc}") from exc
        if len(slate.item_ids) != len(slate.scores):
            raise InputError("cached_result.scores", "must have one score per item id")
        return slate


@dataclass(frozen=True)
class Freshness:
    """Which features are older than their bound at `now`."""

    user_stale: bool
    user_age_s: float | None
    """None when the user has no stored state (a new user: nothing to be stale)."""
    stale_items: tuple[str, ...]
    """Items whose features are too old or missing, in the order they were given."""
    oldest_item_age_s: float | None
    """None when no item had an update time."""

    @property
    def stale(self) -> bool:
        return self.user_stale or bool(self.stale_items)


def assess_freshness(
    *, now: float, user_updated_at: float | None, item_updated_at: Mapping[str, float | None],
    bounds: FreshnessBounds = FreshnessBounds(),
) -> Freshness:
    """Pure. A feature is stale when `now - updated_at` exceeds its bound; an item with no update
    time (None, or 0 = never written) is stale. Update times in the future (clock skew) count as age 0."""
    user_age = None if user_updated_at is None else max(now - user_updated_at, 0.0)
    stale_items: list[str] = []
    oldest: float | None = None
    for item_id, updated_at in item_updated_at.items():
        if updated_at is None or updated_at <= 0 or not math.isfinite(updated_at):
            stale_items.append(item_id)
            continue
        age = max(now - updated_at, 0.0)
        oldest = age if oldest is None else max(oldest, age)
        if age > bounds.item_s:
            stale_items.append(item_id)
    return Freshness(
        user_stale=user_age is not None and user_age > bounds.user_s, user_age_s=user_age,
        stale_items=tuple(stale_items), oldest_item_age_s=oldest,
    )


def item_features_of(items: "ItemTable", *, updated_at: float) -> tuple[ItemFeatures, ...]:
    """Pure. Live features of every item of a loaded bundle's catalog (already in memory and
    checked by the bundle's verification), stamped `updated_at`: how the local item feed seeds Redis."""
    return tuple(
        ItemFeatures(item_id=item_id, price=float(items.price[n]), stock=int(items.stock[n]),
                     popularity=float(items.popularity[n]), rating=float(items.rating[n]),
                     category=items.categories[int(items.category[n])], updated_at=updated_at)
        for n, item_id in enumerate(items.ids)
    )


_HMGET_MANY_LUA = """
local out = {}
for _, key in ipairs(KEYS) do
  local values = redis.call('HMGET', key, unpack(ARGV))
  for j = 1, #ARGV do out[#out + 1] = values[j] end
end
return out
"""
"""HMGET ARGV of every key in KEYS, flattened; a missing field comes back as nil (Lua false)."""

_PUT_SLATE_LUA = """
if redis.call('HEXISTS', KEYS[2], ARGV[3]) == 1 then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""
"""SET the slate unless the user is tombstoned: the check and the write are one atomic step in Redis,
so a deletion that ran between a request's start and its cache write is never undone."""

_TEMPORARY = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, redis.exceptions.ReadOnlyError,
              redis.exceptions.TryAgainError, redis.exceptions.BusyLoadingError)


class FeatureStore:
    """One region's feature store. Build with `FeatureStore.from_url`, or hand in any redis.Redis
    (created with decode_responses=True) to swap the transport in tests."""

    def __init__(self, client: redis.Redis, *, region: str, topology: Topology,
                 settings: FeatureStoreSettings = FeatureStoreSettings()) -> None:
        topology.region(region)  # unknown region: TopologyError now, not at the first write
        self._redis = client
        self._hmget_many = client.register_script(_HMGET_MANY_LUA)
        self._put_slate = client.register_script(_PUT_SLATE_LUA)
        self._seed_items = client.register_script(_SEED_ITEMS_LUA)
        self.region = region
        self._topology = topology
        self.settings = settings

    @classmethod
    def from_url(cls, url: str, *, region: str, topology: Topology,
                 settings: FeatureStoreSettings = FeatureStoreSettings()) -> "FeatureStore":
        client = redis.Redis.from_url(
            url, decode_responses=True,
            socket_connect_timeout=settings.connect_timeout_s, socket_timeout=settings.read_timeout_s,
            retry=Retry(NoBackoff(), settings.retries), retry_on_timeout=False,
            max_connections=settings.max_connections,
        )
        return cls(client, region=region, topology=topology, settings=settings)

    def close(self) -> None:
        self._redis.close()

    @contextmanager
    def _io(self, operation: str) -> Iterator[None]:
        try:
            yield
        except _TEMPORARY as exc:
            if isinstance(exc, redis.exceptions.ConnectionError):
                # A restarted server leaves every pooled socket dead: drop them all, so the
                # breaker's next trial opens a fresh connection instead of finding another corpse.
                self._redis.connection_pool.disconnect()
            raise FeatureStoreUnavailable(
                f"Redis of region {self.region} unavailable during {operation}: {exc}; "
                "check that its redis-server runs (regionctl status)", delay=self.settings.retry_delay_s,
            ) from exc
        except redis.exceptions.ResponseError as exc:
            raise FeatureStoreDataError(f"Redis of region {self.region} refused {operation}: {exc}") from exc
        except redis.exceptions.RedisError as exc:
            raise FeatureStoreUnavailable(
                f"Redis of region {self.region} failed during {operation}: {exc}", delay=self.settings.retry_delay_s,
            ) from exc

    def _require_resident(self, user_id: str) -> None:
        require_personal_data_allowed(
            self._topology, region=self.region, home_geography=home_geography_of(user_id, self._topology),
        )

    def ping(self) -> bool:
        """True when Redis answers; FeatureStoreUnavailable otherwise."""
        with self._io("PING"):
            return bool(self._redis.ping())

    # user state --------------------------------------------------------------------------

    def get_user_state(self, user_id: str) -> UserState | None:
        """The user's stored session state, or None for a user without one."""
        with self._io("HGETALL user state"):
            raw = self._redis.hgetall(redis_keys.user_features(user_id))
        return _decode_state(user_id, raw)

    def get_user_context(self, user_id: str, *, kinds: Sequence[str]) -> tuple[UserState | None, dict[str, float]]:
        """(the user's state or None, the seen set {item_id: latest ts} over events of `kinds`, serving.seen_items)
        in ONE pipelined round trip: what a full ranking reads of the user."""
        from serving.seen_items import from_members

        with self._io("HGETALL user state + ZRANGE seen items"):
            pipe = self._redis.pipeline(transaction=False)
            pipe.hgetall(redis_keys.user_features(user_id))
            pipe.zrange(redis_keys.seen_items(user_id), 0, -1, withscores=True)
            raw, pairs = pipe.execute()
        return _decode_state(user_id, raw), from_members(pairs, kinds=kinds)

    def put_user_state(self, user_id: str, state: UserState) -> None:
        """Store the state; InputError when this region may not hold the user's personal data."""
        self._require_resident(user_id)
        with self._io("HSET user state"):
            self._redis.hset(redis_keys.user_features(user_id), mapping=state.to_hash())

    # item live features ------------------------------------------------------------------

    def get_item_features(self, item_ids: Sequence[str]) -> dict[str, ItemFeatures]:
        """Live features of many items in one round trip; items without a hash are absent.

        One EVALSHA running HMGET per key inside Redis: the same reads as a pipeline of HMGETs,
        at about half the client-side cost (redis-py packs and parses one command, not one per item).
        """
        if not item_ids:
            return {}
        keys = [redis_keys.item_features(item_id) for item_id in item_ids]
        with self._io("HMGET item features"):
            flat = self._hmget_many(keys=keys, args=list(ITEM_FIELDS))
        width = len(ITEM_FIELDS)
        if not isinstance(flat, list) or len(flat) != width * len(keys):
            raise FeatureStoreDataError(f"item-feature script returned {type(flat).__name__} of unexpected length")
        found: dict[str, ItemFeatures] = {}
        for n, item_id in enumerate(item_ids):
            values = flat[n * width:(n + 1) * width]
            if all(v is None for v in values):
                continue
            found[item_id] = _decode_item(item_id, dict(zip(ITEM_FIELDS, values)))
        return found

    def put_item_features(self, items: Iterable[ItemFeatures]) -> int:
        """Write item features in pipelined chunks (seeding from a bundle, item updates); returns the count."""
        written = 0
        batch: list[ItemFeatures] = []
        for item in items:
            batch.append(item)
            if len(batch) >= self.settings.write_chunk:
                written += self._write_items(batch)
                batch = []
        if batch:
            written += self._write_items(batch)
        return written

    def seed_item_features(self, items: Iterable[ItemFeatures], *, now: float, keep_feed_s: float) -> int:
        """Seed live item features from a bundle's catalog, except the items the item feed
        (serving.item_feed) wrote within the last `keep_feed_s`: the feed's values are newer than
        any catalog. Returns how many hashes were written."""
        written = 0
        batch: list[ItemFeatures] = []
        for item in items:
            batch.append(item)
            if len(batch) >= self.settings.write_chunk:
                written += self._seed(batch, now=now, keep_feed_s=keep_feed_s)
                batch = []
        if batch:
            written += self._seed(batch, now=now, keep_feed_s=keep_feed_s)
        return written

    def _seed(self, batch: Sequence[ItemFeatures], *, now: float, keep_feed_s: float) -> int:
        payload = orjson.dumps({"since": now - keep_feed_s, "items": [[k for kv in i.to_hash().items() for k in kv] for i in batch]})
        with self._io("seed item features"):
            return int(self._seed_items(keys=[redis_keys.item_features(i.item_id) for i in batch], args=[payload]))

    def _write_items(self, batch: Sequence[ItemFeatures]) -> int:
        with self._io("HSET item features"):
            pipe = self._redis.pipeline(transaction=False)
            for item in batch:
                pipe.hset(redis_keys.item_features(item.item_id), mapping=item.to_hash())
            pipe.execute()
        return len(batch)

    # cached results ----------------------------------------------------------------------

    def get_cached_slate(self, user_id: str) -> CachedSlate | None:
        """The user's cached slate, or None when there is none (expired, never written, or unreadable)."""
        with self._io("GET cached result"):
            text = self._redis.get(redis_keys.cached_result(user_id))
        if text is None:
            return None
        try:
            return CachedSlate.from_json(text)
        except InputError:
            return None  # a cache entry we cannot read is a miss: the ladder moves on to the next tier

    def put_cached_slate(self, user_id: str, slate: CachedSlate, *, ttl_s: float | None = None) -> bool:
        """Store the slate with a TTL (default settings.cache_ttl_s); geo-checked like user state.
        False (nothing written) when the user is tombstoned: checked inside the same Redis script as the SET."""
        return self.put_cached_slates([(user_id, slate)], ttl_s=ttl_s) == 1

    def put_cached_slates(self, slates: Sequence[tuple[str, CachedSlate]], *, ttl_s: float | None = None) -> int:
        """Store many (user, slate) pairs in one pipelined round trip; returns how many were written.
        Every user is geo-checked first (InputError, nothing written, when one may not be held here).
        Each write is its own run of the tombstone script (check and SET atomic per slate), so a
        tombstoned user's slate is skipped and the others are written."""
        ttl = self.settings.cache_ttl_s if ttl_s is None else ttl_s
        if not math.isfinite(ttl) or ttl <= 0:
            raise InputError("ttl_s", f"must be a positive number of seconds, got {ttl!r}")
        for user_id, _ in slates:
            self._require_resident(user_id)
        px = max(int(ttl * 1000), 1)
        with self._io("SET cached result"):
            if len(slates) == 1:
                (user_id, slate), = slates
                return int(self._put_slate(keys=[redis_keys.cached_result(user_id), redis_keys.TOMBSTONES],
                                           args=[slate.to_json(), px, user_id]))
            pipe = self._redis.pipeline(transaction=False)
            for user_id, slate in slates:
                self._put_slate(keys=[redis_keys.cached_result(user_id), redis_keys.TOMBSTONES],
                                args=[slate.to_json(), px, user_id], client=pipe)
            return sum(int(w) for w in pipe.execute())


def _decode_state(user_id: str, raw: Mapping[str, str]) -> UserState | None:
    if not raw:
        return None
    try:
        return UserState.from_hash(raw)
    except (ValueError, TypeError) as exc:
        raise FeatureStoreDataError(f"{redis_keys.user_features(user_id)} holds a malformed user state: {exc}") from exc


def _decode_item(item_id: str, fields: Mapping[str, str | None]) -> ItemFeatures:
    def number(name: str) -> float:
        value = fields.get(name)
        if value is None or value == "":
            return 0.0
        try:
            parsed = float(value)
        except ValueError as exc:
            raise FeatureStoreDataError(
                f"{redis_keys.item_features(item_id)} field {name!r} is not a number: {value!r}"
            ) from exc
        if not math.isfinite(parsed):
            raise FeatureStoreDataError(f"{redis_keys.item_features(item_id)} field {name!r} is not finite: {value!r}")
        return parsed

    return ItemFeatures(
        item_id=item_id, price=number("price"), stock=int(number("stock")), popularity=number("popularity"),
        rating=number("rating"), category=fields.get("category") or "", updated_at=number("updated_at"),
    )
