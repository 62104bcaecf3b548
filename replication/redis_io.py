"""The replication package's one Redis boundary: the client type and errors, how a region's client
is built (loopback host from the topology, short timeouts, one quick retry), and the decoding of
replies. The other replication modules (and serving's feature updater, which reads the same logs)
import these from here; no other module of theirs imports `redis`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from regions.topology import Topology

Redis = redis.Redis
RedisError = redis.RedisError
ResponseError = redis.ResponseError
WatchError = redis.WatchError


def text(value: Any, *, errors: str = "strict") -> str:
    """A reply field as text (bytes clients return bytes). `errors="replace"` for scans of data of
    any shape (the residency audit), where undecodable bytes must not stop the scan."""
    return value.decode("utf-8", errors) if isinstance(value, bytes) else str(value)


@dataclass(frozen=True)
class ClientSettings:
    """How the log's adapters talk to a region's Redis."""

    connect_timeout_s: float = 1.0
    """Loopback connects take microseconds; a second means the server is down."""
    socket_timeout_s: float = 5.0
    """Longer than any XREAD BLOCK we issue (<= 1 s), short enough to notice a hung server."""
    retries: int = 1
    """One quick retry rides over a dropped connection; longer outages are the callers' loops' business."""


def connect(topology: Topology, region: str, *, settings: ClientSettings = ClientSettings()) -> Redis:
    """A client (bytes replies) for `region`'s Redis on its host (loopback, or its namespace's address)."""
    port = topology.region(region).redis_port
    return Redis(
        host=topology.region_host(region), port=port, socket_connect_timeout=settings.connect_timeout_s,
        socket_timeout=settings.socket_timeout_s,
        retry=Retry(ExponentialBackoff(cap=0.1, base=0.01), settings.retries),
    )


def connect_all(topology: Topology, *, settings: ClientSettings = ClientSettings()) -> dict[str, Redis]:
    """One client per region of the topology."""
    return {name: connect(topology, name, settings=settings) for name in topology.regions}
