"""The nearline feature updater of one region: log streams in, fresh user features out.

It consumes the region's own `log:events` and every `log:replica:<peer>` (events of the same
geography's other regions, so a user served by a peer after a failover finds warm features), and
applies each event to `uf:<user>` with serving.user_state.apply_event, the same function training
replays. The category of an item comes from a mapping handed in, else from the item features hash
`if:<item>` field `category`.

Exactly once: the new user states, the checkpoints (`ckpt:feature-updater:<stream>`) and the dead
letters of a batch are written by one Lua script, atomic in Redis, which also checks that the
checkpoints are still the ones the batch was read from (a second updater, or a restart that
overlapped, makes it retry instead of counting events twice). The script re-checks tombstones as
it writes, so a user deleted while the batch was being computed is not brought back.

Catalog changes: each step first applies a batch of the region's item feed `log:items` to the
live item features and the new items (serving.item_feed.ItemFeedConsumer), with its own checkpoint.

At most once per event id: a client retry may store the same event in both regions of a
geography (the first region stored it but its answer was lost), so it reaches this updater twice,
through the region's own log and through the peer's replica stream. The updater skips an event id
it finds in `applied:feature-updater:<id>` (read before the batch is computed, and within the
batch), and the commit script sets those markers for the events it applied, in the same atomic
step as the user states, for interaction_log.DEDUPE_WINDOW_S (24 h, the log's own window).
"""
from __future__ import annotations

import heapq
import json
import logging
import time
from dataclasses import dataclass
from typing import Callable, Mapping


from regions import redis_keys
from regions.errors import InputError, TemporaryError
from regions.geo import replication_peers
from regions.topology import Topology
from contracts.events import Event
from replication.interaction_log import DEDUPE_WINDOW_S, StreamReader, dead_letter_fields, decode_entry
from replication.lag import parse_stream_id
from replication.metrics import ReplicationMetrics, stream_lag
from replication.redis_io import Redis, RedisError, text
from serving.item_feed import FeedResult, ItemFeedConsumer
from serving.time_constants import TimeConstants
from serving.user_state import AFFINITY_HALF_LIFE_S, UserState, apply_event

_log = logging.getLogger(__name__)

CONSUMER = "feature-updater"

_SEEN_SCRIPT = """
-- KEYS: tombstones, one seen: key per user. ARGV[1]: JSON {"cap": n, "users": [[user_id, [ts, member, ...]], ...]}
-- ZADD GT keeps the latest ts of each member: applying a batch twice changes nothing (idempotent).
local batch = cjson.decode(ARGV[1])
for u, entry in ipairs(batch.users) do
  if redis.call('HEXISTS', KEYS[1], entry[1]) == 0 then
    redis.call('ZADD', KEYS[1 + u], 'GT', unpack(entry[2]))
    redis.call('ZREMRANGEBYRANK', KEYS[1 + u], 0, -(batch.cap + 1))
  end
end
return 1
"""

_COMMIT_SCRIPT = """
-- KEYS: tombstones, dead letters, one checkpoint per stream, one uf: key per user, one applied: key per event.
-- ARGV[1]: JSON {"ckpt": [[expected, new], ...], "users": [[user_id, [field, value, ...]], ...],
--                "dead": [[field, value, ...], ...], "window": seconds}
local batch = cjson.decode(ARGV[1])
local n_ckpt = #batch.ckpt
for i, c in ipairs(batch.ckpt) do
  local current = redis.call('GET', KEYS[2 + i]) or '0-0'
  if current ~= c[1] then return {0, 0} end
end
for i, c in ipairs(batch.ckpt) do redis.call('SET', KEYS[2 + i], c[2]) end
local written = 0
for u, entry in ipairs(batch.users) do
  if redis.call('HEXISTS', KEYS[1], entry[1]) == 0 then
    redis.call('HSET', KEYS[2 + n_ckpt + u], unpack(entry[2]))
    written = written + 1
  end
end
for _, fields in ipairs(batch.dead) do redis.call('XADD', KEYS[2], '*', unpack(fields)) end
for k = 3 + n_ckpt + #batch.users, #KEYS do redis.call('SET', KEYS[k], '1', 'EX', batch.window) end
return {1, written}
"""


