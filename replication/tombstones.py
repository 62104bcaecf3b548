"""Tombstones (`users:deleted`: user_id -> deletion time) as the writers of personal data honour them.

A deleted user's new events are refused (UserDeleted, an InputError naming `user_id`: the cell
answers 422 and logs nothing); the check and the append are one atomic step in Redis
(replication.interaction_log.append_events WATCHes the tombstone hash around its MULTI).
"""
from __future__ import annotations

import time
from typing import Any, Sequence

from regions.errors import InputError


class UserDeleted(InputError):
    """An event names a user who was deleted (right to be forgotten): nothing of the batch is stored."""

    def __init__(self, user_id: str, deleted_at: float | None, *, index: int | None = None) -> None:
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(deleted_at)) if deleted_at is not None else "an unknown time"
        which = f"event {index} of the batch: " if index is not None else ""
        super().__init__("user_id", f"{which}user {user_id!r} was deleted at {when}; their events are not stored "
                                    "(right to be forgotten); nothing of this batch was stored")
        self.user_id = user_id


def _float(value: Any) -> float | None:
    try:
        return float(value.decode() if isinstance(value, bytes) else value)
    except (TypeError, ValueError):
        return None


def first_deleted(user_ids: Sequence[str], deletion_times: Sequence[Any]) -> UserDeleted | None:
    """Pure. `deletion_times` is HMGET users:deleted of `user_ids` (None = not deleted): the error
    for the first deleted one, else None."""
    for index, (user_id, when) in enumerate(zip(user_ids, deletion_times)):
        if when is not None:
            return UserDeleted(user_id, _float(when), index=index)
    return None


__all__ = ["UserDeleted", "first_deleted"]
