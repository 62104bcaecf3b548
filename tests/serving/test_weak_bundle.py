"""The deliberately weaker bundle (serving.weak_bundle): it verifies like any bundle, and it ranks worse."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from regions.errors import InputError
from replication.verifying import verify_bundle
from serving.bundle import LoadedBundle
from serving.bundle_checks import SEMANTIC_CHECKS, golden_request_scores
from serving.features import SCHEMA_VERSION
from serving.weak_bundle import weaken_bundle


@pytest.mark.parametrize("mode", ["inverted", "shuffled", "identical"])
def test_the_weaker_bundle_verifies_and_ranks_as_its_mode_says(tiny_geo_bundles: dict[str, Path], tmp_path: Path, mode: str) -> None:
    src = tiny_geo_bundles["us"]
    manifest = weaken_bundle(src, tmp_path / mode, mode=mode, seed=3)
    assert manifest.bundle_version.endswith(mode) and manifest.metrics["weakened"]["mode"] == mode
    verify_bundle(tmp_path / mode, supported_schema_versions={SCHEMA_VERSION}, semantic_checks=SEMANTIC_CHECKS)
    golden = json.loads((src / "golden.json").read_text())
    _, good = golden_request_scores(src, golden)
    _, weak = golden_request_scores(tmp_path / mode, golden)
    if mode == "inverted":
        np.testing.assert_allclose(weak, -good, rtol=1e-6, atol=1e-9)
    elif mode == "identical":
        np.testing.assert_allclose(weak, good)
    else:
        assert abs(np.corrcoef(weak, good)[0, 1]) < 0.9


def test_bad_arguments_are_refused_naming_the_field(tiny_geo_bundles: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(InputError, match="^mode:"):
        weaken_bundle(tiny_geo_bundles["us"], tmp_path / "x", mode="worse")
    with pytest.raises(InputError, match="^src:"):
        weaken_bundle(tmp_path, tmp_path / "y")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "f").write_text("x")
    with pytest.raises(InputError, match="^out:"):
        weaken_bundle(tiny_geo_bundles["us"], tmp_path / "full")


def test_regionctl_weaken_writes_the_copy_and_refuses_bad_input(tiny_geo_bundles: dict[str, Path], tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[2]

    def weaken(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "regionctl.main", "weaken", *args], cwd=repo, capture_output=True, text=True,
                              env={**os.environ, "PYTHONPATH": str(repo), "COLUMNS": "200"}, timeout=120)

    done = weaken(str(tiny_geo_bundles["us"]), str(tmp_path / "w"), "--mode", "shuffled")
    assert done.returncode == 0, done.stderr
    assert "-shuffled" in done.stdout and (tmp_path / "w" / "manifest.json").exists()
    refused = weaken(str(tiny_geo_bundles["us"]), str(tmp_path / "v"), "--mode", "worse")
    assert refused.returncode == 2 and "mode" in refused.stderr and not (tmp_path / "v").exists()
