"""Semantic checks: a whole bundle that would misbehave is refused, naming the file and the check."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from replication.manifest import build_manifest, write_manifest
from replication.verifying import BundleRejected, read_manifest, verify_bundle
from serving import indexing
from serving.bundle_checks import (
    SEMANTIC_CHECKS, BundleCheckError, check_golden_scores, check_index_dimension, check_item_counts,
    check_model_loads, check_schema,
)
from serving.features import SCHEMA_VERSION
from serving.marketplace import MarketplaceSize, generate
from serving.training import train_bundle

SIZE = MarketplaceSize(n_items=250, n_users=200, days=25, n_parents=5, children_per_parent=3, sessions_per_user=5.0)


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    data = generate(SIZE, seed=3, geographies={"us": 0.7, "eu": 0.3})
    out = tmp_path_factory.mktemp("good") / "bundle"
    train_bundle(data, out_dir=out, now=1_800_000_000.0)
    return out


@pytest.fixture
def bundle(good, tmp_path) -> Path:
    copy = tmp_path / "bundle"
    shutil.copytree(good, copy)
    return copy


def _reseal(bundle: Path) -> None:
    """Rewrite the manifest so checksums match: only the semantic checks can catch the damage."""
    old = read_manifest(bundle)
    write_manifest(bundle, build_manifest(bundle, bundle_version=old.bundle_version, created_at=old.created_at,
                                          schema_version=old.schema_version, data_watermark=old.data_watermark,
                                          metrics=old.metrics))


def _verify(bundle: Path):
    return verify_bundle(bundle, supported_schema_versions={SCHEMA_VERSION}, semantic_checks=SEMANTIC_CHECKS)


def test_good_bundle_passes_every_check(bundle):
    manifest = read_manifest(bundle)
    for check in SEMANTIC_CHECKS:
        check(bundle, manifest)
    assert _verify(bundle).bundle_version == manifest.bundle_version


@pytest.mark.parametrize("content", [b"this is not a model\n", b"", b"\xff\xfe\x00binary"])
def test_model_file_that_is_not_a_model(bundle, content):
    (bundle / "ranker.txt").write_bytes(content)
    _reseal(bundle)
    with pytest.raises(BundleCheckError) as info:
        check_model_loads(bundle, read_manifest(bundle))
    assert (info.value.file, info.value.check) == ("ranker.txt", "model_loads")
    with pytest.raises(BundleRejected) as rejected:
        _verify(bundle)
    assert (rejected.value.file, rejected.value.check) == ("ranker.txt", "model_loads")


def test_truncated_model_is_refused_without_crashing(bundle):
    text = (bundle / "ranker.txt").read_text()
    (bundle / "ranker.txt").write_text(text[: len(text) // 2])
    _reseal(bundle)
    with pytest.raises(BundleRejected) as rejected:
        _verify(bundle)
    assert rejected.value.file == "ranker.txt"


def test_index_dimension_mismatch(bundle):
    emb = np.load(bundle / "item_embeddings.npy")
    wider = np.hstack([emb, np.ones((emb.shape[0], 1), np.float32)])
    indexing.write_index(indexing.build_index(wider, kind="flat"), bundle / "faiss.index")
    _reseal(bundle)
    with pytest.raises(BundleCheckError) as info:
        check_index_dimension(bundle, read_manifest(bundle))
    assert (info.value.file, info.value.check) == ("faiss.index", "index_dimension")
    with pytest.raises(BundleRejected) as rejected:
        _verify(bundle)
    assert rejected.value.check == "index_dimension"


def test_index_that_is_not_an_index(bundle):
    (bundle / "faiss.index").write_bytes(b"garbage" * 10)
    _reseal(bundle)
    with pytest.raises(BundleCheckError) as info:
        check_index_dimension(bundle, read_manifest(bundle))
    assert info.value.file == "faiss.index"


def test_item_count_mismatch(bundle):
    items = json.loads((bundle / "items.json").read_text())
    (bundle / "items.json").write_text(json.dumps(items[:-1]))
    _reseal(bundle)
    with pytest.raises(BundleCheckError) as info:
        check_item_counts(bundle, read_manifest(bundle))
    assert (info.value.file, info.value.check) == ("items.json", "item_counts")
    with pytest.raises(BundleRejected) as rejected:
        _verify(bundle)
    assert rejected.value.check == "item_counts"


def test_user_count_mismatch(bundle):
    users = json.loads((bundle / "users.json").read_text())
    (bundle / "users.json").write_text(json.dumps(users + [{"user_id": "us-999999", "segment": "us"}]))
    _reseal(bundle)
    with pytest.raises(BundleCheckError) as info:
        check_item_counts(bundle, read_manifest(bundle))
    assert info.value.file == "users.json"


def test_popularity_naming_an_unknown_item(bundle):
    (bundle / "popularity.json").write_text(json.dumps(["no-such-item"]))
    _reseal(bundle)
    with pytest.raises(BundleCheckError) as info:
        check_item_counts(bundle, read_manifest(bundle))
    assert info.value.file == "popularity.json"


def test_nan_scores(bundle):
    text = (bundle / "ranker.txt").read_text()
    text = re.sub(r"^leaf_value=.*$", lambda m: "leaf_value=" + " ".join(["nan"] * len(m.group(0).split())), text, flags=re.M)
    (bundle / "ranker.txt").write_text(text)
    _reseal(bundle)
    check_model_loads(bundle, read_manifest(bundle))  # still a loadable model ...
    with pytest.raises(BundleCheckError) as info:  # ... whose scores are NaN
        check_golden_scores(bundle, read_manifest(bundle))
    assert (info.value.file, info.value.check) == ("ranker.txt", "golden_scores")
    with pytest.raises(BundleRejected) as rejected:
        _verify(bundle)
    assert rejected.value.check == "golden_scores"


def test_nan_embeddings_are_caught_by_the_golden_request(bundle):
    emb = np.load(bundle / "item_embeddings.npy")
    emb[:] = np.nan
    np.save(bundle / "item_embeddings.npy", emb)
    _reseal(bundle)
    with pytest.raises(BundleCheckError) as info:
        check_golden_scores(bundle, read_manifest(bundle))
    assert info.value.check == "golden_scores"


def test_golden_row_count_mismatch(bundle):
    golden = json.loads((bundle / "golden.json").read_text())
    golden["expected_rows"] += 1
    (bundle / "golden.json").write_text(json.dumps(golden))
    _reseal(bundle)
    with pytest.raises(BundleCheckError) as info:
        check_golden_scores(bundle, read_manifest(bundle))
    assert info.value.file == "golden.json"


def test_schema_that_differs_from_the_code(bundle):
    schema = json.loads((bundle / "feature_schema.json").read_text())
    schema["features"] = list(reversed(schema["features"]))
    (bundle / "feature_schema.json").write_text(json.dumps(schema))
    _reseal(bundle)
    with pytest.raises(BundleCheckError) as info:
        check_schema(bundle, read_manifest(bundle))
    assert (info.value.file, info.value.check) == ("feature_schema.json", "schema")
