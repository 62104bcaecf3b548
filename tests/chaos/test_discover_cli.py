"""`chaos discover chaostoolkit-shopnow --no-install` with the stock Chaos Toolkit CLI, run as a
subprocess outside the repository: it lists every action and probe of the extension."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from chaos import actions, expectations, net_actions, probes
from regions.topology import REPO_ROOT
from tests.browser import ARTIFACTS

CHAOS = Path(sys.executable).with_name("chaos")


def run_discover(distribution: str, out: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}  # this tree's `chaos` package, wherever pytest runs
    return subprocess.run([str(CHAOS), "--no-log-file", "discover", distribution, "--no-install",
                           "--discovery-path", str(out)], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120, check=False)


def test_chaos_discover_lists_every_action_and_probe(tmp_path: Path) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    out = ARTIFACTS / "chaos-discovery.json"  # kept: the stock CLI's output, for the record
    out.unlink(missing_ok=True)
    done = run_discover("chaostoolkit-shopnow", out, tmp_path)
    assert done.returncode == 0, (f"{done.stdout}\n{done.stderr}\n(is the extension installed? "
                                  "`make setup` runs pip install ./extensions/chaostoolkit-shopnow)")
    found = json.loads(out.read_text())
    assert found["extension"]["name"] == "shopnow-chaos"
    kinds = {a["name"]: a["type"] for a in found["activities"]}
    assert {n for n, t in kinds.items() if t == "action"} == set(actions.__all__) | set(net_actions.__all__)
    assert {n for n, t in kinds.items() if t == "probe"} == set(probes.__all__) | set(expectations.__all__)
    assert all(a["doc"] for a in found["activities"]), "every activity says what it does"
    kill = next(a for a in found["activities"] if a["name"] == "kill_region")
    assert kill["mod"] == "chaos.actions" and [arg["name"] for arg in kill["arguments"]][0] == "region"


def test_the_main_distribution_cannot_be_discovered_which_is_why_the_extension_exists(tmp_path: Path) -> None:
    done = run_discover("shopnow-regions", tmp_path / "d.json", tmp_path)
    # chaoslib maps the distribution to its first top-level package (capacity), which has no discover()
    assert "does not export a `discover` function" in done.stdout + done.stderr
    assert not (tmp_path / "d.json").exists()
