"""The slow bundle (serving.weak_bundle mode `slow`): it verifies, ranks in the same order, and
holds ten times the trees (the rollout game day's slow model)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from replication.verifying import verify_bundle
from serving.bundle import LoadedBundle
from serving.bundle_checks import SEMANTIC_CHECKS, golden_request_scores
from serving.features import SCHEMA_VERSION
from serving.weak_bundle import SLOW_FACTOR, weaken_bundle


def test_the_slow_bundle_verifies_and_keeps_the_order_with_ten_times_the_trees(tiny_geo_bundles: dict[str, Path],
                                                                               tmp_path: Path) -> None:
    src = tiny_geo_bundles["us"]
    manifest = weaken_bundle(src, tmp_path / "slow", mode="slow", version="slow-1")
    assert manifest.bundle_version == "slow-1"
    verify_bundle(tmp_path / "slow", supported_schema_versions={SCHEMA_VERSION}, semantic_checks=SEMANTIC_CHECKS)
    golden = json.loads((src / "golden.json").read_text())
    _, good = golden_request_scores(src, golden)
    _, slow = golden_request_scores(tmp_path / "slow", golden)
    np.testing.assert_allclose(slow, good * SLOW_FACTOR, rtol=1e-6, atol=1e-9)
    trees = lambda d: LoadedBundle.load(d).ranker.num_trees()  # noqa: E731
    assert trees(tmp_path / "slow") == SLOW_FACTOR * trees(src)
