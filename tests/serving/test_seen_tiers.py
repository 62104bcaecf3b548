"""The seen-items policy on every tier and surface: a recommender over a real redis-server and the
tiny bundle. An item the user bought (a `purchase:<item>` member of seen:<user>, as the feature
updater writes it) is not shown by the cached, segment or popularity tier, nor on similar items or
the cart surface; with the seen set removed the same request shows it again (the control)."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Iterator

import pytest

from fallback_tiers.tiers import Tier
from regions import redis_keys
from regions.processes import wait_until
from regions.topology import load_topology
from serving.bundle import LoadedBundle
from serving.feature_store import FeatureStore, item_features_of
from serving.recommender import Recommender, Serving
from tests.stack_helpers import seeding_store


@pytest.fixture
def rec(redis_server, tiny_bundle: Path) -> Iterator[tuple[Recommender, FeatureStore, str]]:  # type: ignore[no-untyped-def]
    topology = load_topology()
    _, port = redis_server
    store = FeatureStore.from_url(f"redis://127.0.0.1:{port}/0", region="us-east", topology=topology)
    bundle = LoadedBundle.load(tiny_bundle)
    seeding_store(port, region="us-east", topology=topology).put_item_features(
        item_features_of(bundle.items, updated_at=time.time()))
    serving = Serving.of(bundle)
    recommender = Recommender(region="us-east", topology=topology, store=store, serving=lambda: serving)
    user = next(u["user_id"] for u in json.loads((tiny_bundle / "users.json").read_text()) if u["user_id"].startswith("us-"))
    try:
        yield recommender, store, user
    finally:
        recommender.close()
        store.close()


def _buy(store: FeatureStore, user: str, item: str) -> None:
    store._redis.zadd(redis_keys.seen_items(user), {f"purchase:{item}": time.time() - 60})


def _forget(store: FeatureStore, user: str) -> None:
    store._redis.delete(redis_keys.seen_items(user))


@pytest.mark.parametrize("tier", [Tier.CACHED, Tier.SEGMENT, Tier.POPULARITY])
def test_degraded_tiers_do_not_show_what_was_bought(rec: tuple[Recommender, FeatureStore, str], tier: Tier) -> None:
    recommender, store, user = rec
    if tier is Tier.CACHED:
        assert recommender.homepage(user_id=user, count=8).tier == "full"
        wait_until(lambda: store.get_cached_slate(user) is not None, timeout=5, what="the slate cached")
    before = recommender.homepage(user_id=user, count=8, max_tier=tier)
    assert before.tier == tier.value and len(before.items) == 8
    bought = before.items[0].item_id
    _buy(store, user, bought)
    after = recommender.homepage(user_id=user, count=8, max_tier=tier)
    # A cached slate holds exactly the 8 items it was asked for: one of them hidden leaves it short,
    # and the ladder serves the next tier (segment) instead, with the same exclusion.
    assert after.tier == (Tier.SEGMENT.value if tier is Tier.CACHED else tier.value) and len(after.items) == 8
    assert bought not in {i.item_id for i in after.items}
    _forget(store, user)
    assert bought in {i.item_id for i in recommender.homepage(user_id=user, count=8, max_tier=tier).items}


def test_similar_and_cart_do_not_show_what_the_user_bought(rec: tuple[Recommender, FeatureStore, str]) -> None:
    recommender, store, user = rec
    bundle = recommender.serving().bundle
    assert bundle is not None
    anchor = bundle.item_ids(bundle.popularity)[0]
    similar = recommender.similar(product_id=anchor, count=8, user_id=user)
    bought = similar.items[0].item_id
    cart_before = recommender.cart(cart_items=[anchor], count=4, user_id=user)
    cart_bought = cart_before.items[0].item_id
    _buy(store, user, bought)
    _buy(store, user, cart_bought)
    assert bought not in {i.item_id for i in recommender.similar(product_id=anchor, count=8, user_id=user).items}
    assert cart_bought not in {i.item_id for i in recommender.cart(cart_items=[anchor], count=4, user_id=user).items}
    # No user named: nothing of anyone's is excluded.
    assert bought in {i.item_id for i in recommender.similar(product_id=anchor, count=8).items}
    # A user of another geography is never read here (residency): answered as anonymous.
    assert bought in {i.item_id for i in recommender.similar(product_id=anchor, count=8, user_id="eu-" + user[3:]).items}
