"""The replicator: one per source region, copying its interaction log to the same-geography peers.

For each peer P of source S (regions.geo.replication_peers: same geography, never another), every
entry of S's `log:events` is written to P's `log:replica:S` WITH THE SAME STREAM ID. Redis refuses
an id not greater than the stream's last id, so:

- re-delivery after any crash is idempotent (an entry already there is skipped),
- order per source, hence per user, is preserved,
- the resume checkpoint is the replica stream's own last generated id, durable with the data
  in P's AOF: there is no separate checkpoint to lose. Deleting or trimming entries never moves it
  back.

The copy of one batch into one peer is a Lua script, atomic in the peer's Redis: it checks the
peer's tombstones (`users:deleted`) as it writes, so a deletion running concurrently cannot be
undone by a late copy, and it advances the stream's last id past entries it skipped (tombstoned,
poison), so the checkpoint moves on even when the tail of a batch was not copied.

Poison entries (undecodable, invalid, or of a user from another geography) never block: they are
recorded in the source's `log:dead` with the reason (at least once: a crash between recording and
the peer's write can record one twice) and counted.

Anonymous item popularity goes to every region of every geography: event weights per item are
summed in memory and added to `agg:item_popularity` of each region about once a second (and
whenever the replicator is idle) with a compare-and-set checkpoint
(`ckpt:popularity:<source>:log:events`) in the same script, so a re-read range is never counted
twice; a crash loses only the unwritten sums, which are re-read from that checkpoint. Only item
ids and numbers cross geographies: no user identity leaves the geography.

Batches travel as one JSON string each way (Lua's cjson in Redis, json in Python): parsing ~20
RESP items per entry in pure Python, not Redis, was what limited throughput.

A peer that is down is retried every `retry_s`; the others carry on. When it is back, its backlog
is drained in batches of `batch_size` (XREAD COUNT): memory stays bounded whatever the backlog.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping


from regions import redis_keys
from regions.errors import InputError, TemporaryError
from regions.geo import replication_peers
from regions.topology import Topology
from contracts.events import EVENT_WEIGHTS, Event
from replication.interaction_log import StreamReader, dead_letter_fields, decode_entry, stream_last_id
from replication.lag import StreamId, parse_stream_id
from replication.metrics import ReplicationMetrics, collect_pairs
from replication.redis_io import Redis, RedisError, text

_log = logging.getLogger(__name__)

_COPY_SCRIPT = """
local function parse(id)
  local ms, seq = string.match(id, '^(%d+)%-(%d+)$')
  return tonumber(ms), tonumber(seq)
end
local function greater(a, b)
  local am, as = parse(a)
  local bm, bs = parse(b)
  if am ~= bm then return am > bm end
  return as > bs
end
local last = '0-0'
if redis.call('EXISTS', KEYS[1]) == 1 then
  local info = redis.call('XINFO', 'STREAM', KEYS[1])
  for i = 1, #info, 2 do
    if info[i] == 'last-generated-id' then last = info[i + 1] end
  end
end
local added, skipped = 0, 0
local batch = cjson.decode(ARGV[2])
-- Entries come sorted: when the first is new, all are (the usual case); else compare each.
local all_new = #batch == 0 or greater(batch[1][1], last)
for _, e in ipairs(batch) do
  local id = e[1]
  if all_new or greater(id, last) then
    if redis.call('HEXISTS', KEYS[2], e[2]) == 0 then
      redis.call('XADD', KEYS[1], id, unpack(e[3]))
      added = added + 1
    else
      skipped = skipped + 1
    end
    last = id
  end
end
if greater(ARGV[1], last) then
  if redis.call('EXISTS', KEYS[1]) == 1 then
    redis.call('XSETID', KEYS[1], ARGV[1])
  else
    redis.call('XADD', KEYS[1], 'MAXLEN', '0', ARGV[1], 'skipped', '1')
  end
  last = ARGV[1]
