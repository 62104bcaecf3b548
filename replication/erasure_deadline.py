"""The 30-day erasure deadline: a deleted user must be gone from everything within 30 days.

Redis data (features, cached slates, log entries, archive entries) goes at once
(replication.deletion). What cannot go at once is the user's embedding in the geography's serving
bundle: it leaves when a bundle trained with the tombstones excluded becomes current. A bundle
says up to when it honoured tombstones in its manifest metrics (`tombstones_read_at`, written by
`regionctl train`, which reads every region of the geography; 0 when some region could not be
read). A deletion is *pending* while the current bundle of the user's geography read its
tombstones before the deletion; it is *overdue* once pending past `deleted_at + 30 days`.

Exported by the retention worker (regionctl/worker_main.py retention) per geography:
    shopnow_erasure_pending_users{geography}          deletions still waiting for a bundle
    shopnow_erasure_overdue_users{geography}          pending deletions past their deadline (alert when > 0)
    shopnow_erasure_next_due_timestamp_seconds{geography}  earliest deadline among pending ones (0: none)
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Mapping

from replication.tombstones import deletion_time

ERASURE_DEADLINE_DAYS = 30.0
"""Policy (requirements): a deletion is complete everywhere within 30 days."""
TOMBSTONES_READ_AT = "tombstones_read_at"
"""Manifest metrics key: the time up to which the bundle's training excluded tombstoned users."""


def due_by(deleted_at: float, *, days: float = ERASURE_DEADLINE_DAYS) -> float:
    return deleted_at + days * 86400.0


def when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(ts))


@dataclass(frozen=True)
class ErasureStatus:
    geography: str
    pending: int
    overdue: int
    next_due_by: float | None


def _float(value: Any) -> float:
    """An unreadable deletion time counts as the oldest possible: pending and overdue."""
    when = deletion_time(value)
    return 0.0 if when is None else when


def erasure_status(geography: str, tombstones: Mapping[Any, Any], *, bundle_metrics: Mapping[str, Any] | None,
                   now: float) -> ErasureStatus:
    """Pure. `tombstones`: users:deleted of the geography (user -> deletion time); `bundle_metrics`:
    the current bundle's manifest metrics (None: no bundle is current, so no embedding is served)."""
    if bundle_metrics is None:
        return ErasureStatus(geography=geography, pending=0, overdue=0, next_due_by=None)
    honoured_until = _float(bundle_metrics.get(TOMBSTONES_READ_AT, 0.0))
    deadlines = [due_by(t) for t in (_float(v) for v in tombstones.values()) if t >= honoured_until]
    return ErasureStatus(geography=geography, pending=len(deadlines), overdue=sum(1 for d in deadlines if d <= now),
                         next_due_by=min(deadlines) if deadlines else None)


def bundle_remains(geography: str, *, version: str | None, bundle_metrics: Mapping[str, Any] | None,
                   deleted_at: float) -> str | None:
    """What `regionctl users delete` reports for the bundle: None when the current bundle already
    excludes the user (or no bundle is current)."""
    if version is None or bundle_metrics is None:
        return None
    if _float(bundle_metrics.get(TOMBSTONES_READ_AT, 0.0)) > deleted_at:
        return None
    return (f"bundle {version} of geography {geography} was trained before this deletion and may hold the user's "
            f"embedding (the cells no longer personalise the user): excluded from the next bundle, due by "
            f"{when(due_by(deleted_at))}")


__all__ = ["ERASURE_DEADLINE_DAYS", "ErasureStatus", "TOMBSTONES_READ_AT", "bundle_remains", "due_by",
           "erasure_status", "when"]
