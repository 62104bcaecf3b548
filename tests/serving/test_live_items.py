"""serving.live_items and serving.slate_writer: what the cell keeps off the request path."""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np
import pytest

from serving.feature_store import CachedSlate, ItemFeatures
from serving.live_items import LiveItemCache
from serving.reranking import ItemMeta, rerank
from serving.slate_writer import SlateWriter
from fallback_tiers.tiers import ScoredItem

IDS = ("a", "b", "c", "d")


def cache(**kw: float) -> LiveItemCache:
    return LiveItemCache(IDS, {i: n for n, i in enumerate(IDS)}, **kw)


def feats(item_id: str, stock: int, price: float = 10.0) -> ItemFeatures:
    return ItemFeatures(item_id=item_id, price=price, stock=stock, popularity=3.0, rating=4.5, updated_at=1.0)


def test_never_read_rows_are_unusable_and_read_rows_are_served_from_arrays() -> None:
    c = cache(ttl_s=5.0, max_age_s=30.0)
    rows = c.rows(["b", "zz", "d"])
    assert rows.tolist() == [1, 3]  # unknown ids are dropped
    assert c.unusable(rows, now=100.0).tolist() == [1, 3]
    c.store(rows, {"b": feats("b", 0, price=7.0)}, now=100.0)  # d has no hash in Redis
    assert c.unusable(rows, now=100.0).tolist() == []
    live = c.live(np.array([1, 3]))
    assert live.price[0] == 7.0 and live.stock[0] == 0 and math.isnan(live.price[1])  # NaN: use the bundle's value
    view = c.stock_view()
    assert view.get("b") == 0 and view.get("d", "catalog") == "catalog" and "b" in view and "d" not in view
    assert c.unusable(rows, now=131.0).tolist() == [1, 3]  # older than max_age_s: read inline again


def test_rows_older_than_the_ttl_are_marked_for_the_background_and_refreshed() -> None:
    c = cache(ttl_s=5.0, max_age_s=30.0)
    assert c.refresh(lambda ids: {i: feats(i, 1) for i in ids}, now=0.0) == 4  # a new cache reads everything
    assert not c.wanted.any()
    c.mark(np.array([0, 2]), now=3.0)
    assert not c.wanted.any()  # younger than the TTL
    c.mark(np.array([0, 2]), now=6.0)
    assert c.wanted.tolist() == [True, False, True, False]
    asked: list[Sequence[str]] = []

    def fetch(ids: list[str]) -> Mapping[str, ItemFeatures]:
        asked.append(ids)
        return {"a": feats("a", 0)}  # a went out of stock; c has no hash any more

    assert c.refresh(fetch, now=6.5) == 2 and asked == [["a", "c"]]
    view = c.stock_view()
    assert view.get("a") == 0 and view.get("c") is None and view.get("b") == 1
    catalog = {i: ItemMeta(category=i, brand=i, stock=True) for i in IDS}
    slate = rerank([ScoredItem(i, 1.0) for i in IDS], count=4, catalog=catalog, stock=view)
    assert [s.item_id for s in slate] == ["b", "c", "d"]  # a: live stock 0; c: catalog stock, as before


def test_a_failed_refresh_is_flagged_and_keeps_the_old_values() -> None:
    c = cache()
    c.refresh(lambda ids: {i: feats(i, 2) for i in ids}, now=0.0)
    c.wanted[:] = True

    def down(ids: list[str]) -> Mapping[str, ItemFeatures]:
        raise ConnectionError("redis down")

    with pytest.raises(ConnectionError):
        c.refresh(down, now=10.0)
    assert c.refresh_failed and c.stock_view().get("a") == 2 and c.wanted.all()
    c.refresh(lambda ids: {i: feats(i, 3) for i in ids}, now=11.0)
    assert not c.refresh_failed and c.stock_view().get("a") == 3


def slate(n: int) -> CachedSlate:
    return CachedSlate(item_ids=(f"i{n}",), scores=(float(n),), bundle_version="v", tier="full", created_at=float(n))


def test_slates_are_written_in_one_batch_latest_per_user_and_dropped_when_full() -> None:
    batches: list[list[tuple[str, CachedSlate]]] = []
    writer = SlateWriter(lambda b: batches.append(list(b)), max_pending=3)
    assert writer.flush() == 0 and batches == []
    assert writer.offer("u1", slate(1)) and writer.offer("u2", slate(2)) and writer.offer("u1", slate(3))
    assert not writer.offer("u3", slate(4)) and writer.dropped == 1  # the queue is bounded
    assert writer.flush() == 2
    assert batches == [[("u1", slate(3)), ("u2", slate(2))]]  # one batch; u1's latest slate
    assert writer.pending() == 0


def test_a_failed_batch_is_dropped_not_retried() -> None:
    def fail(_: Sequence[tuple[str, CachedSlate]]) -> None:
        raise ConnectionError("redis down")

    writer = SlateWriter(fail)
    writer.offer("u1", slate(1))
    assert writer.flush() == 0 and writer.dropped == 1 and writer.pending() == 0


# -- in the recommender, over a real redis-server and the tiny bundle ---------------------------------
def test_the_recommender_reads_live_stock_once_then_in_the_background(redis_server, tiny_bundle) -> None:  # type: ignore[no-untyped-def]
    import json
    import time

    from regions.processes import wait_until
    from regions.topology import load_topology
    from serving.bundle import LoadedBundle
    from serving.feature_store import FeatureStore, item_features_of
    from serving.recommender import Recommender, Serving
    from tests.stack_helpers import seeding_store

    topology = load_topology()
    _, port = redis_server
    store = FeatureStore.from_url(f"redis://127.0.0.1:{port}/0", region="us-east", topology=topology)
    seeder = seeding_store(port, region="us-east", topology=topology)
    bundle = LoadedBundle.load(tiny_bundle)
    seeder.put_item_features(item_features_of(bundle.items, updated_at=1.0))
    serving = Serving.of(bundle)
    rec = Recommender(region="us-east", topology=topology, store=store, serving=lambda: serving)
    try:
        wait_until(lambda: not serving.live.wanted.any(), timeout=10, what="the first background read of the catalog")
        user = next(u["user_id"] for u in json.loads((tiny_bundle / "users.json").read_text()) if u["user_id"].startswith("us-"))
        first = rec.homepage(user_id=user, count=8)
        assert first.tier == "full" and len(first.items) == 8
        top = first.items[0].item_id
        row = bundle.items.row_of[top]
        assert serving.live.stock_view().get(top) == int(bundle.items.stock[row])
        seeder.put_item_features([ItemFeatures(item_id=top, price=float(bundle.items.price[row]), stock=0, updated_at=2.0)])
        assert rec.homepage(user_id=user, count=8).items[0].item_id == top  # within the TTL: the cached value
        serving.live.fetched_at[row] -= 10.0  # older than the TTL: the next request marks it ...
        rec.homepage(user_id=user, count=8)
        assert serving.live.wanted[row]
        assert rec.refresh_items(now=time.monotonic()) >= 1  # ... and the background reads it
        assert top not in {i.item_id for i in rec.homepage(user_id=user, count=8).items}  # out of stock: never shown
    finally:
        rec.close()
        store.close()
        seeder.close()
