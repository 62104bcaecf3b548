"""Cold-start items: an item created after the bundle was trained has no ALS embedding, so
retrieval could never find it. Place it by content: its embedding is the mean of the embeddings
of its `neighbours` nearest catalog items, nearest meaning same category (else same parent
category, else any), then same brand first, then the closest log price. Pure given the bundle.

    content_embedding(items, category=, parent_category=, brand=, price=)   one vector
    add_items(bundle, rows)   a new LoadedBundle whose catalog, embeddings and ANN index also hold
                              `rows` (items.json-shaped dicts), ids appended after the bundle's

New items have no interaction statistics (popularity, views, buyers 0) and `created_at` makes
is_new_item 1, which the ranker sees; retrieval finds them through the embedding.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Mapping, Sequence

import numpy as np

from regions.errors import InputError
from serving.bundle import LoadedBundle, category_top
from serving.features import ItemTable

REQUIRED = ("item_id", "category", "parent_category", "brand", "price", "created_at")


@dataclass(frozen=True)
class ColdStartSettings:
    neighbours: int = 10
    """Ten neighbours: a stable mean, still specific to the category's brand and price level."""


def content_embedding(items: ItemTable, *, category: str, parent_category: str, brand: str, price: float,
                      parent_of: Mapping[str, str], brand_of: Mapping[str, str],
                      settings: ColdStartSettings = ColdStartSettings(), exclude_row: int | None = None) -> np.ndarray:
    """The mean embedding of the item's content neighbours (see the module docstring)."""
    n = len(items)
    pool = np.arange(n)
    if exclude_row is not None:
        pool = pool[pool != exclude_row]
    code = items.category_code.get(category)
    same_cat = pool[items.category[pool] == code] if code is not None else pool[:0]
    if len(same_cat) == 0:
        same_cat = np.array([r for r in pool if parent_of.get(items.ids[int(r)]) == parent_category], dtype=np.int64)
    if len(same_cat) == 0:
        same_cat = pool
    brand_miss = np.array([brand_of.get(items.ids[int(r)]) != brand for r in same_cat], dtype=np.int64)
    distance = np.abs(np.log1p(np.maximum(items.price[same_cat], 0.0)) - np.log1p(max(price, 0.0)))
    order = np.lexsort((distance, brand_miss))[: settings.neighbours]
    return items.embeddings[same_cat[order]].mean(axis=0).astype(np.float32)


def add_items(bundle: LoadedBundle, rows: Sequence[Mapping[str, Any]],
              settings: ColdStartSettings = ColdStartSettings()) -> LoadedBundle:
    """`bundle` with `rows` added to its catalog and index (see the module docstring)."""
    import faiss

    if bundle.item_rows is None:
        raise InputError("bundle", "this bundle was built without its item rows; load it with LoadedBundle.load")
    for n, row in enumerate(rows):
        missing = [k for k in REQUIRED if k not in row]
        if missing:
            raise InputError(f"items[{n}]", f"missing field(s) {', '.join(missing)}; required: {', '.join(REQUIRED)}")
        if str(row["item_id"]) in bundle.items.row_of:
            raise InputError(f"items[{n}].item_id", f"{row['item_id']} is already in the catalog")
    parent_of = {str(r["item_id"]): str(r["parent_category"]) for r in bundle.item_rows}
    brand_of = {str(r["item_id"]): str(r["brand"]) for r in bundle.item_rows}
    vectors = np.stack([content_embedding(bundle.items, category=str(r["category"]), parent_category=str(r["parent_category"]),
                                          brand=str(r["brand"]), price=float(r["price"]), parent_of=parent_of,
                                          brand_of=brand_of, settings=settings) for r in rows]) if rows else \
        np.zeros((0, bundle.dim), np.float32)
    new_rows = [{"stock": 1, "rating": 0.0, **dict(r)} for r in rows]
    all_rows = list(bundle.item_rows) + new_rows
    copurchase = {bundle.items.ids[r]: bundle.item_ids(c) for r, c in enumerate(bundle.items.copurchase) if len(c)}
    items = ItemTable.build(all_rows, embeddings=np.vstack([bundle.items.embeddings, vectors]), copurchase=copurchase)
    index = faiss.clone_index(bundle.index)
    if len(vectors):
        index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    parents = dict(bundle.item_parent or {})
    parents.update({str(r["item_id"]): str(r["parent_category"]) for r in rows})
    return replace(bundle, items=items, index=index, item_rows=tuple(all_rows), item_parent=parents,
                   category_top=category_top(items),
                   version=f"{bundle.version}+{len(rows)} new items")
