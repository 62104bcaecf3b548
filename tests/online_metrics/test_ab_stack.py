"""A/B test on real cells and redis-servers with reacting users (benchmarks.ab_bench): the
better bundle wins against its deliberately weaker copy, and identical bundles (A/A) never name a
winner at any look, which shows the verdict can fail."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.ab_bench import AbSettings, render, run_ab

pytestmark = pytest.mark.slow

SETTINGS = AbSettings(size="tiny", seed=1, rate=15.0, duration_s=20.0, look_every_s=5.0)
"""The tiny marketplace the session's bundles are trained on (tests/stack_helpers.py): 20 s of
load per experiment, 15 homepages/s per arm, a look every 5 s (4 looks, alpha 0.05 / 4 each)."""


def test_the_better_bundle_wins_and_identical_bundles_do_not(tiny_geo_bundles: dict[str, Path], tmp_path: Path) -> None:
    results = run_ab(tiny_geo_bundles["us"], settings=SETTINGS, work=tmp_path, modes=("inverted", "identical"), log=print)
    print("\n".join(render(results)))
    print(json.dumps({m: {k: r[k] for k in ("looks", "time_to_significance_s")} for m, r in results.items()}))
    for r in results.values():
        assert all(s["valid"] for s in r["load"]), r["load"]
        loads = [json.loads(line) for n in (0, 1) for line in (tmp_path / f"load-{n}.jsonl").read_text().splitlines()]
    better = results["inverted"]
    final = better["final"]
    assert final["verdict"] == "winner" and final["winner"] == better["arms"]["A"]["bundle_version"], final["reasons"]
    assert better["time_to_significance_s"] is not None and better["time_to_significance_s"] <= SETTINGS.duration_s
    assert final["a"]["ctr"] > final["b"]["ctr"]
    control = results["identical"]
    assert control["arms"]["A"]["bundle_version"] != control["arms"]["B"]["bundle_version"]
    assert not control["any_winner"], control["looks"]
    assert control["final"]["verdict"] == "no_difference", control["final"]["reasons"]
    # every homepage the last run's users were answered with is one impression the cells recorded
    answered = sum(1 for r in loads if r["kind"] == "homepage" and r["ok"])
    recorded = control["all_impressions"]
    assert abs(answered - recorded) <= 0.01 * answered, (answered, recorded)
    reacted = [r for r in loads if r.get("reaction")]
    assert reacted and all(r["ok"] for r in reacted)
