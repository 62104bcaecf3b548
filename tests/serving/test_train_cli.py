"""`regionctl train --data NAME|PATH` as a process: the all/warm/cold table and the ratios."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _train(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "regionctl.main", "train", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=240)


def test_train_prints_full_pipeline_against_popularity_for_all_warm_and_cold_users_per_geography(tmp_path):
    done = _train("--data", "synthetic", "--size", "tiny", "--max-users", "200", "--no-tombstones",
                  "--out", str(tmp_path / "b"))
    assert done.returncode == 0, done.stderr
    out = done.stdout
    for geo in ("us", "eu"):
        assert f"[{geo}] NDCG@10 full pipeline / {geo} popularity: all" in out and " warm " in out and " cold " in out
        assert f"[{geo}] ALS chosen on the validation split" in out
        section = out[out.index(f"geography {geo}: offline evaluation"):]
        for cohort in ("all", "warm", "cold"):
            assert any(line.count("│") > 3 and f"│ {cohort}" in line and "full pipeline" in line for line in section.splitlines()), (geo, cohort)
        bundle = tmp_path / "b" / geo
        assert (bundle / "seen_policy.json").is_file() and (bundle / "feature_stats.json").is_file()
        users = json.loads((bundle / "users.json").read_text())
        assert users and all(u["user_id"].startswith(f"{geo}-") for u in users)
    assert "recall@100 is measured on" in out


def test_an_unknown_data_source_is_refused_by_name(tmp_path):
    done = _train("--data", "no-such-set", "--out", str(tmp_path / "b"))
    assert done.returncode == 2
    assert "--data" in done.stderr and "movielens" in done.stderr
    assert not (tmp_path / "b").exists()
