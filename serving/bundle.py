"""A model bundle loaded into memory: what the cell's full-ranking tier (and the offline evaluation) uses.

`LoadedBundle.load(dir)` reads a bundle directory (layout: docs/interfaces.md). It does NOT verify
checksums: call replication.verifying.verify_bundle first (with serving.bundle_checks). A file that
cannot be read as what it should be raises BundleCheckError naming the file.

The request path, pure given the bundle and the inputs (`now` is passed in):
    vector = bundle.user_embedding(user_id, state)          own ALS row, else mean of recent items
    cands  = bundle.candidates(state=, user_vector=, segment_key=)   ANN + co-purchase + categories
                                                                      + recent + segment + popular
    scores = bundle.rank(state, cands, now, user_vector=, live=)     LightGBM over serving.features
or all at once: `bundle.recommend(user_id=, state=, attrs=, now=, k=)`.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from regions.errors import InputError, PermanentError
from serving import indexing
from serving.features import (
    SRC_ANN, SRC_CATEGORY, SRC_COPURCHASE, SRC_POPULAR, SRC_RECENT, SRC_SEGMENT,
    ANN_MISSING_RANK, Candidates, ItemTable, LiveItems, build_features,
)
from serving.seen_items import SeenPolicies, excluded
from serving.time_constants import FILE as TIME_CONSTANTS_FILE, TimeConstants
from serving.user_state import UserState

BUNDLE_FILES = ("items.json", "item_embeddings.npy", "users.json", "user_embeddings.npy", "faiss.index",
                "ranker.txt", "feature_schema.json", "segments.json", "popularity.json", "copurchase.json", "golden.json",
                "seen_policy.json", "feature_stats.json", "time_constants.json")
SEGMENT_ATTRS = ("geo", "device", "price_band")
"""A segment key is these attributes joined by '|'; coarser keys are the geography alone, then 'all'."""


class BundleCheckError(PermanentError):
    """A bundle is whole but wrong. `.file` names the file, `.check` the check that failed (the
    semantic checks of serving.bundle_checks raise it, and so does loading)."""

    def __init__(self, *, file: str, check: str, message: str) -> None:
        super().__init__(f"{file}: {check} check failed: {message}. Rebuild the bundle with `regionctl train`.")
        self.file = file
        self.check = check
        self.detail = message


def segment_keys(attrs: Mapping[str, str]) -> tuple[str, ...]:
    """Keys from the most specific to the coarsest: 'us|mobile|low', 'us', 'all'."""
    keys = []
    if all(attrs.get(a) for a in SEGMENT_ATTRS):
        keys.append("|".join(attrs[a] for a in SEGMENT_ATTRS))
    if attrs.get("geo"):
        keys.append(attrs["geo"])
    keys.append("all")
    return tuple(keys)


@dataclass(frozen=True)
class CandidateSettings:
    """How many candidates each source adds; each default carries its reason."""

    ann_k: int = 100
    """ANN is the main source; 100 keeps ranking of ~200 candidates well under the deadline."""
    copurchase_per_item: int = 10
    """Bought-together items of each cart / latest item: strong signal, a few each."""
    latest_items: int = 5
    """The latest items drive session intent; older ones are covered by the embedding."""
    top_categories: int = 3
    """The user's three strongest categories by decayed affinity."""
    per_category: int = 10
    """Most popular items of each of those categories."""
    segment_top: int = 30
    """Segment list head: a safety net for cold users."""
    popular_top: int = 30
    """Global popularity head: the same safety net, without a segment."""


