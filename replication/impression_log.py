"""A region's impressions stream (`log:impressions`): what the cell showed known users.

Written by the cell off the request path, in batches (serving.recommender queues them), read by
online_metrics.from_logs to attribute outcomes. Bounded: every XADD trims the stream to about
regions.redis_keys.IMPRESSIONS_CAP entries (MAXLEN ~, which trims whole radix-tree nodes: cheap).

Personal data stays home: an impression is written only in a region of the user's home geography
(regions.geo; a batch holding another geography's user is refused whole, nothing written), it is
never replicated (attribution runs in each region over that region's impressions and the logs of
its geography, and only the per-variant totals, which name no user, leave the region), and
replication.deletion removes a deleted user's entries. A tombstoned user's impression is dropped by
the append script itself (HEXISTS users:deleted in the same atomic step as the XADD, as the event
append does): a slate answered just before the deletion and recorded just after it leaves nothing.
"""
from __future__ import annotations

import json
from typing import Sequence

from contracts.impressions import Impression
from regions import redis_keys
from regions.errors import InputError, TemporaryError
from regions.geo import home_geography_of, may_hold_personal_data
from regions.topology import Topology
from replication.redis_io import Redis, RedisError, text

__all__ = ["append_impressions", "read_impressions"]

_APPEND_SCRIPT = """
local added = {}
for i = 2, #ARGV, 2 do
  if redis.call('HEXISTS', KEYS[2], ARGV[i]) == 0 then
    local fields = cjson.decode(ARGV[i + 1])
    added[#added + 1] = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', unpack(fields))
  end
end
return added
"""
"""KEYS: the stream, the tombstones; ARGV: the cap, then user_id and a JSON [field, value, ...] list per
impression. Returns the ids it added (a tombstoned user's impressions are not added)."""

READ_BATCH = 2000
"""Entries per XRANGE while reading: bounded memory per round trip."""


def append_impressions(client: Redis, impressions: Sequence[Impression], *, topology: Topology, region: str,
                       cap: int = redis_keys.IMPRESSIONS_CAP) -> list[str]:
    """Append in one pipeline; returns the stream ids. InputError (nothing written) when a user of
    the batch lives in a geography whose data this region may not hold; TemporaryError when Redis
    is unavailable."""
    for imp in impressions:
        home = home_geography_of(imp.user_id, topology)
        if not may_hold_personal_data(topology, region=region, home_geography=home):
            raise InputError("user_id", f"user {imp.user_id!r} lives in geography {home!r}; region {region!r} may not "
                                        "record what they were shown")
    if not impressions:
        return []
    args: list[str] = []
    for imp in impressions:
        args += [imp.user_id, json.dumps([str(x) for kv in imp.to_fields().items() for x in kv])]
    try:
        ids = client.eval(_APPEND_SCRIPT, 2, redis_keys.IMPRESSIONS, redis_keys.TOMBSTONES, str(int(cap)), *args)
        return [text(i) for i in ids]
    except RedisError as exc:
        raise TemporaryError(f"region {region!r}: could not append to {redis_keys.IMPRESSIONS}: {exc}", delay=0.5) from exc


def read_impressions(client: Redis, *, region: str, since_ts: float = 0.0, until_ts: float | None = None,
                     batch: int = READ_BATCH) -> tuple[list[Impression], int]:
    """The region's impressions recorded in [since_ts, until_ts] (by stream id, the cell's clock),
    and how many entries were malformed (skipped)."""
    start = f"{int(since_ts * 1000)}-0" if since_ts > 0 else "-"
    end = f"{int(until_ts * 1000)}-18446744073709551615" if until_ts is not None else "+"
    out: list[Impression] = []
    bad = 0
    try:
        while True:
            chunk = client.xrange(redis_keys.IMPRESSIONS, min=start, max=end, count=batch)
            for _, fields in chunk:
                try:
                    out.append(Impression.from_fields(fields))
                except InputError:
                    bad += 1
            if len(chunk) < batch:
                return out, bad
            start = f"({text(chunk[-1][0])}"
    except RedisError as exc:
        raise TemporaryError(f"region {region!r}: could not read {redis_keys.IMPRESSIONS}: {exc}", delay=0.5) from exc
