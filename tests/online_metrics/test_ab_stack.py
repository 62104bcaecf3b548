"""The A/B benchmark's harness on real cells and redis-servers with reacting users
(benchmarks.ab_bench, two cells each serving one arm): the better bundle wins against its inverted
copy. The same on the product's experiments, and the A/A check that the verdict can fail, are
tests/test_experiment_stack.py."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.ab_bench import AbSettings, render, run_ab

pytestmark = pytest.mark.slow

SETTINGS = AbSettings(size="tiny", seed=1, rate=15.0, duration_s=20.0, look_every_s=5.0, alpha=0.01)
"""The tiny marketplace the session's bundles are trained on (tests/stack_helpers.py): 20 s of
load, 15 homepages/s per arm, a look every 5 s (4 looks, alpha 0.01 / 4 each)."""


def test_the_better_bundle_wins(tiny_geo_bundles: dict[str, Path], tmp_path: Path) -> None:
    results = run_ab(tiny_geo_bundles["us"], settings=SETTINGS, work=tmp_path, modes=("inverted",), log=print)
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
    # every homepage the users were answered with is one impression the cells recorded
    answered = sum(1 for r in loads if r["kind"] == "homepage" and r["ok"])
    recorded = better["all_impressions"]
    assert abs(answered - recorded) <= 0.01 * answered, (answered, recorded)
    reacted = [r for r in loads if r.get("reaction")]
    assert reacted and all(r["ok"] for r in reacted)
