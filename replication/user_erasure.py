"""A user's erasure as the control API runs it: delete in every region of the user's geography
(replication.deletion, over fresh Redis connections), record it, and answer.

The record (the caller journals it; `POST /v1/users/{id}/delete` journals a NOTE) keeps a SHA-256
of the user id, never the id itself.
"""
from __future__ import annotations

import hashlib
from typing import Any, Callable, Mapping

from regions.errors import InputError
from regions.topology import Topology
from replication.deletion import DeletionReport, delete_user
from replication.redis_io import connect_all

Record = Callable[[str, Mapping[str, Any]], None]
"""record(reason, inputs): where the erasure is written down (the decision journal)."""


def region_rows(report: DeletionReport) -> list[dict[str, Any]]:
    return [{"region": r.region, "tombstoned": r.tombstoned, "features_removed": r.features_removed,
             "cached_results_removed": r.cached_results_removed, "log_entries_removed": dict(r.log_entries_removed),
             "error": r.error, "remains": list(r.remains)} for r in report.regions]


def erase_user(topology: Topology, user_id: str, *, now: float, reason: str, record: Record,
               pseudonym_key: bytes | None = None) -> dict[str, Any]:
    """Delete `user_id`'s personal data in every region of their geography, record it, and return
    the answer ({user_id, geography, complete, deleted_at, regions}). `pseudonym_key`: the
    retention key, so the user's `log:archive` entries go too (without it they are reported under
    `remains`). InputError (nothing done) for an empty reason or user id."""
    if not reason.strip():
        raise InputError("reason", "must say why (a non-empty reason is journaled with every change)")
    if not user_id.strip():
        raise InputError("user_id", "must not be empty")
    clients = connect_all(topology)
    try:
        report = delete_user(topology, clients, user_id, now, pseudonym_key=pseudonym_key)
    finally:
        for client in clients.values():
            client.close()
    regions = region_rows(report)
    record(reason.strip(), {"operation": "user_deletion", "user_sha256": hashlib.sha256(user_id.encode()).hexdigest(),
                            "geography": report.geography, "complete": report.complete, "regions": regions})
    return {"user_id": user_id, "geography": report.geography, "complete": report.complete,
            "deleted_at": report.deleted_at, "regions": regions}
