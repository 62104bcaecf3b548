"""THE feature code: one function builds the ranker's feature matrix, for training and for serving.

`build_features(items=, state=, user_vector=, candidates=, now=, live=)` -> float32 [n_candidates,
N_FEATURES], columns in FEATURE_NAMES order. Training replays events through
serving.user_state.apply_event and calls this function; the cell calls it with the state from
Redis. Same inputs, same matrix: there is no second implementation to drift.

Pure and vectorised (numpy), no clock: `now` is passed in. `ItemTable` is the bundle's catalog in
column form (built from items.json rows + embeddings + co-purchase lists).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from serving.user_state import AFFINITY_HALF_LIFE_S, RECENT_ITEMS, UserState

SCHEMA_VERSION = 1
"""Bump when FEATURE_NAMES or their meaning change: bundles carry it, cells refuse unknown ones."""
DAY = 86400.0
NEW_ITEM_DAYS = 14.0
"""An item younger than two weeks counts as new (cold-start boost can learn from it)."""
ANN_MISSING_RANK = 200.0
"""ANN rank given to a candidate that did not come from ANN retrieval (beyond any k we ask for)."""

MIN_MEDIAN_PRICE = 0.01
"""Below one cent a median purchase price is noise (or a zero-priced promotion): treated as none."""
MAX_PRICE_RATIO = 1000.0
"""Price ratios are capped so that no input can make a feature infinite."""

# Candidate sources (bit flags in Candidates.sources).
SRC_ANN, SRC_COPURCHASE, SRC_CATEGORY, SRC_SEGMENT, SRC_POPULAR, SRC_RECENT = 1, 2, 4, 8, 16, 32

FEATURES: tuple[tuple[str, str], ...] = (
    ("emb_dot", "user embedding . item embedding (0 without a user embedding)"),
    ("emb_cos", "cosine of user and item embeddings"),
    ("has_user_vector", "1 when the user has an embedding (own or from recent items)"),
    ("ann_score", "inner-product score returned by the ANN index (0 when not from ANN)"),
    ("ann_rank", "rank in the ANN result, 0 best; ANN_MISSING_RANK when not from ANN"),
    ("ann_rank_recip", "1 / (1 + ann_rank)"),
    ("src_ann", "candidate came from ANN retrieval"),
    ("src_copurchase", "candidate came from co-purchase of the cart / recent items"),
    ("src_category", "candidate came from the top items of the user's top categories"),
    ("src_segment", "candidate came from the user's segment list"),
    ("src_popular", "candidate came from global popularity"),
    ("src_recent", "candidate is one of the user's recent items"),
    ("n_sources", "number of sources that proposed the candidate"),
    ("cat_affinity", "user's decayed affinity to the item's category (UserState.affinity_at(now))"),
    ("cat_affinity_share", "that affinity / the user's total affinity"),
    ("cat_affinity_rank", "rank of the item's category in the user's affinities, 0 best; n_categories when none"),
    ("parent_affinity", "user's decayed affinity summed over the item's parent category"),
    ("parent_affinity_share", "that affinity / the user's total affinity"),
    ("user_total_affinity", "log1p of the user's total decayed affinity"),
    ("log_price", "log1p of the item's (live) price"),
    ("price_ratio", "item price / user's median purchase price (0 when the user bought nothing)"),
    ("log_price_ratio", "log of price_ratio (0 when the user bought nothing)"),
    ("has_purchase_history", "1 when the user has purchase prices"),
    ("price_vs_category", "item price / median price of its category in the catalog"),
    ("price_change", "live price / bundle price (1 without a live price): a recent price change"),
    ("log_popularity", "log1p of the item's (live) popularity"),
    ("popularity_pct", "percentile of the item's bundle popularity, 1 = most popular"),
    ("item_age_days", "days since the item was created (0 if in the future)"),
    ("is_new_item", "created less than NEW_ITEM_DAYS ago"),
    ("rating", "item rating (live when available)"),
    ("in_stock", "stock > 0 (live when available)"),
    ("log_stock", "log1p of the stock"),
    ("in_recent", "the item is among the user's recent items"),
    ("recent_position", "position in the recent items / RECENT_ITEMS, 1 when absent"),
    ("same_category_as_last", "same category as the last item the user interacted with"),
    ("same_parent_as_last", "same parent category as the last item"),
    ("recent_same_category", "share of recent items in the item's category"),
    ("recent_same_parent", "share of recent items in the item's parent category"),
    ("recent_same_brand", "share of recent items of the item's brand"),
    ("in_cart", "the item is in the cart"),
    ("copurchase_with_cart", "the item is bought together with something in the cart"),
    ("copurchase_with_recent", "the item is bought together with one of the 5 latest items"),
    ("cart_size", "number of items in the cart"),
    ("recent_count", "number of recent items"),
    ("log_events_seen", "log1p of the events the user's state has seen"),
    ("hours_since_active", "hours since the user's last event (capped at 720)"),
    ("session_sim", "cosine of the item to the mean embedding of the 5 latest items"),
    ("max_recent_sim", "max cosine of the item to any recent item"),
    ("log_item_views", "log1p of the item's views in the training data"),
    ("item_cart_rate", "carts / (views + 1) of the item"),
    ("item_purchase_rate", "purchases / (views + 1) of the item"),
    ("log_item_buyers", "log1p of distinct buyers of the item"),
    ("category_size_log", "log1p of the number of items in the item's category"),
)
FEATURE_NAMES: tuple[str, ...] = tuple(name for name, _ in FEATURES)
N_FEATURES = len(FEATURE_NAMES)
_COL = {name: n for n, name in enumerate(FEATURE_NAMES)}


@dataclass(frozen=True, eq=False)
class Candidates:
    """Candidate items of one request, as rows of the ItemTable, with where each came from."""

    rows: np.ndarray
    ann_rank: np.ndarray
    ann_score: np.ndarray
    sources: np.ndarray

    def __len__(self) -> int:
        return int(self.rows.shape[0])

    @staticmethod
    def of_rows(rows: Sequence[int], *, sources: int = 0) -> "Candidates":
        r = np.asarray(rows, dtype=np.int64)
        return Candidates(rows=r, ann_rank=np.full(len(r), ANN_MISSING_RANK, np.float32),
                          ann_score=np.zeros(len(r), np.float32), sources=np.full(len(r), sources, np.uint8))

    def to_json(self, items: "ItemTable") -> dict[str, Any]:
        return {"item_ids": [items.ids[int(r)] for r in self.rows], "ann_rank": self.ann_rank.tolist(),
                "ann_score": self.ann_score.tolist(), "sources": self.sources.tolist()}

    @staticmethod
    def from_json(raw: Mapping[str, Any], items: "ItemTable") -> "Candidates":
        return Candidates(rows=np.array([items.row_of[i] for i in raw["item_ids"]], dtype=np.int64),
                          ann_rank=np.asarray(raw["ann_rank"], np.float32), ann_score=np.asarray(raw["ann_score"], np.float32),
                          sources=np.asarray(raw["sources"], np.uint8))


@dataclass(frozen=True, eq=False)
class LiveItems:
    """Live item features for the candidates (from Redis `if:<item>`), aligned with Candidates.rows.
    NaN means "not known live, use the bundle's value"."""

    price: np.ndarray
    stock: np.ndarray
    rating: np.ndarray
    popularity: np.ndarray


@dataclass(frozen=True, eq=False)
class ItemTable:
    """The catalog in column form; row i = items.json[i] = item_embeddings[i] = FAISS id i."""

    ids: tuple[str, ...]
    row_of: Mapping[str, int]
    category: np.ndarray
    categories: tuple[str, ...]
    category_code: Mapping[str, int]
    parent: np.ndarray
    parent_of_category: np.ndarray
    brand: np.ndarray
    price: np.ndarray
    stock: np.ndarray
    rating: np.ndarray
    created_at: np.ndarray
    popularity: np.ndarray
    popularity_pct: np.ndarray
    views: np.ndarray
    carts: np.ndarray
    purchases: np.ndarray
    buyers: np.ndarray
    embeddings: np.ndarray
    unit_embeddings: np.ndarray
    category_median_price: np.ndarray
    category_count: np.ndarray
    copurchase: tuple[np.ndarray, ...]

    def __len__(self) -> int:
        return len(self.ids)

    @staticmethod
    def build(rows: Sequence[Mapping[str, Any]], *, embeddings: np.ndarray,
              copurchase: Mapping[str, Sequence[str]]) -> "ItemTable":
        """From items.json rows (item_id, category, parent_category, brand, price, stock, rating,
        created_at; optional stats popularity, views, carts, purchases, buyers)."""
        ids = tuple(str(r["item_id"]) for r in rows)
        row_of = {i: n for n, i in enumerate(ids)}
        categories = tuple(sorted({str(r["category"]) for r in rows}))
        category_code = {c: n for n, c in enumerate(categories)}
        parents = sorted({str(r["parent_category"]) for r in rows})
        parent_code = {p: n for n, p in enumerate(parents)}
        brands = {b: n for n, b in enumerate(sorted({str(r["brand"]) for r in rows}))}
        cat = np.array([category_code[str(r["category"])] for r in rows], dtype=np.int64)
        par = np.array([parent_code[str(r["parent_category"])] for r in rows], dtype=np.int64)
        parent_of_category = np.zeros(len(categories), dtype=np.int64)
        parent_of_category[cat] = par

        def col(name: str, default: float = 0.0) -> np.ndarray:
            return np.array([float(r.get(name, default)) for r in rows], dtype=np.float64)

        price, popularity = col("price"), col("popularity")
        order = np.argsort(popularity, kind="stable")
        pct = np.empty(len(rows))
        pct[order] = (np.arange(len(rows)) + 1) / max(len(rows), 1)
        emb = np.ascontiguousarray(embeddings, dtype=np.float32)
        norms = np.linalg.norm(emb, axis=1, keepdims=True)
        cat_median = np.zeros(len(categories))
        for c in range(len(categories)):
            sel = price[cat == c]
            cat_median[c] = float(np.median(sel)) if len(sel) else 0.0
        empty = np.zeros(0, dtype=np.int64)
        cop = tuple(
            np.array([row_of[j] for j in copurchase.get(i, ()) if j in row_of], dtype=np.int64) if i in copurchase else empty
            for i in ids
        )
        return ItemTable(
            ids=ids, row_of=row_of, category=cat, categories=categories, category_code=category_code, parent=par,
            parent_of_category=parent_of_category, brand=np.array([brands[str(r["brand"])] for r in rows], dtype=np.int64),
            price=price, stock=col("stock"), rating=col("rating"), created_at=col("created_at"), popularity=popularity,
            popularity_pct=pct, views=col("views"), carts=col("carts"), purchases=col("purchases"), buyers=col("buyers"),
            embeddings=emb, unit_embeddings=(emb / np.maximum(norms, 1e-9)).astype(np.float32),
            category_median_price=cat_median, category_count=np.bincount(cat, minlength=len(categories)).astype(np.float64),
            copurchase=cop,
        )

    def rows_of(self, item_ids: Sequence[str]) -> np.ndarray:
        """Rows of the ids that are in the catalog, in the given order (unknown ids are dropped)."""
        return np.array([self.row_of[i] for i in item_ids if i in self.row_of], dtype=np.int64)


def _live(bundle: np.ndarray, live: np.ndarray | None) -> np.ndarray:
    return bundle if live is None else np.where(np.isnan(live), bundle, live)


def _member(rows: np.ndarray, groups: Sequence[np.ndarray], n_items: int) -> np.ndarray:
    """rows[i] in any of the groups (a boolean mask over the catalog: faster than np.isin here)."""
    mask = np.zeros(n_items, dtype=bool)
    for g in groups:
        mask[g] = True
    return mask[rows]


def build_features(
    *, items: ItemTable, state: UserState, user_vector: np.ndarray | None, candidates: Candidates,
    now: float, live: LiveItems | None = None, interest_half_life_s: float = AFFINITY_HALF_LIFE_S,
) -> np.ndarray:
    """The feature matrix [len(candidates), N_FEATURES] (float32), columns in FEATURE_NAMES order.
    `interest_half_life_s`: the bundle's interest fade (serving.time_constants)."""
    r = candidates.rows
    n = len(r)
    X = np.zeros((n, N_FEATURES), dtype=np.float64)
    emb, unit = items.embeddings[r], items.unit_embeddings[r]
    if user_vector is not None:
        u = np.asarray(user_vector, dtype=np.float32)
        X[:, _COL["emb_dot"]] = emb @ u
        X[:, _COL["emb_cos"]] = unit @ (u / max(float(np.linalg.norm(u)), 1e-9))
        X[:, _COL["has_user_vector"]] = 1.0
    from_ann = (candidates.sources & SRC_ANN) > 0
    X[:, _COL["ann_score"]] = np.where(from_ann, candidates.ann_score, 0.0)
    X[:, _COL["ann_rank"]] = candidates.ann_rank
    X[:, _COL["ann_rank_recip"]] = 1.0 / (1.0 + candidates.ann_rank)
    for name, bit in (("src_ann", SRC_ANN), ("src_copurchase", SRC_COPURCHASE), ("src_category", SRC_CATEGORY),
                      ("src_segment", SRC_SEGMENT), ("src_popular", SRC_POPULAR), ("src_recent", SRC_RECENT)):
        X[:, _COL[name]] = (candidates.sources & bit) > 0
    X[:, _COL["n_sources"]] = X[:, _COL["src_ann"]:_COL["src_recent"] + 1].sum(axis=1)

    cat, par = items.category[r], items.parent[r]
    cat_aff = np.zeros(len(items.categories))
    for c, v in state.affinity_at(now, interest_half_life_s).items():
        code = items.category_code.get(c)
        if code is not None:
            cat_aff[code] = v
    total = float(cat_aff.sum())
    par_aff = np.bincount(items.parent_of_category, weights=cat_aff, minlength=int(items.parent.max(initial=0)) + 1)
    rank_of = np.empty(len(cat_aff))
    rank_of[np.argsort(-cat_aff, kind="stable")] = np.arange(len(cat_aff))
    rank_of[cat_aff <= 0] = len(cat_aff)
    X[:, _COL["cat_affinity"]] = cat_aff[cat]
    X[:, _COL["parent_affinity"]] = par_aff[par]
    if total > 0:
        X[:, _COL["cat_affinity_share"]] = cat_aff[cat] / total
        X[:, _COL["parent_affinity_share"]] = par_aff[par] / total
    X[:, _COL["cat_affinity_rank"]] = rank_of[cat]
    X[:, _COL["user_total_affinity"]] = math.log1p(total)

    price = _live(items.price[r], live.price if live else None)
    stock = _live(items.stock[r], live.stock if live else None)
    X[:, _COL["log_price"]] = np.log1p(np.maximum(price, 0.0))
    median = state.median_purchase_price
    if median >= MIN_MEDIAN_PRICE:
        X[:, _COL["price_ratio"]] = np.minimum(price / median, MAX_PRICE_RATIO)
        X[:, _COL["log_price_ratio"]] = np.log(np.clip(np.maximum(price, 1e-3) / median, 1e-6, MAX_PRICE_RATIO))
        X[:, _COL["has_purchase_history"]] = 1.0
    X[:, _COL["price_vs_category"]] = price / np.maximum(items.category_median_price[cat], 1e-3)
    X[:, _COL["price_change"]] = price / np.maximum(items.price[r], 1e-3)
    X[:, _COL["log_popularity"]] = np.log1p(np.maximum(_live(items.popularity[r], live.popularity if live else None), 0.0))
    X[:, _COL["popularity_pct"]] = items.popularity_pct[r]
    age = np.maximum(now - items.created_at[r], 0.0) / DAY
    X[:, _COL["item_age_days"]] = age
    X[:, _COL["is_new_item"]] = age < NEW_ITEM_DAYS
    X[:, _COL["rating"]] = _live(items.rating[r], live.rating if live else None)
    X[:, _COL["in_stock"]] = stock > 0
    X[:, _COL["log_stock"]] = np.log1p(np.maximum(stock, 0.0))

    recent = items.rows_of(state.recent_items)
    cart = items.rows_of(state.cart)
    if len(recent):
        eq = r[:, None] == recent[None, :]
        hit = eq.any(axis=1)
        X[:, _COL["in_recent"]] = hit
        X[:, _COL["recent_position"]] = np.where(hit, eq.argmax(axis=1), RECENT_ITEMS) / RECENT_ITEMS
        X[:, _COL["same_category_as_last"]] = cat == items.category[recent[0]]
        X[:, _COL["same_parent_as_last"]] = par == items.parent[recent[0]]
        m = float(len(recent))
        X[:, _COL["recent_same_category"]] = np.bincount(items.category[recent], minlength=len(items.categories))[cat] / m
        X[:, _COL["recent_same_parent"]] = np.bincount(items.parent[recent], minlength=len(par_aff))[par] / m
        X[:, _COL["recent_same_brand"]] = np.bincount(items.brand[recent], minlength=int(items.brand.max()) + 1)[items.brand[r]] / m
        latest = recent[:5]
        X[:, _COL["copurchase_with_recent"]] = _member(r, [items.copurchase[i] for i in latest], len(items))
        session = items.unit_embeddings[latest].mean(axis=0)
        X[:, _COL["session_sim"]] = unit @ (session / max(float(np.linalg.norm(session)), 1e-9))
        X[:, _COL["max_recent_sim"]] = (unit @ items.unit_embeddings[recent].T).max(axis=1)
    else:
        X[:, _COL["recent_position"]] = 1.0
    if len(cart):
        X[:, _COL["in_cart"]] = _member(r, [cart], len(items))
        X[:, _COL["copurchase_with_cart"]] = _member(r, [items.copurchase[i] for i in cart], len(items))
    X[:, _COL["cart_size"]] = len(state.cart)
    X[:, _COL["recent_count"]] = len(state.recent_items)
    X[:, _COL["log_events_seen"]] = math.log1p(state.events_seen)
    idle_h = (now - state.updated_at) / 3600.0 if state.updated_at > 0 else 720.0
    X[:, _COL["hours_since_active"]] = min(max(idle_h, 0.0), 720.0)
    views = items.views[r]
    X[:, _COL["log_item_views"]] = np.log1p(views)
    X[:, _COL["item_cart_rate"]] = items.carts[r] / (views + 1.0)
    X[:, _COL["item_purchase_rate"]] = items.purchases[r] / (views + 1.0)
    X[:, _COL["log_item_buyers"]] = np.log1p(items.buyers[r])
    X[:, _COL["category_size_log"]] = np.log1p(items.category_count[cat])
    return X.astype(np.float32)


def schema_document() -> dict[str, Any]:
    """Content of feature_schema.json."""
    return {"schema_version": SCHEMA_VERSION, "features": list(FEATURE_NAMES),
            "descriptions": {name: text for name, text in FEATURES}}