@dataclass(frozen=True)
class UpdaterSettings:
    """Knobs of the feature updater; each default carries its reason."""

    batch_size: int = 500
    """Entries per stream per step: bounded memory and one script call per batch."""
    block_ms: int = 100
    """Idle wait on XREAD: features stay fresh within a fraction of a second."""
    metrics_interval_s: float = 1.0
    """Lag gauges are refreshed once a second."""
    category_cache_size: int = 100_000
    """Item categories rarely change; cache them, clearing the cache when it grows past this."""
    constants_refresh_s: float = 10.0
    """How often the bundle's time constants are re-read (regions.redis_keys.TIME_CONSTANTS): they
    change only with a bundle swap."""

    def __post_init__(self) -> None:
        if not 1 <= self.batch_size <= 10_000:
            raise InputError("batch_size", f"must be between 1 and 10000, got {self.batch_size}")


@dataclass
class UpdateResult:
    read: int = 0
    applied: int = 0
    skipped_tombstoned: int = 0
    skipped_duplicate: int = 0
    """Events whose id this updater had already applied (a client retry stored in two regions)."""
    poison: int = 0
    users: int = 0
    conflict: bool = False
    items: FeedResult | None = None
    """What the step applied of the item feed (serving.item_feed)."""



class FeatureUpdater:
    """Applies a region's log streams to its users' features, one bounded batch per `step()`."""

    def __init__(
        self, *, topology: Topology, region: str, client: Redis,
        category_of: Mapping[str, str] | None = None, settings: UpdaterSettings = UpdaterSettings(),
        metrics: ReplicationMetrics | None = None, clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.topology = topology
        self.region = region
        self.client = client
        self.settings = settings
        self.metrics = metrics
        self.streams = (redis_keys.EVENT_LOG, *(redis_keys.replica_log(p) for p in replication_peers(topology, region)))
        self._categories: dict[str, str | None] = dict(category_of) if category_of is not None else {}
        self._fixed_categories = category_of is not None
        self._clock = clock
        self._sleep = sleep
        self._positions: dict[str, str] | None = None
        self._commit = client.register_script(_COMMIT_SCRIPT)
        self._record_seen = client.register_script(_SEEN_SCRIPT)
        self._reader = StreamReader(client)
        self._items = ItemFeedConsumer(client, consumer=CONSUMER, region=region, batch_size=settings.batch_size, clock=clock)
        self._next_metrics = 0.0
        self.interest_half_life_s = AFFINITY_HALF_LIFE_S
        """The serving bundle's interest fade (serving.time_constants), as the cell published it."""
        self._next_constants = 0.0

    def checkpoint_key(self, stream: str) -> str:
        return redis_keys.consumer_checkpoint(CONSUMER, stream)

    def _load_positions(self) -> dict[str, str]:
        if self._positions is None:
            raw = self.client.mget([self.checkpoint_key(s) for s in self.streams])
            self._positions = {s: (text(v) if v is not None else "0-0") for s, v in zip(self.streams, raw)}
        return self._positions

    def step(self) -> UpdateResult:
        """Read up to `batch_size` entries per stream after the checkpoints and apply them.

        Raises TemporaryError when the region's Redis is unreachable."""
        try:
            return self._step()
        except RedisError as exc:
            self._positions = None
            raise TemporaryError(f"region {self.region!r}: feature updater cannot reach Redis: {exc}", delay=0.5) from exc

    def _step(self) -> UpdateResult:
        now = self._clock()
        positions = self._load_positions()
        self._maybe_update_metrics(positions, now)
        items = self._items.step()
        batches = {s: self._reader.read(s, after=positions[s], count=self.settings.batch_size, tombstones=True)
                   for s in self.streams}
        result = UpdateResult(items=items)
        if not any(b.entries for b in batches.values()):
            if items.read:
                return result
            self._reader.wait(positions, block_ms=self.settings.block_ms)
            return result
        tombstoned = frozenset().union(*(b.tombstoned for b in batches.values()))
        # Merge the streams by id, so a user's events are applied in acknowledgement order. A stream
        # that filled its batch may hold more entries below another stream's newest: stop at the
        # smallest last id among full batches; the rest waits for the next step.
        tagged = [[(parse_stream_id(i), s, f) for i, f in b.entries] for s, b in batches.items()]
        full = [batch[-1][0] for batch in tagged if len(batch) >= self.settings.batch_size]
        cut = min(full) if full else None
        merged = [t for t in heapq.merge(*tagged, key=lambda t: t[0]) if cut is None or t[0] <= cut]
        result.read = len(merged)
        new_positions = dict(positions)
        events: list[tuple[str, Event]] = []
        dead: list[list[str]] = []
        for sid, stream, fields in merged:
            new_positions[stream] = str(sid)
            try:
                events.append((stream, decode_entry(fields, topology=self.topology, region=self.region)))
            except InputError as exc:
                entry = dead_letter_fields(stream=stream, entry_id=str(sid), fields=fields, reason=str(exc),
                                           consumer=f"{CONSUMER}:{self.region}")
                dead.append([x for kv in entry.items() for x in kv])
        result.poison = len(dead)
        events, applied_ids = self._first_sightings(events)
        result.skipped_duplicate = result.read - result.poison - len(events)
        self._refresh_constants(now)
        users = sorted({e.user_id for _, e in events} - tombstoned)
        states = self._read_users(users)
        category_of = self._category_lookup([e.item_id for _, e in events])
        applied_per_stream: dict[str, int] = {}
        for stream, event in events:
            if event.user_id in tombstoned:
                result.skipped_tombstoned += 1
                continue
            states[event.user_id] = apply_event(states[event.user_id], event_type=event.type, item_id=event.item_id,
                                                ts=event.ts, category_of=category_of, price=event.price,
                                                half_life_s=self.interest_half_life_s)
            applied_per_stream[stream] = applied_per_stream.get(stream, 0) + 1
        self._write_seen([e for _, e in events if e.user_id not in tombstoned])
        keys = [redis_keys.TOMBSTONES, redis_keys.DEAD_LETTER, *(self.checkpoint_key(s) for s in self.streams),
                *(redis_keys.user_features(u) for u in users),
                *(redis_keys.event_applied(CONSUMER, i) for i in applied_ids)]
        payload = {
            "ckpt": [[positions[s], new_positions[s]] for s in self.streams],
            "users": [[u, [x for kv in states[u].to_hash().items() for x in kv]] for u in users],
            "dead": dead, "window": DEDUPE_WINDOW_S,
        }
        ok, written = self._commit(keys=keys, args=[json.dumps(payload)])
        if not int(ok):
            self._positions = None
            result.conflict = True
            return result
        self._positions = new_positions
        result.applied = sum(applied_per_stream.values())
        result.users = int(written)
        if self.metrics:
            for stream, n in applied_per_stream.items():
                self.metrics.updater_applied.labels(region=self.region, stream=stream).inc(n)
            if result.skipped_tombstoned:
                self.metrics.updater_skipped.labels(region=self.region, reason="tombstoned").inc(result.skipped_tombstoned)
            if result.skipped_duplicate:
                self.metrics.updater_skipped.labels(region=self.region, reason="duplicate").inc(result.skipped_duplicate)
            if dead:
                self.metrics.dead_letters.labels(region=self.region, consumer=CONSUMER).inc(len(dead))
        return result

    def _refresh_constants(self, now: float) -> None:
        """Re-read the bundle's time constants every `constants_refresh_s` (defaults when the cell
        published none, or an unreadable value: logged, the last good value is kept)."""
        if now < self._next_constants:
            return
        self._next_constants = now + self.settings.constants_refresh_s
        raw = self.client.get(redis_keys.TIME_CONSTANTS)
        if raw is None:
            self.interest_half_life_s = AFFINITY_HALF_LIFE_S
            return
        try:
            self.interest_half_life_s = TimeConstants.loads(text(raw)).interest_half_life_s
        except InputError as exc:
            _log.warning("%s is unreadable (%s); keeping interest half-life %.0f s", redis_keys.TIME_CONSTANTS, exc,
                         self.interest_half_life_s)

    def _first_sightings(self, events: list[tuple[str, Event]]) -> tuple[list[tuple[str, Event]], list[str]]:
        """The events whose id this updater has not applied yet (first one of a batch's repeats),
        and their ids (to be marked applied by the commit)."""
        ids = sorted({e.event_id for _, e in events})
        if not ids:
            return [], []
        known = {i for i, flag in zip(ids, self.client.mget([redis_keys.event_applied(CONSUMER, i) for i in ids]))
                 if flag is not None}
        fresh: list[tuple[str, Event]] = []
        for stream, event in events:
            if event.event_id not in known:
                known.add(event.event_id)
                fresh.append((stream, event))
        return fresh, [e.event_id for _, e in fresh]

    def _write_seen(self, events: list[Event]) -> None:
        """Consumed items into each user's seen set (regions.redis_keys.seen_items), before the
        checkpoint moves: a crash in between re-applies them, which ZADD GT makes harmless."""
        from serving.seen_items import ONLINE_KINDS, member

        per_user: dict[str, dict[str, float]] = {}
        for e in events:
            if e.type in ONLINE_KINDS:
                m = member(e.type, e.item_id)
                seen = per_user.setdefault(e.user_id, {})
                seen[m] = max(e.ts, seen.get(m, e.ts))
        if not per_user:
            return
        users = sorted(per_user)
        payload = {"cap": redis_keys.SEEN_ITEMS_CAP,
                   "users": [[u, [x for m, ts in per_user[u].items() for x in (repr(ts), m)]] for u in users]}
        self._record_seen(keys=[redis_keys.TOMBSTONES, *(redis_keys.seen_items(u) for u in users)], args=[json.dumps(payload)])

    def _read_users(self, users: list[str]) -> dict[str, UserState]:
        if not users:
            return {}
        with self.client.pipeline(transaction=False) as pipe:
            for user in users:
                pipe.hgetall(redis_keys.user_features(user))
            replies = pipe.execute()
        return {u: UserState.from_hash(raw) for u, raw in zip(users, replies)}

    def _category_lookup(self, items: list[str]) -> Callable[[str], str | None]:
        if not self._fixed_categories:
            missing = sorted({i for i in items if i not in self._categories})
            if missing:
                if len(self._categories) + len(missing) > self.settings.category_cache_size:
                    self._categories.clear()
                with self.client.pipeline(transaction=False) as pipe:
                    for item in missing:
                        pipe.hget(redis_keys.item_features(item), "category")
                    for item, raw in zip(missing, pipe.execute()):
                        self._categories[item] = text(raw) if raw is not None else None
        categories = self._categories
        return lambda item: categories.get(item)

    def lag(self, now: float) -> dict[str, tuple[float, int]]:
        """(seconds, events) the updater is behind on each stream, as of `now`."""
        positions = self._load_positions()
        out: dict[str, tuple[float, int]] = {}
        for stream in self.streams:
            _, lag = stream_lag(self.client, stream=stream, position=parse_stream_id(positions[stream]), now=now)
            out[stream] = (lag.lag_seconds, lag.lag_events)
        return out

    def _maybe_update_metrics(self, positions: Mapping[str, str], now: float) -> None:
        if self.metrics is None or now < self._next_metrics:
            return
        self._next_metrics = now + self.settings.metrics_interval_s
        for stream, (seconds, count) in self.lag(now).items():
            self.metrics.updater_lag_seconds.labels(region=self.region, stream=stream).set(seconds)
            self.metrics.updater_lag_events.labels(region=self.region, stream=stream).set(count)

    def run(self, should_stop: Callable[[], bool]) -> None:
        """Step until `should_stop()`; a Redis outage is waited out, never fatal."""
        while not should_stop():
            try:
                self.step()
            except TemporaryError as exc:
                _log.warning("%s; retrying in %.1fs", exc, exc.delay)
                self._sleep(exc.delay)
