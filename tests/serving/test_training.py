"""Offline training end to end (tiny size), the loaded bundle, indexing and the evaluation metrics."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from regions.errors import InputError
from replication.manifest import bundle_files
from replication.verifying import verify_bundle
from serving import indexing
from serving.bundle import BUNDLE_FILES, LoadedBundle, segment_keys
from serving.bundle_checks import SEMANTIC_CHECKS
from serving.evaluation import evaluate, hit_at_k, ndcg_at_k, ratio, recall_at_k, relevance_by_user
from serving.features import SCHEMA_VERSION
from serving.marketplace import SIZES, generate
from serving.training import train_bundle
from serving.user_state import UserState

NOW = 1_800_000_000.0


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    data = generate(SIZES["tiny"], seed=7, geographies={"us": 0.7, "eu": 0.3})
    out = tmp_path_factory.mktemp("bundle") / "b1"
    messages: list[str] = []
    result = train_bundle(data, out_dir=out, now=NOW, progress=messages.append)
    return data, result, messages


def test_bundle_has_every_file_and_the_manifest_lists_them(trained):
    _, result, _ = trained
    assert sorted(BUNDLE_FILES) == bundle_files(result.bundle_dir)
    assert sorted(result.manifest.files) == sorted(BUNDLE_FILES)
    assert (result.bundle_dir / "manifest.json").is_file()
    assert result.manifest.schema_version == SCHEMA_VERSION and result.manifest.created_at == NOW


def test_bundle_passes_verification_with_the_semantic_checks(trained):
    _, result, _ = trained
    manifest = verify_bundle(result.bundle_dir, supported_schema_versions={SCHEMA_VERSION}, semantic_checks=SEMANTIC_CHECKS)
    assert manifest.bundle_version == result.manifest.bundle_version


def test_watermark_is_before_the_evaluation_period(trained):
    data, result, _ = trained
    metrics = result.manifest.metrics
    assert data.start < result.manifest.data_watermark < metrics["cutoff"] < data.end
    assert metrics["label_start"] < metrics["cutoff"]
    assert metrics["train_events"] > 0 and metrics["eval_events"] > 0


def test_full_pipeline_beats_popularity_on_ndcg(trained):
    _, result, _ = trained
    methods = result.manifest.metrics["methods"]
    assert set(methods) == {"full pipeline", "ALS retrieval only", "segment lists", "popularity"}
    assert methods["full pipeline"]["ndcg_at_10"] > methods["popularity"]["ndcg_at_10"]
    assert result.ndcg_ratio > 1.0
    assert result.manifest.metrics["ndcg10_full_over_popularity"] == pytest.approx(result.ndcg_ratio, abs=1e-3)


def test_progress_is_reported(trained):
    _, _, messages = trained
    assert any("LightGBM" in m for m in messages) and any(m.startswith("evaluation") for m in messages)


def test_loaded_bundle_recommends_for_known_and_cold_users(trained):
    data, result, _ = trained
    bundle = LoadedBundle.load(result.bundle_dir)
    known = bundle.user_ids[0]
    attrs = next(u.attrs() for u in data.users if u.user_id == known)
    recs = bundle.recommend(user_id=known, state=UserState(), attrs=attrs, now=data.end, k=10)
    assert len(recs) == 10 and len({i for i, _ in recs}) == 10
    assert all(math.isfinite(s) for _, s in recs) and [s for _, s in recs] == sorted((s for _, s in recs), reverse=True)
    cold = bundle.recommend(user_id=None, state=UserState(), attrs={"geo": "eu"}, now=data.end, k=5)
    assert len(cold) == 5 and all(i in bundle.items.row_of for i, _ in cold)
    assert bundle.segment_of({"geo": "eu", "device": "app", "price_band": "low"}) in ("eu|app|low", "eu")
    assert bundle.user_embedding("nobody", UserState()) is None


def test_user_without_embedding_gets_mean_of_recent_items(trained):
    _, result, _ = trained
    bundle = LoadedBundle.load(result.bundle_dir)
    recent = bundle.items.ids[:3]
    vec = bundle.user_embedding("nobody", UserState(recent_items=tuple(recent)))
    assert np.allclose(vec, bundle.items.embeddings[:3].mean(axis=0))


def test_refuses_a_non_empty_output_directory(tmp_path):
    (tmp_path / "something").write_text("x")
    data = generate(SIZES["tiny"], seed=1, geographies={"us": 1.0})
    with pytest.raises(InputError) as info:
        train_bundle(data, out_dir=tmp_path, now=NOW)
    assert info.value.field == "out"


@pytest.mark.parametrize("attrs, keys", [
    ({"geo": "us", "device": "app", "price_band": "low"}, ("us|app|low", "us", "all")),
    ({"geo": "eu"}, ("eu", "all")),
    ({}, ("all",)),
])
def test_segment_keys(attrs, keys):
    assert segment_keys(attrs) == keys


# --- indexing -----------------------------------------------------------------------------------

@pytest.mark.parametrize("n, kind", [(0, "flat"), (1000, "flat"), (1001, "hnsw"), (500_000, "hnsw"), (500_001, "ivf")])
def test_index_kind_by_size(n, kind):
    assert indexing.choose_kind(n) == kind


@pytest.mark.parametrize("kind", indexing.KINDS)
def test_every_index_kind_finds_the_true_neighbours(kind, tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3000, 16)).astype(np.float32)
    q = rng.normal(size=(20, 16)).astype(np.float32)
    index = indexing.build_index(x, kind=kind)
    indexing.write_index(index, tmp_path / "i.index")
    _, rows = indexing.search(indexing.read_index(tmp_path / "i.index"), q, 10)
    exact = np.argsort(-(q @ x.T), axis=1)[:, :10]
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(rows, exact)])
    assert recall == 1.0 if kind == "flat" else recall >= 0.8


def test_unknown_index_kind_is_an_input_error():
    with pytest.raises(InputError):
        indexing.build_index(np.zeros((3, 2), np.float32), kind="lsh")


# --- evaluation metrics ---------------------------------------------------------------------------

@pytest.mark.parametrize("ranked, rel, expected", [
    (["a", "b"], {"a": 5.0}, 1.0),
    (["b", "a"], {"a": 5.0}, 1.0 / math.log2(3)),
    (["x", "y"], {"a": 1.0}, 0.0),
    (["a", "b"], {"a": 1.0, "b": 5.0}, (1.0 + 5.0 / math.log2(3)) / (5.0 + 1.0 / math.log2(3))),
    ([], {}, 0.0),
])
def test_ndcg_table(ranked, rel, expected):
    assert ndcg_at_k(ranked, rel, 10) == pytest.approx(expected)


@given(ranked=st.lists(st.sampled_from("abcdefghij"), unique=True),
       rel=st.dictionaries(st.sampled_from("abcdefghijk"), st.sampled_from([1.0, 3.0, 5.0])))
def test_metrics_are_bounded_and_ideal_order_is_perfect(ranked, rel):
    assert 0.0 <= ndcg_at_k(ranked, rel, 10) <= 1.0 + 1e-9
    assert hit_at_k(ranked, rel, 10) in (0.0, 1.0)
    assert 0.0 <= recall_at_k(ranked, rel, 100) <= 1.0
    if rel:
        ideal = sorted(rel, key=lambda i: -rel[i])
        assert ndcg_at_k(ideal, rel, 10) == pytest.approx(1.0)


def test_evaluate_and_relevance():
    truth = relevance_by_user([("u1", "a", 1.0), ("u1", "a", 5.0), ("u2", "b", 3.0), ("u3", "c", 0.0)])
    assert truth == {"u1": {"a": 5.0}, "u2": {"b": 3.0}}
    m = evaluate(top10={"u1": ["a"], "u2": ["x"]}, top100={"u1": ["a"], "u2": ["x", "b"]}, truth=truth, n_items=10)
    assert (m.ndcg_at_10, m.hr_at_10, m.recall_at_100, m.coverage, m.users) == (0.5, 0.5, 1.0, 0.2, 2)
    assert ratio(2.0, 1.0) == 2.0 and ratio(0.0, 0.0) == 1.0 and ratio(1.0, 0.0) == math.inf
