"""End to end through a real cell, its real redis-server and the real feature updater:
- a purchase event -> the updater writes the user's seen set -> the next homepage does not show
  the bought item (the bundle's seen policy, the same file the offline evaluation applied);
- a new item published to the item feed after training -> the updater writes it to catalog:new ->
  the cell adds it by content and answers with it (time printed);
- prices published 10x through the item feed -> the cell's drift check says so;
- freshness: a stock or price change written to the item's live features -> how long until the
  homepage honours it (printed; the requirement is 10 minutes)."""
from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Iterator

import httpx
import pytest
import redis

from regions import redis_keys
from serving import live_items
from contracts.feature_drift import PRICE_FEATURES
from serving.feature_updater import FeatureUpdater
from contracts.item_updates import ItemUpdate, publish_item_updates
from serving.recommender import ITEM_REFRESH_S
from tests.serving.test_cell_process import Cell, running_cell

pytestmark = pytest.mark.slow

DRIFT_WINDOW = {"REGIONCTL_DRIFT_EVERY": "1", "REGIONCTL_DRIFT_CAPACITY": "400"}
"""Every scored request sampled (20 rows each), the newest 400 rows kept: a 20-request window."""


@pytest.fixture(scope="module")
def cell(tmp_path_factory: pytest.TempPathFactory, tiny_geo_bundles: dict[str, Path]) -> Iterator[Cell]:
    with running_cell(tmp_path_factory.mktemp("seen-cell"), tiny_geo_bundles, env=DRIFT_WINDOW) as c:
        yield c


def _user(cell: Cell) -> str:
    users = json.loads((cell.bundle_dir / "users.json").read_text())
    return next(u["user_id"] for u in users if u["user_id"].startswith("us-"))


def _post(cell: Cell, events: list[dict]) -> None:
    resp = httpx.post(cell.base + "/v1/events", json={"events": events}, timeout=5)
    assert resp.status_code == 200, resp.text


def _drain(cell: Cell, client: redis.Redis) -> None:
    updater = FeatureUpdater(topology=cell.topo, region="us-east", client=client)
    for _ in range(50):
        result = updater.step()
        if result.read == 0 and not (result.items and result.items.read):
            return
    raise AssertionError("the feature updater did not drain the log")


def test_a_bought_item_is_not_shown_again_on_the_homepage(cell: Cell) -> None:
    client = redis.Redis(port=cell.region.redis_port)
    user = _user(cell)
    state_key = redis_keys.user_features(user)
    state_before = client.hgetall(state_key)
    before = [i["item_id"] for i in cell.homepage(user, count=8)["items"]]
    bought = before[0]
    _post(cell, [{"user_id": user, "item_id": bought, "type": "purchase", "price": 9.5}])
    _drain(cell, client)
    assert client.zscore(redis_keys.seen_items(user), f"purchase:{bought}") is not None
    after = cell.homepage(user, count=8)
    assert after["tier"] == "full"
    assert bought not in [i["item_id"] for i in after["items"]]
    assert len(after["items"]) == 8
    # The control: with the session state put back as it was before the purchase, the seen set alone
    # still hides the item, and without it the item is back: the policy hid it, not the changed state
    # (which the ranker may also read against a just-bought item).
    client.delete(state_key)
    if state_before:
        client.hset(state_key, mapping=state_before)
    assert bought not in [i["item_id"] for i in cell.homepage(user, count=8)["items"]]
    client.delete(redis_keys.seen_items(user))
    control = cell.homepage(user, count=8)
    assert control["tier"] == "full" and bought in [i["item_id"] for i in control["items"]], control


def test_stock_and_price_changes_reach_the_next_homepages(cell: Cell) -> None:
    """Both written at once; each one's delay is timed on its own."""
    client = redis.Redis(port=cell.region.redis_port, decode_responses=True)
    user = _user(cell)
    first = cell.homepage(user, count=8)["items"]
    gone, pricey, score = first[0]["item_id"], first[1]["item_id"], first[1]["score"]
    price = float(client.hget(redis_keys.item_features(pricey), "price") or 1.0)
    began = time.monotonic()
    with client.pipeline(transaction=True) as pipe:
        pipe.hset(redis_keys.item_features(gone), mapping={"stock": "0", "updated_at": repr(time.time())})
        pipe.hset(redis_keys.item_features(pricey), mapping={"price": repr(price * 10), "updated_at": repr(time.time())})
        pipe.execute()
    honoured: dict[str, float] = {}
    while len(honoured) < 2 and time.monotonic() - began < 30:
        items = cell.homepage(user, count=8)["items"]
        now = time.monotonic() - began
        if gone not in [i["item_id"] for i in items]:
            honoured.setdefault("stock", now)
        if {i["item_id"]: i["score"] for i in items}.get(pricey) != score:
            honoured.setdefault("price", now)
        time.sleep(0.05)
    assert set(honoured) == {"stock", "price"}, f"not honoured within 30 s: {honoured}"
    print(f"\nfreshness (item live features written -> homepage honours): stock {honoured['stock']:.2f} s, "
          f"price {honoured['price']:.2f} s (the cell's live-feature cache holds 5 s; requirement 10 min; shared machine)")


SIMILAR_COUNT = 8


