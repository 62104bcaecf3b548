"""Cold-start items (serving.cold_start): placed by content, found by retrieval at once."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from regions.errors import InputError
from serving.bundle import LoadedBundle
from serving.cold_start import add_items, content_embedding
from serving.user_state import UserState


@pytest.fixture(scope="module")
def bundle(tiny_bundle: Path) -> LoadedBundle:
    return LoadedBundle.load(tiny_bundle)


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-9))


def test_content_placement_lands_near_the_items_true_embedding(bundle: LoadedBundle) -> None:
    """Hold out items that do have an ALS embedding: the placement from their category, brand and
    price must be much closer to it than the placement of a random item of another category."""
    rows = bundle.item_rows
    parent_of = {r["item_id"]: r["parent_category"] for r in rows}
    brand_of = {r["item_id"]: r["brand"] for r in rows}
    rng = np.random.default_rng(5)
    learned = np.flatnonzero(bundle.items.views > 5)
    own, other = [], []
    for r in rng.choice(learned, size=min(60, len(learned)), replace=False):
        item = rows[int(r)]
        placed = content_embedding(bundle.items, category=item["category"], parent_category=item["parent_category"],
                                   brand=item["brand"], price=item["price"], parent_of=parent_of, brand_of=brand_of,
                                   exclude_row=int(r))
        stranger = rows[int(rng.choice(np.flatnonzero(bundle.items.category != bundle.items.category[r])))]
        far = content_embedding(bundle.items, category=stranger["category"], parent_category=stranger["parent_category"],
                                brand=stranger["brand"], price=stranger["price"], parent_of=parent_of, brand_of=brand_of)
        true = bundle.items.embeddings[int(r)]
        own.append(_cos(placed, true))
        other.append(_cos(far, true))
    print(f"\ncosine to the true embedding: content placement {np.mean(own):.3f}, another category's {np.mean(other):.3f}")
    assert np.mean(own) > np.mean(other) + 0.3


def test_a_new_item_is_retrievable_and_ranked_at_once(bundle: LoadedBundle) -> None:
    template = bundle.item_rows[int(np.argmax(bundle.items.views))]
    new = {"item_id": "sku-new-1", "category": template["category"], "parent_category": template["parent_category"],
           "brand": template["brand"], "price": template["price"], "created_at": 2e9}
    grown = add_items(bundle, [new])
    row = grown.items.row_of["sku-new-1"]
    assert row == len(bundle.items) and len(grown.items) == len(bundle.items) + 1
    assert bundle.items.ids == grown.items.ids[:-1]
    state = UserState(recent_items=(template["item_id"],))
    vector = grown.items.embeddings[row]
    cands = grown.candidates(state=state, user_vector=vector, segment_key="all", now=2e9)
    assert row in cands.rows.tolist()
    scores = grown.rank(state, cands, 2e9, user_vector=vector)
    assert np.isfinite(scores).all() and len(scores) == len(cands)
    assert "sku-new-1" not in bundle.items.row_of  # the original bundle is unchanged


def test_bad_new_items_are_refused_by_field(bundle: LoadedBundle) -> None:
    with pytest.raises(InputError) as info:
        add_items(bundle, [{"item_id": "x"}])
    assert info.value.field == "items[0]" and "category" in str(info.value)
    with pytest.raises(InputError) as info:
        add_items(bundle, [{**bundle.item_rows[0]}])
    assert info.value.field == "items[0].item_id"
