"""A region's interaction log: the stream `log:events` in the region's Redis.

Durability. The region's redis-server runs with AOF on and `appendfsync always`
(regions.processes.REDIS_APPENDFSYNC). An event is *acknowledged* once XADD has returned, and with
`always` Redis has written AND fsync'ed the AOF before it replies, so neither a killed redis-server
(kill -9, OOM, crash) nor a power loss of the machine loses an acknowledged event.

Why not `everysec`: Redis 7.0 (Debian 12) postpones the AOF write(2) for up to 2 s while a
background fsync is still running, and replies to clients meanwhile; a kill -9 in that window lost
the last 50 acknowledged events in one of our CI runs (tests/replication/test_interaction_log.py).
`always` costs about 0.3 ms per write command on this machine (redis-benchmark, one client) and
one fsync per MULTI batch, which the throughput and lag targets absorb. (Redis 7.2's WAITAOF
would allow `everysec` with per-write confirmation; 7.0 does not have it.)

A batch is appended in one MULTI/EXEC pipeline: one round trip, applied as a unit by Redis, and the
returned stream ids are the acknowledgement. Writing personal data asks the geo policy first: an
event whose user lives in another geography than the region's is refused before anything is
written (regions.geo).

Stream ids are `<ms>-<seq>` with the source Redis's clock: the acknowledgement time. Replica
streams in peer regions keep these ids (replication.replicating).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence


from regions import redis_keys
from regions.errors import InputError, TemporaryError
from regions.geo import home_geography_of, may_hold_personal_data
from regions.topology import Topology
from contracts.events import EVENT_WEIGHTS, MAX_BATCH, Event, parse_event
from regions.cas_retry import LOST, CasRetry, Lost
from replication.redis_io import Redis, RedisError, ResponseError, WatchError, text
from replication.tombstones import first_deleted

TOMBSTONE_WATCH_ATTEMPTS = 5
"""Deletions are rare (a handful a minute at most); losing the WATCH race five times in a row means
something is rewriting the tombstone hash in a loop: the caller retries later."""



def require_resident(topology: Topology, *, region: str, event: Event) -> None:
    """Raise InputError unless `region` may hold this event's personal data.

    The event's `geo` must be the user's home geography (user ids carry it) and that geography must
    be the region's.
    """
    home = home_geography_of(event.user_id, topology)
    if event.geo != home:
        raise InputError("geo", f"event {event.event_id!r} says geography {event.geo!r} but user {event.user_id!r} lives in {home!r}")
    if not may_hold_personal_data(topology, region=region, home_geography=home):
        raise InputError(
            "user_id",
            f"user {event.user_id!r} lives in geography {home!r}; region {region!r} "
            f"({topology.region(region).geography}) may not store their events: send them to a {home} region",
        )


def append_events(client: Redis, events: Sequence[Event], *, topology: Topology, region: str) -> list[str]:
    """Append a batch to the region's log; return the stream ids (the acknowledgement).

    Refuses the whole batch (InputError, nothing written) when it is larger than MAX_BATCH, an
    event's user lives in another geography, or an event's user is tombstoned (UserDeleted, checked
    atomically with the append). Raises TemporaryError when Redis is unavailable.
    """
    if len(events) > MAX_BATCH:
        raise InputError("events", f"at most {MAX_BATCH} events per batch, got {len(events)}; split the batch")
    for event in events:
        require_resident(topology, region=region, event=event)
    if not events:
        return []
    users = [e.user_id for e in events]

    def try_once(pipe: Any) -> list[Any] | Lost:
        """WATCH the tombstones, check, append: a deletion between the check and the XADD aborts the EXEC."""
        try:
            pipe.watch(redis_keys.TOMBSTONES)
            deleted = first_deleted(users, pipe.hmget(redis_keys.TOMBSTONES, users))
            if deleted is not None:
                raise deleted
            pipe.multi()
            for event in events:
                pipe.xadd(redis_keys.EVENT_LOG, event.to_fields())  # type: ignore[arg-type]
            return pipe.execute()
        except WatchError:
            return LOST

    retry = CasRetry(attempts=TOMBSTONE_WATCH_ATTEMPTS, exhausted=lambda n: TemporaryError(
        f"region {region!r}: {n} deletions changed {redis_keys.TOMBSTONES} while appending; retry the batch", delay=0.1))
    try:
        with client.pipeline(transaction=True) as pipe:
            ids = retry.run(lambda: try_once(pipe))
    except RedisError as exc:
        raise TemporaryError(f"region {region!r}: could not append to {redis_keys.EVENT_LOG}: {exc}", delay=0.5) from exc
    return [text(i) for i in ids]


@dataclass(frozen=True)
class Refusal:
    """One client event that was refused, and why."""

    index: int
    field: str
    message: str


@dataclass(frozen=True)
class ParsedBatch:
    events: tuple[Event, ...]
    refused: tuple[Refusal, ...]


def parse_batch(raws: Iterable[Mapping[str, Any]], *, now: float, topology: Topology) -> ParsedBatch:
    """Validate client events with contracts.events.parse_event; keep the good, name the bad."""
    good: list[Event] = []
    bad: list[Refusal] = []
    for index, raw in enumerate(raws):
        try:
            user = raw.get("user_id") if isinstance(raw, Mapping) else None
            geo = home_geography_of(str(user), topology) if user not in (None, "") else ""
            good.append(parse_event(raw, now=now, geo=geo))
        except InputError as exc:
            bad.append(Refusal(index=index, field=exc.field, message=exc.reason))
    return ParsedBatch(events=tuple(good), refused=tuple(bad))


def decode_entry(fields: Mapping[Any, Any], *, topology: Topology, region: str) -> Event:
    """Decode and re-check a stream entry. InputError means poison: malformed, invalid or misplaced."""
    event = Event.from_fields(fields)
    if event.type not in EVENT_WEIGHTS:
        raise InputError("type", f"unknown event type {event.type!r}; allowed: {', '.join(EVENT_WEIGHTS)}")
    if not event.user_id or not event.item_id:
        raise InputError("event", "user_id and item_id must not be empty")
    require_resident(topology, region=region, event=event)
    return event


@dataclass(frozen=True)
class LogEntry:
    entry_id: str
    event: Event | None
    """None when the entry is poison; `error` says why."""
    error: str | None = None


def read_events(
    client: Redis, *, topology: Topology, region: str, stream: str = redis_keys.EVENT_LOG,
    after: str = "0-0", count: int = MAX_BATCH,
) -> list[LogEntry]:
    """Up to `count` entries of `stream` with ids greater than `after`, decoded."""
    try:
        raw = client.xrange(stream, min=f"({after}" if after != "0-0" else "-", count=count)
    except RedisError as exc:
        raise TemporaryError(f"region {region!r}: could not read {stream}: {exc}", delay=0.5) from exc
    out: list[LogEntry] = []
    for entry_id, fields in raw:
        try:
            out.append(LogEntry(entry_id=text(entry_id), event=decode_entry(fields, topology=topology, region=region)))
        except InputError as exc:
            out.append(LogEntry(entry_id=text(entry_id), event=None, error=str(exc)))
    return out


def dead_letter_fields(*, stream: str, entry_id: str, fields: Mapping[Any, Any], reason: str, consumer: str) -> dict[str, str]:
    """The `log:dead` entry for a poison event: where it was, who gave up on it, why, and the raw fields."""
    raw = ";".join(f"{text(k)}={text(v)}" for k, v in fields.items())
    return {"stream": stream, "entry_id": entry_id, "consumer": consumer, "reason": reason, "raw": raw[:4096]}


def stream_last_id(client: Redis, stream: str) -> str:
    """The stream's last generated id ('0-0' when the stream does not exist).

    Unlike the id of the last entry, this never moves back when entries are deleted or trimmed.
    """
    try:
        info = client.xinfo_stream(stream)
    except ResponseError as exc:
        if "no such key" in str(exc).lower():
            return "0-0"
        raise TemporaryError(f"could not read {stream}: {exc}") from exc
    except RedisError as exc:
        raise TemporaryError(f"could not read {stream}: {exc}", delay=0.5) from exc
    return text(info["last-generated-id"])


_READ_SCRIPT = """
local entries = redis.call('XRANGE', KEYS[1], ARGV[1], '+', 'COUNT', ARGV[2])
local dead = {}
if ARGV[3] == '1' then
  local seen = {}
  for _, e in ipairs(entries) do
    local f = e[2]
    for j = 1, #f, 2 do
      if f[j] == 'user_id' and seen[f[j + 1]] == nil then
        seen[f[j + 1]] = true
        if redis.call('HEXISTS', KEYS[2], f[j + 1]) == 1 then dead[#dead + 1] = f[j + 1] end
      end
    end
  end
end
return cjson.encode({entries, dead})
"""


@dataclass(frozen=True)
class RawBatch:
    """Entries of one stream as text (id, fields), and which of their users are tombstoned."""

    entries: tuple[tuple[str, dict[str, str]], ...]
    tombstoned: frozenset[str]


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []  # cjson encodes an empty table as {}


class StreamReader:
    """Reads stream batches in one round trip, encoded as one JSON reply by a Lua script.

    Parsing one JSON string is several times cheaper than parsing ~20 RESP items per entry in
    Python, which is what lets one replicator core pass 20,000 events/s. An entry whose bytes are
    not UTF-8 (poison) makes the JSON unreadable: that batch is read again the ordinary way.
    """

    def __init__(self, client: Redis) -> None:
        self.client = client
        self._script = client.register_script(_READ_SCRIPT)

    def read(self, stream: str, *, after: str, count: int, tombstones: bool = False) -> RawBatch:
        """Up to `count` entries with ids greater than `after`. Raises redis errors as they come."""
        raw = self._script(keys=[stream, redis_keys.TOMBSTONES], args=[f"({after}", count, "1" if tombstones else "0"])
        try:
            entries_raw, dead = json.loads(raw)
        except (UnicodeDecodeError, ValueError):
            return self._read_slowly(stream, after=after, count=count, tombstones=tombstones)
        entries = tuple((e[0], dict(zip(e[1][::2], e[1][1::2]))) for e in _as_list(entries_raw))
        return RawBatch(entries=entries, tombstoned=frozenset(_as_list(dead)))

    def _read_slowly(self, stream: str, *, after: str, count: int, tombstones: bool) -> RawBatch:
        def text(value: Any) -> str:
            return value.decode(errors="replace") if isinstance(value, bytes) else str(value)

        raw = self.client.xrange(stream, min=f"({after}", count=count)
        entries = tuple((text(i), {text(k): text(v) for k, v in f.items()}) for i, f in raw)
        users = sorted({f["user_id"] for _, f in entries if f.get("user_id")})
        dead: set[str] = set()
        if tombstones and users:
            dead = {u for u, flag in zip(users, self.client.hmget(redis_keys.TOMBSTONES, users)) if flag is not None}
        return RawBatch(entries=entries, tombstoned=frozenset(dead))

    def wait(self, positions: Mapping[str, str], *, block_ms: int) -> bool:
        """Block up to `block_ms` until one of the streams has an entry after its position."""
        if block_ms <= 0:
            return False
        reply = self.client.xread(dict(positions), count=1, block=block_ms)
        return bool(reply)
