"""Deleting a user (the right to be forgotten) in every region of the user's home geography.

Order matters:

1. a tombstone (`users:deleted`: user_id -> deletion time) is written in every region of the
   geography first. From then on the replicators do not copy the user's events (their copy script
   checks the destination's tombstones atomically as it writes) and the feature updaters do not
   write the user's features (their commit script checks too): a late replicated event cannot
   bring the user back;
2. then the user's data is removed in each region: features (`uf:<user>`), the cached slate
   (`cache:<user>`), and every identifiable log entry (XDEL of the entries of `log:events`,
   `log:replica:*`, `log:dead` and `log:impressions` that name the user), and the user's pseudonymised entries of
   `log:archive` (found by their keyed pseudonym: needs the retention key; without it the archive
   is reported under `remains`).

What a deletion cannot remove at once is reported as `remains`: the archive without its key, and
the user's embedding in the geography's serving bundle, which leaves with the next bundle (training
excludes tombstoned users) within the 30-day deadline (replication.erasure_deadline).

Regions of other geographies never hold the user's personal data (regions.geo), so they are not
touched. A region that cannot be reached is reported; running the deletion again is safe
(idempotent) and finishes the job.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping


from regions import redis_keys
from regions.errors import InputError
from regions.geo import home_geography_of
from regions.topology import Topology
from replication.redis_io import Redis, RedisError, text
from replication.retention import ARCHIVE_LOG, pseudonym

SCAN_BATCH = 1000
"""Log entries read per XRANGE while searching a stream: bounded memory on long logs."""


@dataclass(frozen=True)
class RegionDeletion:
    """What was removed in one region."""

    region: str
    tombstoned: bool
    features_removed: int
    cached_results_removed: int
    log_entries_removed: Mapping[str, int] = field(default_factory=dict)
    """Stream name -> entries deleted."""
    error: str | None = None
    remains: tuple[str, ...] = ()
    """What of the user's data this region still holds after the deletion, and why."""

    @property
    def log_total(self) -> int:
        return sum(self.log_entries_removed.values())


@dataclass(frozen=True)
class DeletionReport:
    user_id: str
    geography: str
    deleted_at: float
    regions: tuple[RegionDeletion, ...]

    @property
    def complete(self) -> bool:
        """True when every region of the geography was reached (tombstone and removal)."""
        return all(r.error is None for r in self.regions)

    @property
    def log_entries_removed(self) -> int:
        return sum(r.log_total for r in self.regions)



def entry_names_user(fields: Mapping[Any, Any], user_id: str) -> bool:
    """True when a stream entry (an event or a dead letter's raw copy) identifies `user_id`."""
    decoded = {text(k): text(v) for k, v in fields.items()}
    if decoded.get("user_id") == user_id:
        return True
    raw = decoded.get("raw")
    return raw is not None and f"user_id={user_id}" in raw.split(";")


def _log_streams(client: Redis) -> list[str]:
    streams = [redis_keys.EVENT_LOG, redis_keys.DEAD_LETTER, redis_keys.IMPRESSIONS]
    replicas = sorted(text(k) for k in client.scan_iter(match=redis_keys.replica_log("*"), count=1000))
    return streams + replicas


def _purge_stream(client: Redis, stream: str, names: Callable[[Mapping[Any, Any]], bool], *, batch: int) -> int:
    removed = 0
    start = "-"
    while True:
        chunk = client.xrange(stream, min=start, count=batch)
        if not chunk:
            return removed
        doomed = [entry_id for entry_id, fields in chunk if names(fields)]
        if doomed:
            removed += int(client.xdel(stream, *doomed))
        if len(chunk) < batch:
            return removed
        start = f"({text(chunk[-1][0])}"


def _purge_archive(client: Redis, user_id: str, key: bytes | None, *, batch: int) -> tuple[int, tuple[str, ...]]:
    """Remove the user's pseudonymised archive entries: (removed, remains)."""
    held = int(client.xlen(ARCHIVE_LOG))
    if not held:
        return 0, ()
    if not key:
        return 0, (f"{ARCHIVE_LOG}: {held} pseudonymised entries could not be searched for the user: set "
                   "REGIONCTL_RETENTION_KEY (the retention key) and run the deletion again",)
    alias = pseudonym(user_id, key)
    return _purge_stream(client, ARCHIVE_LOG, lambda f: text(f.get(b"user_id", f.get("user_id", ""))) == alias, batch=batch), ()


def delete_user(
    topology: Topology, clients: Mapping[str, Redis], user_id: str, now: float, *, batch: int = SCAN_BATCH,
    pseudonym_key: bytes | None = None,
) -> DeletionReport:
    """Remove `user_id`'s personal data from every region of their geography; tombstone them there.
    `pseudonym_key`: the retention key, to find the user's `log:archive` entries."""
    if not user_id:
        raise InputError("user_id", "must not be empty; give the id of the user to delete, e.g. eu-123")
    geography = home_geography_of(user_id, topology)
    regions = [r.name for r in topology.regions_in(geography)]
    errors: dict[str, str] = {}
    tombstoned: set[str] = set()
    for region in regions:
        try:
            clients[region].hset(redis_keys.TOMBSTONES, user_id, repr(now))
            tombstoned.add(region)
        except RedisError as exc:
            errors[region] = f"tombstone not written: {exc}; run the deletion again when {region} is back"
    results: list[RegionDeletion] = []
    for region in regions:
        if region in errors:
            results.append(RegionDeletion(region=region, tombstoned=False, features_removed=0, cached_results_removed=0,
                                          error=errors[region]))
            continue
        client = clients[region]
        removed: dict[str, int] = {}
        try:
            with client.pipeline(transaction=True) as pipe:
                pipe.delete(redis_keys.user_features(user_id))
                pipe.delete(redis_keys.cached_result(user_id))
                pipe.delete(redis_keys.seen_items(user_id))
                features, cached, _seen = pipe.execute()
            for stream in _log_streams(client):
                n = _purge_stream(client, stream, lambda f: entry_names_user(f, user_id), batch=batch)
                if n:
                    removed[stream] = n
            archived, remains = _purge_archive(client, user_id, pseudonym_key, batch=batch)
            if archived:
                removed[ARCHIVE_LOG] = archived
        except RedisError as exc:
            results.append(RegionDeletion(region=region, tombstoned=True, features_removed=0, cached_results_removed=0,
                                          log_entries_removed=removed,
                                          error=f"removal interrupted: {exc}; run the deletion again when {region} is back"))
            continue
        results.append(RegionDeletion(region=region, tombstoned=True, features_removed=int(features),
                                      cached_results_removed=int(cached), log_entries_removed=removed, remains=remains))
    return DeletionReport(user_id=user_id, geography=geography, deleted_at=now, regions=tuple(results))
