"""What operators need beside the regions in GET /v1/status (and the dashboard): drains with who
asked and until when, failback progress with its stage and hold, and drills in progress. Pure:
views over the overrides, the journal entries, the controller settings and the drill records.

    drains_view(overrides, entries, now)          [{region, reason, actor, forced, expires_at, expires_in_s}]
    failback_view(failback, settings, now)        [{region, stage, of, percent, since, hold_s, next_stage_in_s}]
    drills_view(records)                          [{id, region, actor, reason, started_at, stage, message}]

The actor of a drain is the newest journal entry with action "drain" for that region (the overrides
document itself names no actor; the journal does, hash-chained).
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping

from failover.journal import Action, JournalEntry
from failover.settings import ControllerSettings

JOURNAL_LOOKBACK = 500
"""Entries read to find who drained a region; drains older than 500 decisions show actor unknown."""


def drains_view(overrides: Mapping[str, Any], entries: Iterable[JournalEntry], *, now: float) -> list[dict[str, Any]]:
    actors: dict[str, str] = {}
    for e in entries:  # oldest first: the newest drain entry per region wins
        region = e.inputs.get("region") if e.action == Action.DRAIN.value else None
        if isinstance(region, str):
            actors[region] = e.actor
    out = []
    for region, d in sorted((overrides.get("drains") or {}).items()):
        expires = float(d.get("expires_at") or 0.0)
        out.append({"region": region, "reason": d.get("reason", ""), "actor": actors.get(region, "unknown"),
                    "forced": bool(d.get("forced")), "expires_at": expires,
                    "expires_in_s": round(max(0.0, expires - now), 1)})
    return out


def failback_view(failback: Mapping[str, Mapping[str, Any]], settings: ControllerSettings, *,
                  now: float) -> list[dict[str, Any]]:
    out = []
    for region, p in sorted(failback.items()):
        stage = int(p["stage"])
        since = float(p["since"])
        hold = settings.hold_for_stage(stage)
        last = stage >= len(settings.failback_stages) - 1
        out.append({"region": region, "stage": stage + 1, "of": len(settings.failback_stages),
                    "percent": settings.failback_stages[min(stage, len(settings.failback_stages) - 1)],
                    "since": since, "hold_s": hold,
                    "next_stage_in_s": None if last else round(max(0.0, since + hold - now), 1)})
    return out


def drills_view(records: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for r in records:
        if r.get("status") != "running":
            continue
        events = r.get("events") or []
        last = events[-1] if events else {"step": "starting", "message": ""}
        out.append({"id": r["id"], "region": r["region"], "actor": r.get("actor", ""), "reason": r.get("reason", ""),
                    "started_at": r.get("started_at"), "stage": last["step"], "message": last["message"]})
    return out


__all__ = ["JOURNAL_LOOKBACK", "drains_view", "drills_view", "failback_view"]
