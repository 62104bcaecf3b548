"""`regionctl train --data NAME|PATH` as a process: the all/warm/cold table and the ratios."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _train(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "regionctl.main", "train", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=240)


def test_train_prints_full_pipeline_against_popularity_for_all_warm_and_cold_users(tmp_path):
    done = _train("--data", "synthetic", "--size", "tiny", "--max-users", "200", "--out", str(tmp_path / "b"))
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "NDCG@10 full pipeline / popularity: all" in out and " warm " in out and " cold " in out
    for cohort in ("all", "warm", "cold"):
        assert any(line.count("│") > 3 and f"│ {cohort}" in line and "full pipeline" in line for line in out.splitlines()), cohort
    assert "recall@100 is measured on" in out and "ALS chosen on the validation split" in out
    assert (tmp_path / "b" / "seen_policy.json").is_file() and (tmp_path / "b" / "feature_stats.json").is_file()


def test_an_unknown_data_source_is_refused_by_name(tmp_path):
    done = _train("--data", "no-such-set", "--out", str(tmp_path / "b"))
    assert done.returncode == 2
    assert "--data" in done.stderr and "movielens" in done.stderr
    assert not (tmp_path / "b").exists()
