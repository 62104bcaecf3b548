"""Tombstones (`users:deleted`: user_id -> deletion time) as the writers of personal data honour them.

A deleted user's new events are refused (UserDeleted, an InputError naming `user_id`: the cell
answers 422 and logs nothing); the check and the append are one atomic step in Redis
(replication.interaction_log.append_events WATCHes the tombstone hash around its MULTI).
"""
from __future__ import annotations

import time
from typing import Any, Mapping, Sequence

from regions import redis_keys
from regions.errors import InputError
from regions.topology import Topology
from replication.redis_io import Redis, RedisError, text


class UserDeleted(InputError):
    """An event names a user who was deleted (right to be forgotten): nothing of the batch is stored."""

    def __init__(self, user_id: str, deleted_at: float | None, *, index: int | None = None) -> None:
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(deleted_at)) if deleted_at is not None else "an unknown time"
        which = f"event {index} of the batch: " if index is not None else ""
        super().__init__("user_id", f"{which}user {user_id!r} was deleted at {when}; their events are not stored "
                                    "(right to be forgotten); nothing of this batch was stored")
        self.user_id = user_id


def deletion_time(value: Any) -> float | None:
    """A tombstone's value (epoch seconds, as text or bytes) as a number; None when unreadable."""
    try:
        return float(text(value)) if value is not None else None
    except (TypeError, ValueError):
        return None


def first_deleted(user_ids: Sequence[str], deletion_times: Sequence[Any]) -> UserDeleted | None:
    """Pure. `deletion_times` is HMGET users:deleted of `user_ids` (None = not deleted): the error
    for the first deleted one, else None."""
    for index, (user_id, when) in enumerate(zip(user_ids, deletion_times)):
        if when is not None:
            return UserDeleted(user_id, deletion_time(when), index=index)
    return None


def tombstoned_users(client: Redis) -> frozenset[str]:
    """The users tombstoned in one region's Redis (HSCAN of `users:deleted`). Raises RedisError."""
    return frozenset(text(k) for k, _ in client.hscan_iter(redis_keys.TOMBSTONES, count=1000))


def read_geography_tombstones(topology: Topology, geography: str, clients: Mapping[str, Redis], *,
                              now: float) -> tuple[frozenset[str], float, tuple[str, ...]]:
    """The deleted users of `geography` (the union over its regions' `users:deleted`), the time
    up to which that set is complete (`now`, or 0.0 when a region could not be read), and errors."""
    users: set[str] = set()
    errors: list[str] = []
    for region in topology.regions_in(geography):
        try:
            users.update(tombstoned_users(clients[region.name]))
        except RedisError as exc:
            errors.append(f"tombstones of {region.name} not read ({exc}): the bundle is marked as not honouring deletions")
    return frozenset(users), (0.0 if errors else now), tuple(errors)


__all__ = ["UserDeleted", "deletion_time", "first_deleted", "read_geography_tombstones", "tombstoned_users"]