@dataclass(frozen=True, eq=False)
class LoadedBundle:
    version: str
    items: ItemTable
    user_ids: tuple[str, ...]
    user_row: Mapping[str, int]
    user_segment: Mapping[str, str]
    user_vectors: np.ndarray
    index: Any
    ranker: Any | None
    feature_names: tuple[str, ...]
    segments: Mapping[str, np.ndarray]
    popularity: np.ndarray
    category_top: tuple[np.ndarray, ...]
    golden: Mapping[str, Any] | None = None
    settings: CandidateSettings = CandidateSettings()
    seen_policy: SeenPolicies = SeenPolicies()
    """What each surface may not show again (seen_policy.json; defaults when a bundle has none)."""
    item_parent: Mapping[str, str] | None = None
    """item_id -> parent category (the seen policy's repeatable parents)."""
    item_rows: tuple[Mapping[str, Any], ...] | None = None
    """items.json as loaded (serving.cold_start appends new items to it)."""
    feature_stats: Mapping[str, Any] | None = None
    """feature_stats.json: the training distribution of the features (serving.drift)."""
    time_constants: TimeConstants = TimeConstants()
    """time_constants.json: the data set's interest fade & co. (defaults when a bundle has none)."""

    @property
    def dim(self) -> int:
        return int(self.items.embeddings.shape[1])

    # --- loading -----------------------------------------------------------------------------
    @classmethod
    def load(cls, bundle_dir: Path, *, require_ranker: bool = True, version: str | None = None,
             settings: CandidateSettings = CandidateSettings()) -> "LoadedBundle":
        bundle_dir = Path(bundle_dir)
        rows = _json(bundle_dir, "items.json")
        copurchase = _json(bundle_dir, "copurchase.json")
        items = ItemTable.build(rows, embeddings=_npy(bundle_dir, "item_embeddings.npy"), copurchase=copurchase)
        users = _json(bundle_dir, "users.json")
        schema = _json(bundle_dir, "feature_schema.json")
        ranker = None
        if require_ranker or (bundle_dir / "ranker.txt").exists():
            ranker = load_ranker(bundle_dir / "ranker.txt")
        golden = _json(bundle_dir, "golden.json") if (bundle_dir / "golden.json").exists() else None
        seen_policy = SeenPolicies()
        if (bundle_dir / "seen_policy.json").exists():
            try:
                seen_policy = SeenPolicies.from_json(_json(bundle_dir, "seen_policy.json"))
            except InputError as exc:
                raise BundleCheckError(file="seen_policy.json", check="loads", message=str(exc)) from exc
        time_constants = TimeConstants()
        if (bundle_dir / TIME_CONSTANTS_FILE).exists():
            try:
                time_constants = TimeConstants.loads((bundle_dir / TIME_CONSTANTS_FILE).read_text())
            except InputError as exc:
                raise BundleCheckError(file=TIME_CONSTANTS_FILE, check="loads", message=str(exc)) from exc
        if version is None and (bundle_dir / "manifest.json").exists():
            version = str(json.loads((bundle_dir / "manifest.json").read_text()).get("bundle_version", ""))
        try:
            index = indexing.read_index(bundle_dir / "faiss.index")
        except Exception as exc:
            raise BundleCheckError(file="faiss.index", check="loads", message=str(exc)) from exc
        return cls(
            version=version or bundle_dir.name, items=items,
            user_ids=tuple(u["user_id"] for u in users), user_row={u["user_id"]: n for n, u in enumerate(users)},
            user_segment={u["user_id"]: u.get("segment", "all") for u in users},
            user_vectors=_npy(bundle_dir, "user_embeddings.npy"), index=index, ranker=ranker,
            feature_names=tuple(schema.get("features", ())),
            segments={k: items.rows_of(v) for k, v in _json(bundle_dir, "segments.json").items()},
            popularity=items.rows_of(_json(bundle_dir, "popularity.json")),
            category_top=category_top(items), golden=golden, settings=settings,
            seen_policy=seen_policy, item_parent={str(r["item_id"]): str(r["parent_category"]) for r in rows},
            item_rows=tuple(rows),
            feature_stats=_json(bundle_dir, "feature_stats.json") if (bundle_dir / "feature_stats.json").exists() else None,
            time_constants=time_constants,
        )

    # --- the request path ----------------------------------------------------------------------
    def user_embedding(self, user_id: str | None, state: UserState | None = None) -> np.ndarray | None:
        """The user's ALS vector; for users without one, the mean of their recent items' vectors."""
        if user_id is not None and user_id in self.user_row:
            return np.asarray(self.user_vectors[self.user_row[user_id]], dtype=np.float32)
        if state is None:
            return None
        rows = self.items.rows_of(state.recent_items)
        return np.asarray(self.items.embeddings[rows].mean(axis=0), dtype=np.float32) if len(rows) else None

    def ann_candidates(self, vector: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(rows, scores) of the k nearest items by inner product, best first."""
        scores, rows = indexing.search(self.index, vector, k)
        keep = rows[0] >= 0
        return rows[0][keep].astype(np.int64), scores[0][keep].astype(np.float32)

    def segment_of(self, attrs: Mapping[str, str]) -> str:
        """The most specific segment key with a list in this bundle."""
        for key in segment_keys(attrs):
            if key in self.segments:
                return key
        return "all"

    def segment_list(self, key: str) -> np.ndarray:
        return self.segments.get(key, self.popularity)

    def candidates(self, *, state: UserState, user_vector: np.ndarray | None, segment_key: str,
                   now: float) -> Candidates:
        """Merged candidates from every source, with their source bits and ANN rank/score."""
        s = self.settings
        parts: list[tuple[np.ndarray, int]] = []
        ann_rows = np.zeros(0, np.int64)
        ann_scores = np.zeros(0, np.float32)
        if user_vector is not None:
            ann_rows, ann_scores = self.ann_candidates(user_vector, s.ann_k)
            parts.append((ann_rows, SRC_ANN))
        recent = self.items.rows_of(state.recent_items)
        cart = self.items.rows_of(state.cart)
        parts.append((recent, SRC_RECENT))
        seeds = list(cart) + list(recent[: s.latest_items])
        if seeds:
            parts.append((np.concatenate([self.items.copurchase[i][: s.copurchase_per_item] for i in seeds]), SRC_COPURCHASE))
        affinity = state.affinity_at(now, self.time_constants.interest_half_life_s)
        top = sorted(affinity, key=lambda c: (-affinity[c], c))[: s.top_categories]
        codes = [self.items.category_code[c] for c in top if c in self.items.category_code]
        if codes:
            parts.append((np.concatenate([self.category_top[c][: s.per_category] for c in codes]), SRC_CATEGORY))
        parts.append((self.segment_list(segment_key)[: s.segment_top], SRC_SEGMENT))
        parts.append((self.popularity[: s.popular_top], SRC_POPULAR))
        rows = np.concatenate([p for p, _ in parts]).astype(np.int64)
        bits = np.concatenate([np.full(len(p), b, np.uint8) for p, b in parts])
        uniq, inverse = np.unique(rows, return_inverse=True)
        sources = np.zeros(len(uniq), np.uint8)
        np.bitwise_or.at(sources, inverse, bits)
        ann_rank = np.full(len(uniq), ANN_MISSING_RANK, np.float32)
        ann_score = np.zeros(len(uniq), np.float32)
        if len(ann_rows):
            pos = np.searchsorted(uniq, ann_rows)
            ann_rank[pos] = np.arange(len(ann_rows), dtype=np.float32)
            ann_score[pos] = ann_scores
        return Candidates(rows=uniq, ann_rank=ann_rank, ann_score=ann_score, sources=sources)

    def features(self, *, state: UserState, user_vector: np.ndarray | None, candidates: Candidates,
                 now: float, live: LiveItems | None = None) -> np.ndarray:
        return build_features(items=self.items, state=state, user_vector=user_vector, candidates=candidates,
                              now=now, live=live, interest_half_life_s=self.time_constants.interest_half_life_s)

    def rank(self, user_state: UserState, candidates: Candidates, now: float, *,
             user_vector: np.ndarray | None = None, live: LiveItems | None = None) -> np.ndarray:
        """LightGBM scores of the candidates (higher is better), aligned with candidates.rows."""
        if self.ranker is None:
            raise BundleCheckError(file="ranker.txt", check="loads", message="this bundle was loaded without a ranker")
        if len(candidates) == 0:
            return np.zeros(0, np.float64)
        X = self.features(state=user_state, user_vector=user_vector, candidates=candidates, now=now, live=live)
        return np.asarray(self.ranker.predict(X, num_threads=1), dtype=np.float64)

    def recommend(self, *, user_id: str | None, state: UserState, attrs: Mapping[str, str], now: float,
                  k: int = 10, live: LiveItems | None = None) -> list[tuple[str, float]]:
        """The full pipeline: (item_id, score) best first. No business rules (the cell applies them)."""
        vector = self.user_embedding(user_id, state)
        cands = self.candidates(state=state, user_vector=vector, segment_key=self.segment_of(attrs), now=now)
        scores = self.rank(state, cands, now, user_vector=vector, live=live)
        order = np.argsort(-scores, kind="stable")[:k]
        return [(self.items.ids[int(cands.rows[i])], float(scores[i])) for i in order]

    def not_again(self, seen: Mapping[str, float], *, now: float, surface: str = "home") -> frozenset[str]:
        """Items of the user's seen set that `surface` may not show (serving.seen_items.excluded)."""
        parents = self.item_parent or {}
        return excluded(seen, now=now, policy=self.seen_policy.of(surface), parent_of=parents.get)

    def item_ids(self, rows: Sequence[int] | np.ndarray) -> list[str]:
        return [self.items.ids[int(r)] for r in rows]


def category_top(items: ItemTable, per_category: int = 50) -> tuple[np.ndarray, ...]:
    """Each category's most popular rows (the category candidate source), by category code."""
    order = np.argsort(-items.popularity, kind="stable")
    per_cat: list[list[int]] = [[] for _ in items.categories]
    for row in order:
        bucket = per_cat[int(items.category[row])]
        if len(bucket) < per_category:
            bucket.append(int(row))
    return tuple(np.array(b, dtype=np.int64) for b in per_cat)


def load_ranker(path: Path) -> Any:
    """A LightGBM Booster from a model file; BundleCheckError when the file is not a model.

    The `tree_sizes=` header line is dropped before parsing: with it LightGBM parses trees on
    several threads and a malformed tree aborts the whole process (measured with lightgbm 4.7);
    without it parsing is sequential and a malformed file raises LightGBMError, which we map.
    """
    import lightgbm

    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise BundleCheckError(file=path.name, check="model_loads", message=f"cannot read as text: {exc}") from exc
    text = "\n".join(line for line in text.splitlines() if not line.startswith("tree_sizes=")) + "\n"
    try:
        booster = lightgbm.Booster(model_str=text)
    except (lightgbm.basic.LightGBMError, ValueError) as exc:
        raise BundleCheckError(file=path.name, check="model_loads", message=f"not a LightGBM model: {exc}") from exc
    if booster.num_trees() < 1:
        raise BundleCheckError(file=path.name, check="model_loads", message="the model has no trees")
    return booster


def _json(bundle_dir: Path, name: str) -> Any:
    try:
        return json.loads((bundle_dir / name).read_text())
    except (OSError, ValueError) as exc:
        raise BundleCheckError(file=name, check="loads", message=f"cannot read as JSON: {exc}") from exc


def _npy(bundle_dir: Path, name: str) -> np.ndarray:
    try:
        arr = np.load(bundle_dir / name, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise BundleCheckError(file=name, check="loads", message=f"cannot read as a numpy array: {exc}") from exc
    if arr.ndim != 2:
        raise BundleCheckError(file=name, check="loads", message=f"expected a 2-d array, got shape {arr.shape}")
    return np.asarray(arr, dtype=np.float32)


__all__ = ["BUNDLE_FILES", "CandidateSettings", "LoadedBundle", "load_ranker", "segment_keys"]