def test_a_new_item_published_after_training_is_recommended_within_seconds(cell: Cell) -> None:
    """A new item of the catalog's thinnest category (same parent, brand and price as that
    category's most popular item, the anchor) published to the item feed: placed by content, it is
    in the anchor's similar-items answer after the cell's next catalog sync; before, the cell did
    not know it (404). (In a crowded category the diversity caps, 3 per category and 2 per brand,
    keep a new item out of short lists behind the established ones, as they would any item.)"""
    client = redis.Redis(port=cell.region.redis_port, decode_responses=True)
    items = json.loads((cell.bundle_dir / "items.json").read_text())
    sizes = Counter(i["category"] for i in items)
    thinnest = min(sizes, key=lambda c: (sizes[c], c))
    popular = json.loads((cell.bundle_dir / "popularity.json").read_text())
    members = {i["item_id"]: i for i in items if i["category"] == thinnest}
    anchor = next((p for p in popular if p in members), sorted(members)[0])
    row = members[anchor]
    new_id = "sku-after-training-1"
    assert cell.get("/v1/recommendations/similar", product_id=new_id).status_code == 404
    content = {k: row[k] for k in ("category", "parent_category", "brand", "price")} | {"created_at": time.time()}
    began = time.monotonic()
    publish_item_updates(client, [ItemUpdate(new_id, stock=5, content=content)])
    _drain(cell, client)
    found = None
    while found is None and time.monotonic() - began < 30:
        similar = cell.get("/v1/recommendations/similar", product_id=anchor, count=SIMILAR_COUNT).json()
        shown = [i["item_id"] for i in similar["items"]]
        if new_id in shown:
            found, position = time.monotonic() - began, shown.index(new_id) + 1
        time.sleep(0.1)
    ready = httpx.get(cell.base + "/readyz", timeout=5).json()
    assert found is not None, f"{new_id} not in {anchor}'s similar items within 30 s: {similar}; new items {ready['new_items']}"
    own = cell.get("/v1/recommendations/similar", product_id=new_id, count=5)
    assert own.status_code == 200 and len(own.json()["items"]) == 5
    assert new_id in ready["new_items"] and ready["bundle_version"] == cell.version
    print(f"\ncold start: new item published -> in {anchor}'s similar items (position {position} of {SIMILAR_COUNT}) "
          f"after {found:.2f} s (catalog sync every 1 s; shared machine)")


def test_drift_is_seen_when_prices_are_written_10x_and_not_before(cell: Cell) -> None:
    """The drift game day in small: the item feed publishing prices 10x -> the cell's sampled feature
    vectors drift from the bundle's training distribution on the price features, in /readyz and in
    the metric; before, the price features are in line. (The user-state features do drift in this
    test cell, rightly: its users have no session state in Redis and the demo data is months old,
    so /readyz says 'drift' on hours_since_active & co. already on clean traffic.)"""
    client = redis.Redis(port=cell.region.redis_port, decode_responses=True)
    users = json.loads((cell.bundle_dir / "users.json").read_text())
    us = [u["user_id"] for u in users if u["user_id"].startswith("us-")]

    def traffic(scored: int) -> None:
        """Homepages until `scored` of them were fully ranked (each one sampled, 20 rows): a slow
        machine's deadline misses fall back to tiers that score nothing."""
        full = 0
        for k in range(10 * scored):
            full += cell.homepage(us[k % len(us)], count=8)["tier"] == "full"
            if full == scored:
                return
        raise AssertionError(f"only {full} of {10 * scored} homepages were fully ranked")

    traffic(20)  # the whole 400-row window (DRIFT_WINDOW) is clean traffic
    clean = httpx.get(cell.base + "/readyz", timeout=5).json()["drift"]
    assert clean["rows"] >= 200 and not set(PRICE_FEATURES) & set(clean["drifted"]), clean
    items = json.loads((cell.bundle_dir / "items.json").read_text())
    publish_item_updates(client, [ItemUpdate(it["item_id"], price=it["price"] * 10) for it in items])
    _drain(cell, client)  # the feature updater writes the feed's prices to if:<item>
    # The cell's live item features are stale-while-revalidate (serving.live_items): a value older
    # than TTL_S is re-read by the background thread (every ITEM_REFRESH_S) once a request used it.
    time.sleep(live_items.TTL_S + 0.5)
    traffic(10)  # these requests mark the rows they use; the background re-reads them
    time.sleep(2 * ITEM_REFRESH_S + 0.5)
    traffic(10)  # half of the sample window is now repriced traffic
    drifted = httpx.get(cell.base + "/readyz", timeout=5).json()["drift"]
    assert drifted["verdict"] == "drift" and set(PRICE_FEATURES) <= set(drifted["drifted"]), drifted
    metrics = httpx.get(cell.base + "/metrics", timeout=5).text
    psi = {m.split('"')[1]: float(m.split()[-1]) for m in metrics.splitlines() if m.startswith("shopnow_cell_feature_psi{")}
    assert all(psi[f] > 0.25 for f in PRICE_FEATURES), psi
    count = next(m for m in metrics.splitlines() if m.startswith("shopnow_cell_feature_drift_features{"))
    assert 'region="' in count  # every cell series carries its region (serving.metrics)
    assert float(count.split()[-1]) >= len(PRICE_FEATURES)
    print(f"\nPSI log_price: clean {clean_psi(clean)} -> prices 10x {psi['log_price']:.2f}")


def clean_psi(report: dict) -> str:
    return "below 0.25" if "log_price" not in report["drifted"] else "above 0.25"
