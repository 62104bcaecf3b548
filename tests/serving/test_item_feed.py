"""The item feed (serving.item_feed) through the real feature updater and a real redis-server:
prices and stock to `if:<item>`, new items to `catalog:new`, bad entries to the dead letters; the
cells' catalog seeding leaves what the feed wrote recently alone."""
from __future__ import annotations

from typing import Callable

import pytest

from regions import redis_keys
from regions.errors import InputError
from serving.feature_store import FeatureStore, ItemFeatures
from serving.feature_updater import CONSUMER, FeatureUpdater, UpdaterSettings
from contracts.item_updates import ItemUpdate, parse_item_update, publish_item_updates
from serving.item_feed import new_item_rows
from replication.redis_io import text
from tests.replication.helpers import Stack, stack_factory  # noqa: F401

NEW = {"category": "shoes", "parent_category": "fashion", "brand": "acme", "price": 30.0, "created_at": 2e9}


@pytest.mark.parametrize(("raw", "field"), [
    ({"price": 1.0}, "item_id"),
    ({"item_id": "a", "price": -1}, "price"),
    ({"item_id": "a", "stock": "many"}, "stock"),
    ({"item_id": "a"}, "item_update"),
    ({"item_id": "a", "content": {"category": "x"}}, "content"),
    ({"item_id": "a", "content": "{not json"}, "content"),
])
def test_bad_updates_are_refused_naming_the_field(raw: dict, field: str) -> None:
    with pytest.raises(InputError) as info:
        parse_item_update(raw)
    assert info.value.field == field


def _text(raw: dict) -> dict[str, str]:
    return {text(k): text(v) for k, v in raw.items()}


def test_the_updater_applies_prices_stock_and_new_items_once(stack_factory: Callable[..., Stack]) -> None:
    stack = stack_factory()
    client = stack.clients["us-east"]
    client.hset(redis_keys.item_features("a"), mapping={"price": "5.0", "stock": "3", "category": "books", "updated_at": "1.0"})
    publish_item_updates(client, [ItemUpdate("a", price=50.0), ItemUpdate("a", stock=0),
                                  ItemUpdate("n1", content=NEW)])
    client.xadd(redis_keys.ITEM_LOG, {"item_id": "b", "price": "cheap"})  # poison
    updater = FeatureUpdater(topology=stack.topology, region="us-east", client=client,
                             settings=UpdaterSettings(block_ms=0), clock=lambda: 1000.0)
    result = updater.step()
    assert result.items is not None and (result.items.applied, result.items.new_items, result.items.poison) == (3, 1, 1)
    a = _text(client.hgetall(redis_keys.item_features("a")))
    assert (a["price"], a["stock"], a["category"], a["updated_at"], a["source"]) == ("50.0", "0", "books", "1000.0", "feed")
    n1 = _text(client.hgetall(redis_keys.item_features("n1")))
    assert (n1["price"], n1["stock"], n1["category"]) == ("30.0", "1", "shoes")
    rows = new_item_rows(client.hgetall(redis_keys.NEW_ITEMS))
    assert rows == [{**NEW, "item_id": "n1"}]
    dead = client.xrange(redis_keys.DEAD_LETTER)
    assert len(dead) == 1 and "price" in _text(dead[0][1])["reason"]
    assert client.get(redis_keys.consumer_checkpoint(CONSUMER, redis_keys.ITEM_LOG)) == client.xrange(redis_keys.ITEM_LOG)[-1][0]
    client.hset(redis_keys.item_features("a"), "price", "7.0")
    assert updater.step().items.read == 0  # checkpointed: nothing applied twice
    assert text(client.hget(redis_keys.item_features("a"), "price")) == "7.0"


def test_catalog_seeding_keeps_fresh_feed_values(stack_factory: Callable[..., Stack]) -> None:
    stack = stack_factory()
    client = stack.clients["us-east"]
    store = FeatureStore(client=client, topology=stack.topology, region="us-east")
    client.hset(redis_keys.item_features("fresh"), mapping={"price": "99.0", "source": "feed", "updated_at": "950.0"})
    client.hset(redis_keys.item_features("old"), mapping={"price": "99.0", "source": "feed", "updated_at": "10.0"})
    seeded = [ItemFeatures(item_id=i, price=1.0, stock=2, updated_at=1000.0) for i in ("fresh", "old", "plain")]
    assert store.seed_item_features(seeded, now=1000.0, keep_feed_s=100.0) == 2
    assert text(client.hget(redis_keys.item_features("fresh"), "price")) == "99.0"
    old = _text(client.hgetall(redis_keys.item_features("old")))
    assert old["price"] == "1.0" and "source" not in old  # the catalog owns it again
    assert text(client.hget(redis_keys.item_features("plain"), "price")) == "1.0"
    assert store.get_item_features(["fresh"])["fresh"].price == 99.0
