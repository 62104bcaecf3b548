"""What one answer means to a user: the load generator's record fields, decided from the answer.

Pure: (kind, HTTP status, decoded body) in, fields out; chaos.load does the sending and timing.

- ok: 2xx only, and a homepage only with at least one item (an empty slate is a failure, also
  counted as `empty`), and an event batch only when every event was acknowledged (`acked_ids`
  holds all of them). Any other status, an unreadable body or an exception is a failed record.
- tier, region: from the answer; for event batches, the region that stored them.
- attempts: the edge's `tried` list, reduced to region, role and result; `retries` counts the
  attempts after the first; `first_ok` says whether the FIRST attempt answered (what users would
  have seen without the edge's retry); `edge_ms` is the edge's own time.
- last_resort: the edge answered from its own popularity list (tier edge-popularity or region
  "edge"); cross_geo: an anonymous ask to another geography answered.
- personalised: a full or cached answer for a known user (the load's users are the bundle's);
  degraded: any other answer that was served (segment, popularity, last resort, cross-geography).
  Both None for requests that are not personal (similar items, events) or failed.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

PERSONAL_TIERS = ("full", "cached")
"""The tiers that use what the stack knows of the user."""
LAST_RESORT_TIER = "edge-popularity"
"""The tier of the edge's own popularity list (failover.edge)."""


def _attempts(tried: Any) -> list[dict[str, Any]]:
    if not isinstance(tried, list):
        return []
    return [{"region": str(a.get("region")), "role": str(a.get("role")), "result": str(a.get("result"))}
            for a in tried if isinstance(a, Mapping)]


def classify_read(kind: str, status: int, body: Any) -> dict[str, Any]:
    """Fields of a homepage or similar-items record from its answer."""
    rec: dict[str, Any] = {"status": status, "tier": None, "region": None, "slate_len": -1, "attempts": [],
                           "retries": 0, "first_ok": None, "edge_ms": None, "last_resort": False,
                           "cross_geo": False, "personalised": None, "degraded": None, "empty": False}
    if not isinstance(body, Mapping):
        rec["ok"] = False
        if 200 <= status < 300:
            rec["error"] = "the answer is not a JSON object"
        return rec
    items = body.get("items")
    rec["tier"] = body.get("tier") if isinstance(body.get("tier"), str) else None
    rec["region"] = body.get("region") if isinstance(body.get("region"), str) else None
    rec["slate_len"] = len(items) if isinstance(items, list) else -1
    attempts = _attempts(body.get("tried"))
    rec["attempts"] = attempts
    rec["retries"] = max(len(attempts) - 1, 0)
    rec["first_ok"] = attempts[0]["result"] == "ok" if attempts else None
    edge_ms = body.get("edge_ms")
    rec["edge_ms"] = float(edge_ms) if isinstance(edge_ms, (int, float)) else None
    outcome = body.get("outcome")  # the edge says which attempt answered; older edges are read from `tried`
    rec["last_resort"] = outcome == "last_resort" or rec["tier"] == LAST_RESORT_TIER or rec["region"] == "edge"
    rec["cross_geo"] = outcome == "cross_geo" or (outcome is None and bool(attempts) and not rec["last_resort"]
                                                  and attempts[-1]["role"] == "cross-geo" and attempts[-1]["result"] == "ok")
    served = 200 <= status < 300 and rec["slate_len"] > 0
    rec["empty"] = kind == "homepage" and 200 <= status < 300 and rec["slate_len"] == 0
    rec["ok"] = served
    if kind == "homepage" and served:
        rec["personalised"] = rec["tier"] in PERSONAL_TIERS and not rec["cross_geo"] and not rec["last_resort"]
        rec["degraded"] = not rec["personalised"]
    return rec


def classify_events(status: int, body: Any, *, sent_ids: Sequence[str]) -> dict[str, Any]:
    """Fields of an event-batch record: which of `sent_ids` were acknowledged, by which region."""
    rec: dict[str, Any] = {"status": status, "tier": None, "region": None, "slate_len": -1, "event_ids": list(sent_ids),
                           "acked_ids": [], "stored_by": {}, "edge_ms": None}
    stored = body.get("stored") if isinstance(body, Mapping) else None
    if stored is None and isinstance(body, Mapping) and isinstance(body.get("region"), str) \
            and body.get("accepted") == len(sent_ids):  # a cell's own answer: every event, in its region
        stored = {body["region"]: list(sent_ids)}
    if 200 <= status < 300 and isinstance(stored, Mapping):
        by_region = {str(region): [str(i) for i in ids] for region, ids in stored.items() if isinstance(ids, list)}
        wanted = set(sent_ids)
        acked = [i for ids in by_region.values() for i in ids if i in wanted]
        rec["stored_by"] = by_region
        rec["acked_ids"] = acked
        rec["region"] = next(iter(by_region), None) if len(by_region) == 1 else None
    if isinstance(body, Mapping) and isinstance(body.get("edge_ms"), (int, float)):
        rec["edge_ms"] = float(body["edge_ms"])
    rec["ok"] = 200 <= status < 300 and set(rec["acked_ids"]) == set(sent_ids)
    return rec


def failed(kind: str, error: str) -> dict[str, Any]:
    """The record of a request that raised (connection refused, timeout, unreadable answer)."""
    return {"status": error.split(":", 1)[0], "ok": False, "error": error[:300], "tier": None, "region": None,
            "slate_len": -1, "attempts": [], "retries": 0, "first_ok": None, "edge_ms": None, "last_resort": False,
            "cross_geo": False, "personalised": None, "degraded": None, "empty": False,
            **({"acked_ids": [], "stored_by": {}} if kind == "events" else {})}


__all__ = ["LAST_RESORT_TIER", "PERSONAL_TIERS", "classify_events", "classify_read", "failed"]