end
return {added, skipped, last}
"""

_POPULARITY_SCRIPT = """
local current = redis.call('GET', KEYS[2]) or '0-0'
if current ~= ARGV[1] then return {0, current} end
for item, delta in pairs(cjson.decode(ARGV[3])) do redis.call('ZINCRBY', KEYS[1], delta, item) end
redis.call('SET', KEYS[2], ARGV[2])
return {1, ARGV[2]}
"""


@dataclass(frozen=True)
class ReplicatorSettings:
    """Knobs of one replicator; each default carries its reason."""

    batch_size: int = 500
    """Bounded memory while draining a backlog; large enough to amortise round trips (>= 20k events/s)."""
    block_ms: int = 100
    """How long an idle replicator waits on XREAD for new events: well under the 1 s lag target."""
    retry_s: float = 0.5
    """How often an unreachable peer is tried again: a restarted Redis is noticed within a second."""
    metrics_interval_s: float = 1.0
    """Lag gauges are refreshed once a second: RPO is reported in seconds."""
    popularity_flush_s: float = 1.0
    """Popularity is a slow-moving aggregate: one write per region per second (and whenever the
    replicator is idle) is fresh enough, and keeps three extra round trips off every batch."""

    def __post_init__(self) -> None:
        if not 1 <= self.batch_size <= 10_000:
            raise InputError("batch_size", f"must be between 1 and 10000, got {self.batch_size}")
        if not 0 <= self.block_ms <= 1000:
            raise InputError("block_ms", f"must be between 0 and 1000 ms, got {self.block_ms}")


def popularity_checkpoint(source: str) -> str:
    """Key (in every region) of the last source id whose popularity was added there."""
    return redis_keys.consumer_checkpoint(f"popularity:{source}", redis_keys.EVENT_LOG)


@dataclass
class StepResult:
    """What one step did (for tests, the benchmark and logs)."""

    read: int = 0
    copied: dict[str, int] = field(default_factory=dict)
    skipped_tombstoned: int = 0
    poison: int = 0
    unreachable: list[str] = field(default_factory=list)


@dataclass
class _Target:
    region: str
    copy: bool
    """True for a same-geography peer (gets the events); False for a popularity-only region."""
    position: StreamId | None = None
    popularity_position: str | None = None
    """Durable: the last source id whose popularity is counted in this region."""
    pending: dict[str, float] = field(default_factory=dict)
    """Popularity deltas read but not yet written (lost on a crash, re-read from `popularity_position`)."""
    pending_upto: StreamId | None = None
    flush_at: float = 0.0
    retry_at: float = 0.0

    def popularity_read_position(self) -> StreamId:
        assert self.popularity_position is not None
        return self.pending_upto or parse_stream_id(self.popularity_position)


_Entry = tuple[StreamId, str, dict[str, str]]



class Replicator:
    """Copies `source`'s log to its peers, one bounded batch per `step()`."""

    def __init__(
        self, *, topology: Topology, source: str, clients: Mapping[str, Redis],
        settings: ReplicatorSettings = ReplicatorSettings(), metrics: ReplicationMetrics | None = None,
        clock: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.topology = topology
        self.source = source
        self.geography = topology.region(source).geography
        self.peers = replication_peers(topology, source)
        self.settings = settings
        self.metrics = metrics
        self._clients = clients
        self._clock = clock
        self._sleep = sleep
        self._targets = {name: _Target(region=name, copy=name in self.peers) for name in topology.regions}
        self._copy = {name: clients[name].register_script(_COPY_SCRIPT) for name in self.peers}
        self._popularity = {name: clients[name].register_script(_POPULARITY_SCRIPT) for name in topology.regions}
        self._next_metrics = 0.0
        self._reader = StreamReader(clients[source])

    # -- positions -------------------------------------------------------------------------
    def _refresh(self, target: _Target, now: float) -> bool:
        """Read a target's positions if unknown; False (and retry later) when it is unreachable."""
        if target.popularity_position is not None and (target.position is not None or not target.copy):
            return True
        if now < target.retry_at:
            return False
        client = self._clients[target.region]
        try:
            if target.copy:
                target.position = parse_stream_id(stream_last_id(client, redis_keys.replica_log(self.source)))
            raw = client.get(popularity_checkpoint(self.source))
            target.popularity_position = text(raw) if raw is not None else "0-0"
            return True
        except (TemporaryError, RedisError):
            self._down(target, now)
            return False

    def _down(self, target: _Target, now: float) -> None:
        target.position = None
        target.popularity_position = None
        target.pending = {}
        target.pending_upto = None
        target.retry_at = now + self.settings.retry_s

    # -- one step ----------------------------------------------------------------------------
    def step(self) -> StepResult:
        """Read one batch from the source after the lowest position of the reachable targets and
        deliver it. Raises TemporaryError when the source itself is unreachable."""
        now = self._clock()
        result = StepResult()
        live = [t for t in self._targets.values() if self._refresh(t, now)]
        result.unreachable = sorted(t.region for t in self._targets.values() if t not in live)
        self._maybe_update_metrics(now)
        if not live:
            self._sleep(self.settings.retry_s)
            return result
        starts = [t.position for t in live if t.copy and t.position is not None]
        starts += [t.popularity_read_position() for t in live]
        start = str(min(starts))
        try:
            batch = self._reader.read(redis_keys.EVENT_LOG, after=start, count=self.settings.batch_size, tombstones=True)
        except RedisError as exc:
            raise TemporaryError(f"source region {self.source!r} unreachable: {exc}", delay=self.settings.retry_s) from exc
        if not batch.entries:
            self._flush_all(live, force=True)
            try:
                self._reader.wait({redis_keys.EVENT_LOG: start}, block_ms=self.settings.block_ms)
            except RedisError as exc:
                raise TemporaryError(f"source region {self.source!r} unreachable: {exc}", delay=self.settings.retry_s) from exc
            return result
        entries = [(parse_stream_id(i), i, f) for i, f in batch.entries]
        result.read = len(entries)
        good, poison = self._classify(entries)
        result.poison = len(poison)
        if poison:
            self._dead_letter(poison, entries)
        for target in live:
            try:
                if target.copy:
                    copied, skipped = self._copy_to(target, entries, good, batch.tombstoned)
                    result.copied[target.region] = copied
                    result.skipped_tombstoned += skipped
                self._add_popularity(target, entries, good)
            except RedisError:
                self._down(target, self._clock())
                result.unreachable.append(target.region)
        self._flush_all(live, force=False)
        return result

    def _flush_all(self, targets: list[_Target], *, force: bool) -> None:
        now = self._clock()
        for target in targets:
            if target.pending_upto is None or (not force and now < target.flush_at):
                continue
            try:
                self._flush_popularity(target)
                target.flush_at = now + self.settings.popularity_flush_s
            except RedisError:
                self._down(target, now)

    def _classify(self, entries: list[_Entry]) -> tuple[dict[str, Event], dict[str, str]]:
        good: dict[str, Event] = {}
        poison: dict[str, str] = {}
        for _, entry_id, fields in entries:
            try:
                good[entry_id] = decode_entry(fields, topology=self.topology, region=self.source)
            except InputError as exc:
                poison[entry_id] = str(exc)
        return good, poison

    def _dead_letter(self, poison: dict[str, str], entries: list[_Entry]) -> None:
        # An entry some target has already passed was recorded when it was first read (recording
        # comes before delivery): a batch re-read for a lagging target does not record it again.
        known = [t.position for t in self._targets.values() if t.position is not None]
        known += [parse_stream_id(t.popularity_position) for t in self._targets.values() if t.popularity_position is not None]
        done = max(known, default=None)
        try:
            with self._clients[self.source].pipeline(transaction=False) as pipe:
                for sid, entry_id, fields in entries:
                    if entry_id in poison and (done is None or sid > done):
                        pipe.xadd(redis_keys.DEAD_LETTER, dead_letter_fields(  # type: ignore[arg-type]
                            stream=redis_keys.EVENT_LOG, entry_id=entry_id, fields=fields,
                            reason=poison[entry_id], consumer=f"replicator:{self.source}"))
                        if self.metrics:
                            self.metrics.dead_letters.labels(region=self.source, consumer="replicator").inc()
                pipe.execute()
        except RedisError as exc:
            raise TemporaryError(f"source region {self.source!r} unreachable: {exc}", delay=self.settings.retry_s) from exc

    def _copy_to(self, target: _Target, entries: list[_Entry], good: Mapping[str, Event], tombstoned: frozenset[str]) -> tuple[int, int]:
        assert target.position is not None
        payload: list[Any] = []
        last = target.position
        skipped = 0
        for sid, entry_id, fields in entries:
            if sid <= target.position:
                continue
            last = sid
            event = good.get(entry_id)
            if event is None:
                continue
            if event.user_id in tombstoned:
                skipped += 1
                continue
            payload.append([entry_id, event.user_id, [x for kv in fields.items() for x in kv]])
        if last == target.position:
            return 0, 0
        added, skipped_there, new_last = self._copy[target.region](
            keys=[redis_keys.replica_log(self.source), redis_keys.TOMBSTONES], args=[str(last), json.dumps(payload)],
            client=self._clients[target.region])
        target.position = parse_stream_id(text(new_last))
        if self.metrics and added:
            self.metrics.replicated.labels(source=self.source, destination=target.region).inc(int(added))
        return int(added), skipped + int(skipped_there)

    def _add_popularity(self, target: _Target, entries: list[_Entry], good: Mapping[str, Event]) -> None:
        position = target.popularity_read_position()
        deltas = target.pending
        last = position
        for sid, entry_id, _ in entries:
            if sid <= position:
                continue
            last = sid
            event = good.get(entry_id)
            if event is not None:
                weight = EVENT_WEIGHTS[event.type]
                if weight > 0:
                    deltas[event.item_id] = deltas.get(event.item_id, 0.0) + weight
        if last != position:
            target.pending_upto = last

    def _flush_popularity(self, target: _Target) -> None:
        """Add the pending deltas in the target region, exactly once (compare-and-set on its checkpoint)."""
        assert target.popularity_position is not None and target.pending_upto is not None
        ok, current = self._popularity[target.region](
            keys=[redis_keys.ITEM_POPULARITY, popularity_checkpoint(self.source)],
            args=[target.popularity_position, str(target.pending_upto),
                  json.dumps({k: repr(v) for k, v in target.pending.items()})],
            client=self._clients[target.region])
        target.popularity_position = text(current)
        target.pending = {}
        target.pending_upto = None

    # -- metrics and the loop ------------------------------------------------------------------
    def _maybe_update_metrics(self, now: float) -> None:
        if self.metrics is None or now < self._next_metrics:
            return
        self._next_metrics = now + self.settings.metrics_interval_s
        self.metrics.observe(collect_pairs(self.topology, self._clients, sources=(self.source,), now=now))

    def run(self, should_stop: Callable[[], bool]) -> None:
        """Step until `should_stop()`; a source outage is waited out, never fatal."""
        while not should_stop():
            try:
                self.step()
            except TemporaryError as exc:
                _log.warning("%s; retrying in %.1fs", exc, exc.delay)
                self._sleep(exc.delay)
