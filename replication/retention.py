"""Retention: identifiable events older than the retention period (30 days) do not stay identifiable.

Stream ids are `<ms>-<seq>` acknowledgement times, so "older than the cutoff" is "id below
`<cutoff_ms>-0`" and `XTRIM key MINID <cutoff_ms>-0` removes exactly those entries. Careful with
replica streams: their entries keep the SOURCE's id, so an event copied late (after a peer outage)
is aged by when its source acknowledged it, not by when it arrived; the same cutoff therefore
applies to the source log and to every copy, and an event leaves all of them in the same run.
Trimming never moves a stream's last generated id back, so the replicators' checkpoints (a replica
stream's last id) survive even a stream trimmed to empty.

Two modes:

- `trim` (default): old entries of `log:events`, `log:replica:*` and `log:dead` are removed;
- `pseudonymise`: old event entries are moved to `log:archive` (kept for analytics) with the user
  and session ids replaced by keyed HMAC-SHA256 pseudonyms, and removed from the live streams, in
  one MULTI per chunk so an entry is never in both or neither. Dead letters are always trimmed
  (their raw copy cannot be pseudonymised reliably), and so are impressions (`log:impressions`:
  what a user was shown has no analytics use once its outcomes are counted).
"""
from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Any, Mapping


from regions import redis_keys
from regions.errors import InputError
from regions.topology import Topology
from replication.lag import StreamId, stream_id_for_time
from replication.redis_io import Redis, RedisError, text

ARCHIVE_LOG = "log:archive"
"""Pseudonymised events past retention (stream; auto ids, the original id in field `source_id`)."""

MODES = ("trim", "pseudonymise")


@dataclass(frozen=True)
class RetentionSettings:
    """Retention policy; each default carries its reason."""

    max_age_days: float = 30.0
    """Policy: identifiable interaction events are kept 30 days."""
    mode: str = "trim"
    """Removing is the simplest compliant choice; `pseudonymise` keeps the events for analytics."""
    chunk: int = 1000
    """Entries moved per MULTI when pseudonymising: bounded memory and short transactions."""

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise InputError("mode", f"unknown retention mode {self.mode!r}; allowed: {', '.join(MODES)}")
        if not self.max_age_days > 0:
            raise InputError("max_age_days", f"must be greater than 0, got {self.max_age_days!r}")


def retention_cutoff(now: float, max_age_days: float) -> StreamId:
    """Entries with ids below this are past retention."""
    return stream_id_for_time(max(0.0, now - max_age_days * 86400.0))


def pseudonym(value: str, key: bytes) -> str:
    """A stable keyed pseudonym: the same id gives the same pseudonym, unlinkable without the key."""
    return "p-" + hmac.new(key, value.encode(), hashlib.sha256).hexdigest()[:24]


def pseudonymise_fields(fields: Mapping[Any, Any], *, key: bytes, source_stream: str, source_id: str) -> dict[str, str]:
    """The archived form of an event entry: user and session ids replaced, event id dropped."""
    out = {(k.decode() if isinstance(k, bytes) else str(k)): (v.decode() if isinstance(v, bytes) else str(v)) for k, v in fields.items()}
    out["user_id"] = pseudonym(out.get("user_id", ""), key)
    if out.get("session_id"):
        out["session_id"] = pseudonym(out["session_id"], key)
    out.pop("event_id", None)
    out["source_stream"] = source_stream
    out["source_id"] = source_id
    return out


@dataclass(frozen=True)
class StreamRetention:
    region: str
    stream: str
    removed: int
    archived: int = 0


@dataclass(frozen=True)
class RetentionReport:
    cutoff_id: str
    mode: str
    streams: tuple[StreamRetention, ...]
    errors: tuple[str, ...] = ()

    @property
    def removed(self) -> int:
        return sum(s.removed for s in self.streams)



def _archive_stream(client: Redis, stream: str, *, cutoff: StreamId, key: bytes, chunk: int) -> int:
    moved = 0
    while True:
        entries = client.xrange(stream, min="-", max=f"({cutoff}", count=chunk)
        if not entries:
            return moved
        with client.pipeline(transaction=True) as pipe:
            for entry_id, fields in entries:
                pipe.xadd(ARCHIVE_LOG, pseudonymise_fields(  # type: ignore[arg-type]
                    fields, key=key, source_stream=stream, source_id=text(entry_id)))
            pipe.xdel(stream, *[entry_id for entry_id, _ in entries])
            pipe.execute()
        moved += len(entries)


def run_retention(
    topology: Topology, clients: Mapping[str, Redis], now: float, *,
    settings: RetentionSettings = RetentionSettings(), key: bytes | None = None,
) -> RetentionReport:
    """Apply retention in every region; a region that cannot be reached is reported, not fatal."""
    if settings.mode == "pseudonymise" and not key:
        raise InputError("key", "pseudonymise mode needs a secret key; set REGIONCTL_RETENTION_KEY")
    cutoff = retention_cutoff(now, settings.max_age_days)
    results: list[StreamRetention] = []
    errors: list[str] = []
    for region in sorted(topology.regions):
        client = clients[region]
        try:
            replicas = sorted(text(k) for k in client.scan_iter(match=redis_keys.replica_log("*"), count=1000))
            for stream in [redis_keys.EVENT_LOG, *replicas]:
                if settings.mode == "pseudonymise":
                    assert key is not None
                    archived = _archive_stream(client, stream, cutoff=cutoff, key=key, chunk=settings.chunk)
                    results.append(StreamRetention(region=region, stream=stream, removed=archived, archived=archived))
                else:
                    results.append(StreamRetention(region=region, stream=stream, removed=int(client.xtrim(stream, minid=str(cutoff), approximate=False))))
            for stream in (redis_keys.DEAD_LETTER, redis_keys.IMPRESSIONS):
                results.append(StreamRetention(region=region, stream=stream,
                                               removed=int(client.xtrim(stream, minid=str(cutoff), approximate=False))))
        except RedisError as exc:
            errors.append(f"region {region}: retention not applied: {exc}; run it again when the region is back")
    return RetentionReport(cutoff_id=str(cutoff), mode=settings.mode, streams=tuple(results), errors=tuple(errors))
