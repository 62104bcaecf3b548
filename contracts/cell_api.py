"""The cell's wire API, in one place: limits, surfaces, and the conversions of the gRPC messages.

    MAX_COUNT, MAX_ID_LEN, MAX_BATCH, MAX_DEADLINE_S, SURFACES    (contracts.limits)
    surface_pb(name) / surface_name(value)                          "homepage" <-> pb.HOMEPAGE
    event_to_pb(event) / event_from_pb(message, ...)                contracts.events.Event <-> pb.Event
    answer_from_pb(response)                                        pb.RecommendResponse -> answer dict

An event crosses the edge -> cell hop as Event -> pb.Event -> Event: the edge validated the
client's JSON (parse_event), the cell validates the typed values again (validate_event), once,
because the cell's gRPC API is a trust boundary of its own. `ts` is required on the wire: a
message without it is refused naming `ts` (the cell never stamps an event with its own clock).
`geo` travels with the event; a message without one gets the user's home geography; an empty
`event_id` gets a fresh one (as over HTTP).
"""
from __future__ import annotations

import uuid
from typing import Any

from contracts.events import MAX_FUTURE_SKEW_S, Event, validate_event
from contracts.limits import MAX_BATCH, MAX_COUNT, MAX_DEADLINE_S, MAX_ID_LEN, SURFACES
from contracts.proto import recommend_pb2 as pb
from regions.errors import InputError
from regions.geo import home_geography_of
from regions.topology import Topology

__all__ = ["MAX_BATCH", "MAX_COUNT", "MAX_DEADLINE_S", "MAX_ID_LEN", "SURFACES", "answer_from_pb",
           "check_count", "event_from_pb", "event_to_pb", "surface_name", "surface_pb"]


def surface_pb(name: str) -> int:
    """The proto's Surface value of "homepage", "similar" or "cart"."""
    if name not in SURFACES:
        raise InputError("surface", f"unknown surface {name!r}; allowed: {', '.join(SURFACES)}")
    return int(pb.Surface.Value(name.upper()))


def surface_name(value: int) -> str:
    return str(pb.Surface.Name(value)).lower()


def check_count(count: int) -> int:
    """`count` when it is 1..MAX_COUNT; InputError naming `count` otherwise."""
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_COUNT:
        raise InputError("count", f"must be between 1 and {MAX_COUNT}, got {count!r}")
    return count


def event_to_pb(event: Event) -> pb.Event:
    fields: dict[str, Any] = {"event_id": event.event_id, "user_id": event.user_id, "item_id": event.item_id,
                              "type": event.type, "ts": event.ts, "session_id": event.session_id,
                              "price": event.price, "geo": event.geo}
    if event.seq >= 0:
        fields["seq"] = event.seq
    return pb.Event(**fields)


def event_from_pb(message: pb.Event, *, now: float, topology: Topology,
                  max_future_s: float = MAX_FUTURE_SKEW_S) -> Event:
    """The Event of a gRPC message, validated once; InputError naming the field otherwise."""
    if not message.HasField("ts"):
        raise InputError("ts", "is required (epoch seconds of the interaction); the cell does not stamp events")
    if not message.user_id:
        raise InputError("user_id", "is required (a non-empty string)")
    geo = message.geo or home_geography_of(message.user_id, topology)
    event = Event(event_id=message.event_id or uuid.uuid4().hex, user_id=message.user_id, item_id=message.item_id, type=message.type,
                  ts=message.ts, geo=geo, session_id=message.session_id,
                  seq=message.seq if message.HasField("seq") else -1, price=message.price)
    return validate_event(event, now=now, max_future_s=max_future_s)


def answer_from_pb(resp: pb.RecommendResponse) -> dict[str, Any]:
    """The cell answer as the HTTP API's JSON dict (docs/interfaces.md, "Cell answer")."""
    return {
        "items": [{"item_id": i.item_id, "score": i.score} for i in resp.items], "tier": resp.tier,
        "region": resp.region, "bundle_version": resp.bundle_version,
        "skipped": [{"tier": s.tier, "reason": s.reason} for s in resp.skipped], "stale": resp.stale,
        "latency_ms": resp.latency_ms, "experiment": resp.experiment, "arm": resp.arm,
    }
