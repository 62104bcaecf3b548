"""The item feed of one region: catalog changes in, live item features (and new items) out.

The catalog side publishes item updates (contracts.item_updates: `ItemUpdate`, `publish_item_updates`)
to the region's stream `log:items` (regions.redis_keys.ITEM_LOG, no personal data); the region's feature
updater (serving.feature_updater) consumes it beside the event streams with `ItemFeedConsumer`:

- every update writes the fields it carries (price, stock, rating) to the item's live-feature hash
  `if:<item>`, with `updated_at` (when the feed applied it) and `source` = "feed", which the cells
  read within seconds (serving.live_items);
- an update that carries an item's content (category, parent_category, brand, price, created_at)
  also writes the item's row to the hash `catalog:new` (redis_keys.NEW_ITEMS); a cell adds the rows
  its bundle does not hold to its catalog and ANN index, placed by content (serving.cold_start), so
  an item created after training can be recommended as soon as the cell's next catalog sync (1 s).

The writes of a batch and the consumer's checkpoint `ckpt:feature-updater:log:items` are one
MULTI/EXEC transaction; re-applying a batch (a crash before the checkpoint) writes the same values,
so the feed is applied effectively once. Bad entries go to the dead letters with the reason.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from contracts.item_updates import LIVE_FIELDS, ItemUpdate, parse_item_update
from regions import redis_keys
from regions.errors import InputError
from replication.interaction_log import dead_letter_fields
from replication.redis_io import Redis, text

SOURCE_FEED = "feed"
"""`source` field of a live-feature hash the feed wrote: the cells' catalog seeding leaves it alone
while it is fresh (serving.feature_store.FeatureStore.seed_item_features)."""


def live_hash(update: ItemUpdate, *, now: float) -> dict[str, str]:
    """The fields of `if:<item>` an update writes. Pure."""
    out = {name: repr(getattr(update, name)) for name in LIVE_FIELDS if getattr(update, name) is not None}
    if update.content is not None:
        out.setdefault("price", repr(float(update.content["price"])))
        out.setdefault("stock", str(int(update.content.get("stock", 1))))
        out["category"] = str(update.content["category"])
    out.update(updated_at=repr(now), source=SOURCE_FEED)
    return out


def new_item_rows(raw: Mapping[Any, Any]) -> list[dict[str, Any]]:
    """The rows of the `catalog:new` hash (HGETALL), by item id; unreadable rows are skipped."""
    rows = []
    for key, value in sorted(raw.items(), key=lambda kv: text(kv[0])):
        try:
            row = json.loads(text(value))
        except ValueError:
            continue
        if isinstance(row, dict) and row.get("item_id") == text(key):
            rows.append(row)
    return rows


@dataclass
class FeedResult:
    read: int = 0
    applied: int = 0
    new_items: int = 0
    poison: int = 0


class ItemFeedConsumer:
    """Applies `log:items` to the region's live item features, one bounded batch per `step()`."""

    def __init__(self, client: Redis, *, consumer: str, region: str, batch_size: int = 500,
                 clock: Callable[[], float] = time.time) -> None:
        self.client, self.consumer, self.region = client, consumer, region
        self.batch_size, self._clock = batch_size, clock
        self.checkpoint_key = redis_keys.consumer_checkpoint(consumer, redis_keys.ITEM_LOG)

    def step(self) -> FeedResult:
        """Raises redis errors as they come (the feature updater turns them into TemporaryError)."""
        position = text(self.client.get(self.checkpoint_key) or "0-0")
        entries = self.client.xrange(redis_keys.ITEM_LOG, min=f"({position}", count=self.batch_size)
        result = FeedResult(read=len(entries))
        if not entries:
            return result
        now = self._clock()
        with self.client.pipeline(transaction=True) as pipe:
            for entry_id, raw in entries:
                fields = {text(k): text(v) for k, v in raw.items()}
                try:
                    update = parse_item_update(fields)
                except InputError as exc:
                    dead = dead_letter_fields(stream=redis_keys.ITEM_LOG, entry_id=text(entry_id), fields=fields,
                                              reason=str(exc), consumer=f"{self.consumer}:{self.region}")
                    pipe.xadd(redis_keys.DEAD_LETTER, dead)
                    result.poison += 1
                    continue
                pipe.hset(redis_keys.item_features(update.item_id), mapping=live_hash(update, now=now))
                if update.content is not None:
                    pipe.hset(redis_keys.NEW_ITEMS, update.item_id, json.dumps(dict(update.content), sort_keys=True))
                    result.new_items += 1
                result.applied += 1
            pipe.set(self.checkpoint_key, text(entries[-1][0]))
            pipe.execute()
        return result


__all__ = ["ItemFeedConsumer", "SOURCE_FEED", "live_hash", "new_item_rows"]
