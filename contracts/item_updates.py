"""The item feed's contract: one catalog change (`ItemUpdate`), its validation and its stream
encoding, and how a catalog publishes changes to a region's `log:items` (regions.redis_keys.ITEM_LOG).
The region's feature updater applies them (serving.item_feed); chaos publishes through the same
function (chaos.actions.reprice_items).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from regions import redis_keys
from regions.errors import InputError

LIVE_FIELDS = ("price", "stock", "rating")
"""What an update may change of an item's live features."""
CONTENT_FIELDS = ("category", "parent_category", "brand", "price", "created_at")
"""What a new item must carry to be placed by content (serving.cold_start.REQUIRED less item_id)."""
ITEM_LOG_MAXLEN = 200_000
"""Entries kept in `log:items` (approximate trim): two full reprices of a 100k-item catalog."""


@dataclass(frozen=True)
class ItemUpdate:
    item_id: str
    price: float | None = None
    stock: int | None = None
    rating: float | None = None
    content: Mapping[str, Any] | None = None
    """The item's row (category, parent_category, brand, price, created_at) when it is new."""

    def to_fields(self) -> dict[str, str]:
        out = {"item_id": self.item_id}
        for name in LIVE_FIELDS:
            value = getattr(self, name)
            if value is not None:
                out[name] = repr(value)
        if self.content is not None:
            out["content"] = json.dumps(dict(self.content), sort_keys=True)
        return out


def _number(raw: Mapping[str, Any], name: str, *, integer: bool = False) -> float | int | None:
    value = raw.get(name)
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InputError(name, f"must be a non-negative number, got {value!r}") from None
    if isinstance(value, bool) or not math.isfinite(number) or number < 0:
        raise InputError(name, f"must be a non-negative number, got {value!r}")
    return int(number) if integer else number


def parse_item_update(raw: Mapping[str, Any]) -> ItemUpdate:
    """An update from JSON or stream fields; InputError naming the field and what is allowed."""
    if not isinstance(raw, Mapping):
        raise InputError("item_update", f"must be an object, got {type(raw).__name__}")
    item_id = raw.get("item_id")
    if not isinstance(item_id, str) or not item_id:
        raise InputError("item_id", "is required (a non-empty string)")
    content = raw.get("content")
    if isinstance(content, str):
        try:
            content = json.loads(content)
        except ValueError as exc:
            raise InputError("content", f"is not JSON: {exc}") from None
    if content is not None:
        if not isinstance(content, Mapping):
            raise InputError("content", "must be an object with " + ", ".join(CONTENT_FIELDS))
        missing = [k for k in CONTENT_FIELDS if k not in content]
        if missing:
            raise InputError("content", f"missing {', '.join(missing)}; a new item needs {', '.join(CONTENT_FIELDS)}")
        for name in ("price", "created_at"):
            _number(content, name)
        content = {**dict(content), "item_id": item_id}
    update = ItemUpdate(item_id=item_id, price=_number(raw, "price"), stock=_number(raw, "stock", integer=True),  # type: ignore[arg-type]
                        rating=_number(raw, "rating"), content=content)
    if update.price is None and update.stock is None and update.rating is None and content is None:
        raise InputError("item_update", f"carries nothing to change; give one of {', '.join(LIVE_FIELDS)} or content")
    return update


def publish_item_updates(client: Any, updates: Sequence[ItemUpdate], *, chunk: int = 1000) -> int:
    """XADD the updates to the region's `log:items` with `client` (a redis-py client: its
    pipeline), in pipelined chunks; returns how many."""
    for start in range(0, len(updates), chunk):
        with client.pipeline(transaction=False) as pipe:
            for update in updates[start:start + chunk]:
                pipe.xadd(redis_keys.ITEM_LOG, update.to_fields(), maxlen=ITEM_LOG_MAXLEN, approximate=True)
            pipe.execute()
    return len(updates)




__all__ = ["CONTENT_FIELDS", "ITEM_LOG_MAXLEN", "ItemUpdate", "LIVE_FIELDS", "parse_item_update", "publish_item_updates"]
