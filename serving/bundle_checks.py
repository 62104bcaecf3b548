"""Semantic checks of a model bundle, handed to replication.verifying.verify_bundle.

Each check is `check(bundle_dir, manifest) -> None` and raises BundleCheckError (a
PermanentError carrying `.file` and `.check`, as verify_bundle expects) when the bundle would
misbehave although every checksum matches:

    check_model_loads        ranker.txt is a LightGBM model with one input per schema feature
    check_schema             feature_schema.json matches this code's SCHEMA_VERSION and FEATURE_NAMES
    check_index_dimension    faiss.index dimension == embedding dimension, and it holds every item
    check_item_counts        items.json, item_embeddings.npy, copurchase/popularity/segments agree;
                             users.json agrees with user_embeddings.npy
    check_golden_scores      the golden request yields the expected row count and finite scores

SEMANTIC_CHECKS is the tuple to pass as `semantic_checks=`.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import numpy as np

from regions.errors import PermanentError
from replication.manifest import Manifest
from serving import indexing
from serving.bundle import BundleCheckError, LoadedBundle, load_ranker
from serving.features import FEATURE_NAMES, SCHEMA_VERSION, Candidates
from serving.user_state import UserState


def _json(bundle_dir: Path, name: str, check: str) -> Any:
    try:
        return json.loads((bundle_dir / name).read_text())
    except (OSError, ValueError) as exc:
        raise BundleCheckError(file=name, check=check, message=f"cannot read as JSON: {exc}") from exc


def _npy_shape(bundle_dir: Path, name: str, check: str) -> tuple[int, ...]:
    try:
        arr = np.load(bundle_dir / name, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise BundleCheckError(file=name, check=check, message=f"cannot read as a numpy array: {exc}") from exc
    if arr.ndim != 2:
        raise BundleCheckError(file=name, check=check, message=f"expected a 2-d array, got shape {arr.shape}")
    return tuple(int(d) for d in arr.shape)


def check_schema(bundle_dir: Path, manifest: Manifest) -> None:
    schema = _json(bundle_dir, "feature_schema.json", "schema")
    if schema.get("schema_version") != manifest.schema_version:
        raise BundleCheckError(file="feature_schema.json", check="schema",
                               message=f"schema_version {schema.get('schema_version')!r} differs from the manifest's {manifest.schema_version}")
    if manifest.schema_version == SCHEMA_VERSION and tuple(schema.get("features", ())) != FEATURE_NAMES:
        raise BundleCheckError(file="feature_schema.json", check="schema",
                               message=f"features differ from schema version {SCHEMA_VERSION} of this code")


def check_model_loads(bundle_dir: Path, manifest: Manifest) -> None:
    booster = load_ranker(bundle_dir / "ranker.txt")
    features = _json(bundle_dir, "feature_schema.json", "model_loads").get("features", [])
    if booster.num_feature() != len(features):
        raise BundleCheckError(file="ranker.txt", check="model_loads",
                               message=f"model takes {booster.num_feature()} features, the schema lists {len(features)}")


def check_index_dimension(bundle_dir: Path, manifest: Manifest) -> None:
    n_items, dim = _npy_shape(bundle_dir, "item_embeddings.npy", "index_dimension")
    try:
        index = indexing.read_index(bundle_dir / "faiss.index")
    except PermanentError as exc:
        raise BundleCheckError(file="faiss.index", check="index_dimension", message=str(exc)) from exc
    if index.d != dim:
        raise BundleCheckError(file="faiss.index", check="index_dimension",
                               message=f"index dimension {index.d} != embedding dimension {dim}")
    if index.ntotal != n_items:
        raise BundleCheckError(file="faiss.index", check="item_counts",
                               message=f"index holds {index.ntotal} vectors, there are {n_items} item embeddings")


def check_item_counts(bundle_dir: Path, manifest: Manifest) -> None:
    items = _json(bundle_dir, "items.json", "item_counts")
    n_emb, _ = _npy_shape(bundle_dir, "item_embeddings.npy", "item_counts")
    if not isinstance(items, list) or len(items) != n_emb:
        raise BundleCheckError(file="items.json", check="item_counts",
                               message=f"{len(items) if isinstance(items, list) else 'no'} catalog rows, {n_emb} item embeddings")
    ids = {row.get("item_id") for row in items if isinstance(row, dict)}
    if len(ids) != len(items):
        raise BundleCheckError(file="items.json", check="item_counts", message="item ids are missing or repeated")
    users = _json(bundle_dir, "users.json", "item_counts")
    n_users, _ = _npy_shape(bundle_dir, "user_embeddings.npy", "item_counts")
    if not isinstance(users, list) or len(users) != n_users:
        raise BundleCheckError(file="users.json", check="item_counts",
                               message=f"{len(users) if isinstance(users, list) else 'no'} users, {n_users} user embeddings")
    unknown: list[tuple[str, Any]] = []
    for name in ("popularity.json",):
        unknown += [(name, i) for i in _json(bundle_dir, name, "item_counts") if i not in ids]
    for name in ("segments.json", "copurchase.json"):
        for key, lst in _json(bundle_dir, name, "item_counts").items():
            unknown += [(name, i) for i in lst if i not in ids]
            if name == "copurchase.json" and key not in ids:
                unknown.append((name, key))
    if unknown:
        name, item = unknown[0]
        raise BundleCheckError(file=name, check="item_counts",
                               message=f"{len(unknown)} item ids are not in items.json (first: {item!r})")


def golden_request_scores(bundle_dir: Path, golden: Any) -> tuple[np.ndarray, np.ndarray]:
    """(feature rows, scores) of the bundle's golden request (golden.json), as a cell computes them."""
    bundle = LoadedBundle.load(bundle_dir)
    try:
        cands = Candidates.from_json(golden["candidates"], bundle.items)
        state = UserState.from_hash(golden["state"])
        vector = bundle.user_embedding(golden.get("user_id"), state)
        X = bundle.features(state=state, user_vector=vector, candidates=cands, now=float(golden["now"]))
        scores = bundle.rank(state, cands, float(golden["now"]), user_vector=vector)
    except (KeyError, TypeError, ValueError) as exc:
        raise BundleCheckError(file="golden.json", check="golden_scores", message=f"malformed golden request: {exc!r}") from exc
    return X, scores


def check_golden_scores(bundle_dir: Path, manifest: Manifest) -> None:

    golden = _json(bundle_dir, "golden.json", "golden_scores")
    X, scores = golden_request_scores(bundle_dir, golden)
    if X.shape[0] != int(golden.get("expected_rows", -1)):
        raise BundleCheckError(file="golden.json", check="golden_scores",
                               message=f"{X.shape[0]} feature rows, expected {golden.get('expected_rows')}")
    if not np.all(np.isfinite(X)):
        raise BundleCheckError(file="golden.json", check="golden_scores", message="feature matrix holds NaN or infinity")
    if not np.all(np.isfinite(scores)):
        raise BundleCheckError(file="ranker.txt", check="golden_scores",
                               message=f"{int(np.sum(~np.isfinite(scores)))} of {len(scores)} golden scores are NaN or infinite")
    expected = golden.get("expected_scores")
    if expected is not None and not np.allclose(scores, np.asarray(expected, dtype=np.float64), rtol=1e-4, atol=1e-4):
        raise BundleCheckError(file="ranker.txt", check="golden_scores",
                               message="golden scores differ from those recorded at training time")


SEMANTIC_CHECKS: tuple[Callable[[Path, Manifest], None], ...] = (
    check_schema, check_model_loads, check_index_dimension, check_item_counts, check_golden_scores,
)
