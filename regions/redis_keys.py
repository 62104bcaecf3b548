"""The Redis key layout of a region's Redis: one place, so that writers, readers, replication
and deletion agree.

Personal keys (features, cached results, log entries with a user id) live only in Redis
instances of regions in the user's home geography (see regions.geo).
"""
from __future__ import annotations

EVENT_LOG = "log:events"
"""Events acknowledged in this region (stream). Entry id = Redis stream id; fields: see contracts.events."""

DEAD_LETTER = "log:dead"
"""Events that could not be processed (poison), with the reason (stream)."""

TOMBSTONES = "users:deleted"
"""Hash user_id -> deletion time: deleted users, honoured by replication and the feature updater."""

ITEM_LOG = "log:items"
"""Catalog changes for this region (stream): price, stock, rating, and new items' content
(serving.item_feed). No user identity: the feature updater applies it to `if:<item>`."""

NEW_ITEMS = "catalog:new"
"""Hash item_id -> JSON row of an item created after training (serving.item_feed), which the
cells add to their catalog and ANN index by content (serving.cold_start). No user identity."""

TIME_CONSTANTS = "model:time_constants"
"""JSON serving.time_constants.TimeConstants of the bundle the region's cell serves (written by the
cell on every bundle swap): the feature updater decays user interest with the same half-life."""

ITEM_POPULARITY = "agg:item_popularity"
"""Sorted set item_id -> decayed interaction count. No user identity: may be replicated anywhere."""


def replica_log(source_region: str) -> str:
    """Copy of `source_region`'s EVENT_LOG held in a peer region (stream; same entry ids as the source)."""
    return f"log:replica:{source_region}"


def user_features(user_id: str) -> str:
    """Hash of a user's session state (see serving.user_state)."""
    return f"uf:{user_id}"


def item_features(item_id: str) -> str:
    """Hash of an item's live features: price, stock, popularity, rating, updated_at."""
    return f"if:{item_id}"


def seen_items(user_id: str) -> str:
    """Sorted set "<event type>:<item_id>" -> ts of the latest such event: the user's compact seen set
    (serving.seen_items), trimmed to the newest SEEN_ITEMS_CAP members. Personal data."""
    return f"seen:{user_id}"


SEEN_ITEMS_CAP = 2000
"""Members kept per user in seen_items(user): months of purchases, bounded memory."""


def cached_result(user_id: str) -> str:
    """The user's last full-ranking slate (JSON string with a TTL)."""
    return f"cache:{user_id}"


def event_seen(event_id: str) -> str:
    """The stream id an event id was first stored under in this region's EVENT_LOG (string with a
    TTL of replication.interaction_log.DEDUPE_WINDOW_S): a retried event is not stored twice."""
    return f"seen:event:{event_id}"


def event_applied(consumer: str, event_id: str) -> str:
    """Set (with a TTL) once `consumer` (the feature updater) has applied the event: an event that
    reaches it twice (own log and a peer's replica stream, after a client retry) counts once."""
    return f"applied:{consumer}:{event_id}"


def consumer_checkpoint(consumer: str, stream: str) -> str:
    """Last stream id a consumer (e.g. the feature updater) has processed of `stream`."""
    return f"ckpt:{consumer}:{stream}"
