"""The import-linter contract (.importlinter): it holds on the tree, and it catches a breach.

`make test` runs `lint-imports` before pytest; this test runs it too, then on a copy of the tree
with one forbidden import added per contract kind, so a contract that could never fail shows up.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).with_name("lint-imports")
PACKAGES = ("regions", "contracts", "capacity", "fallback_tiers", "replication", "online_metrics", "serving", "edge", "failover",
            "chaos", "benchmarks", "observability", "regionctl")

pytestmark = pytest.mark.skipif(not LINT.exists(), reason="import-linter is not installed (pip install -e '.[test]')")


def _lint(root: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([str(LINT), "--config", str(root / ".importlinter"), "--no-cache"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=120)


def test_the_contract_holds_on_the_tree() -> None:
    result = _lint(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(("module", "line", "contract"), [
    ("serving/embeddings.py", "import failover.controller", "Floors"),
    ("edge/routing.py", "import failover.steering", "Floors"),
    ("contracts/limits.py", "import serving", "Floors"),
    ("chaos/load.py", "import failover.controller", "Chaos drives the stack"),
    ("observability/promtool.py", "import chaos", "Floors"),
    ("replication/deletion.py", "import redis", "replication talks to Redis"),
    ("online_metrics/attribution.py", "import serving", "Floors"),
    ("online_metrics/significance.py", "import redis", "online_metrics reads the logs through replication"),
    ("regionctl/main.py", "import tests", "No module of the project imports the tests"),
])
def test_a_forbidden_import_breaks_the_contract(tmp_path: Path, module: str, line: str, contract: str) -> None:
    for name in (*PACKAGES, "tests"):
        shutil.copytree(REPO / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__", "*.json", "*.npy"))
    shutil.copy(REPO / ".importlinter", tmp_path / ".importlinter")
    target = tmp_path / module
    target.write_text(target.read_text() + f"\n{line}  # the breach under test\n")
    result = _lint(tmp_path)
    assert result.returncode != 0
    assert contract in result.stdout and "BROKEN" in result.stdout, result.stdout
