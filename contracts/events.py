"""Interaction events: the one definition of their shape, validation and stream encoding.

Weights for implicit feedback follow the product requirements: view 1, cart 3, purchase 5;
impressions carry no positive signal (weight 0) but feed popularity denominators.
"""
from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from typing import Any, Mapping

from contracts.limits import MAX_BATCH, MAX_ID_LEN
from regions.errors import InputError

__all__ = ["EVENT_TYPES", "EVENT_WEIGHTS", "MAX_BATCH", "MAX_FUTURE_SKEW_S", "MAX_SEQ", "Event", "parse_event", "validate_event"]

EVENT_WEIGHTS: Mapping[str, float] = {"impression": 0.0, "view": 1.0, "cart": 3.0, "purchase": 5.0}
EVENT_TYPES = tuple(EVENT_WEIGHTS)
MAX_FUTURE_SKEW_S = 300.0
"""Clock skew tolerated between clients and the cell before an event is refused as 'in the future'."""
MAX_SEQ = 2**63 - 1
"""Largest `seq` (the proto's int64); -1 means not set."""


@dataclass(frozen=True)
class Event:
    event_id: str
    user_id: str
    item_id: str
    type: str
    ts: float
    """Client time of the interaction, epoch seconds."""
    geo: str
    """Home geography of the user."""
    session_id: str = ""
    seq: int = -1
    """Sequence number from the load generator (-1 when not set), used to audit losses."""
    price: float = 0.0
    """Price paid, for purchases (feeds the user's median purchase price)."""

    @property
    def weight(self) -> float:
        return EVENT_WEIGHTS[self.type]

    def to_fields(self) -> dict[str, str]:
        """Flat string fields for XADD."""
        return {
            "event_id": self.event_id, "user_id": self.user_id, "item_id": self.item_id,
            "type": self.type, "ts": repr(self.ts), "geo": self.geo, "session_id": self.session_id,
            "seq": str(self.seq), "price": repr(self.price),
        }

    @classmethod
    def from_fields(cls, fields: Mapping[str, Any]) -> "Event":
        """Decode a stream entry (bytes or str values). Raises InputError on a malformed entry."""
        decoded = {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v) for k, v in fields.items()}
        try:
            return cls(
                event_id=decoded["event_id"], user_id=decoded["user_id"], item_id=decoded["item_id"],
                type=decoded["type"], ts=float(decoded["ts"]), geo=decoded["geo"],
                session_id=decoded.get("session_id", ""), seq=int(decoded.get("seq", -1)),
                price=float(decoded.get("price", 0.0)),
            )
        except (KeyError, ValueError) as exc:
            raise InputError("event", f"malformed stream entry {decoded!r}: {exc}") from exc


def _text(raw: Mapping[str, Any], name: str, *, required: bool = True, default: str = "") -> str:
    value = raw.get(name)
    if value is None or value == "":
        if required:
            raise InputError(name, "is required (a non-empty string)")
        return default
    if not isinstance(value, (str, int)) or isinstance(value, bool):
        raise InputError(name, f"must be a string, got {type(value).__name__}")
    return str(value)


def parse_event(raw: Mapping[str, Any], *, now: float, geo: str, max_future_s: float = MAX_FUTURE_SKEW_S) -> Event:
    """Validate one client event (decoded JSON). `geo` is the user's home geography (decided by the
    caller); a missing `ts` is the receiver's `now` (the public HTTP API's documented default).

    Checks the JSON types here and the values with `validate_event`; raises InputError naming the
    field and what is allowed.
    """
    if not isinstance(raw, Mapping):
        raise InputError("event", f"must be a JSON object, got {type(raw).__name__}")
    etype = _text(raw, "type")
    ts_raw = raw.get("ts", now)
    if isinstance(ts_raw, bool) or not isinstance(ts_raw, (int, float)) or not math.isfinite(ts_raw):
        raise InputError("ts", f"must be a number of epoch seconds, got {ts_raw!r}")
    seq_raw = raw.get("seq", -1)
    if isinstance(seq_raw, bool) or not isinstance(seq_raw, int):
        raise InputError("seq", f"must be an integer, got {seq_raw!r}")
    price_raw = raw.get("price", 0.0)
    if isinstance(price_raw, bool) or not isinstance(price_raw, (int, float)):
        raise InputError("price", f"must be a non-negative number, got {price_raw!r}")
    event = Event(
        event_id=_text(raw, "event_id", required=False) or uuid.uuid4().hex,
        user_id=_text(raw, "user_id"),
        item_id=_text(raw, "item_id"),
        type=etype, ts=float(ts_raw), geo=geo,
        session_id=_text(raw, "session_id", required=False),
        seq=seq_raw, price=float(price_raw),
    )
    return validate_event(event, now=now, max_future_s=max_future_s)


def validate_event(event: Event, *, now: float, max_future_s: float = MAX_FUTURE_SKEW_S) -> Event:
    """The value checks of `parse_event` for an Event built from typed fields (the gRPC message):
    InputError naming the field, else the event itself."""
    if event.type not in EVENT_WEIGHTS:
        raise InputError("type", f"unknown event type {event.type!r}; allowed: {', '.join(EVENT_TYPES)}")
    if not math.isfinite(event.ts) or event.ts <= 0:
        raise InputError("ts", f"must be positive epoch seconds, got {event.ts!r}")
    if event.ts > now + max_future_s:
        raise InputError("ts", f"is {event.ts - now:.0f}s in the future; at most {max_future_s:.0f}s of clock skew is allowed")
    if not math.isfinite(event.price) or event.price < 0:
        raise InputError("price", f"must be a non-negative number, got {event.price!r}")
    if not -1 <= event.seq <= MAX_SEQ:
        raise InputError("seq", f"must be -1 (not set) or 0..{MAX_SEQ}, got {event.seq}")
    for name in ("event_id", "user_id", "item_id", "session_id"):
        value = getattr(event, name)
        if not value and name in ("event_id", "user_id", "item_id"):
            raise InputError(name, "is required (a non-empty string)")
        if len(value) > MAX_ID_LEN:
            raise InputError(name, f"must be at most {MAX_ID_LEN} characters")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise InputError(name, "must be Unicode text (a lone surrogate such as \\ud800 cannot be stored)") from None
    return event
