"""Chaos's one Redis boundary: how a game day or an expectation probe reaches a region's Redis
(loopback host and port from the topology; short timeouts, because a fault is what it looks for).
"""
from __future__ import annotations

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from chaos.context import StackContext


def region_client(ctx: StackContext, region: str) -> redis.Redis:
    """A text (decoded) client for reading the region's logs: 2 s timeouts."""
    return redis.Redis(host=ctx.topology.region_host(region), port=ctx.topology.region(region).redis_port,
                       decode_responses=True, socket_timeout=2.0, socket_connect_timeout=2.0)


def answers_ping(ctx: StackContext, region: str) -> bool:
    """Whether the region's Redis answers PING within a second, without retrying."""
    client = redis.Redis(host=ctx.topology.region_host(region), port=ctx.topology.region(region).redis_port,
                         socket_timeout=1.0, socket_connect_timeout=1.0, retry=Retry(NoBackoff(), 0))
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def stream_event_counts(client: redis.Redis, key: str, *, since: float) -> dict[str, int]:
    """{event_id: entries holding it} of the stream's entries added at or after `since` (epoch seconds)."""
    counts: dict[str, int] = {}
    start = f"{int(since * 1000)}-0"
    while True:
        batch = client.xrange(key, min=start, max="+", count=1000)
        for _, fields in batch:
            if fields.get("event_id"):
                counts[str(fields["event_id"])] = counts.get(str(fields["event_id"]), 0) + 1
        if len(batch) < 1000:
            return counts
        ms, _, n = batch[-1][0].partition("-")
        start = f"{ms}-{int(n) + 1}"
