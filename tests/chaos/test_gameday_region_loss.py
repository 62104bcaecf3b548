"""A short region-loss game day against the real local stack (about 90 s).

Real processes everywhere: redis-servers, cells, replicators, feature updaters, two controllers,
the edge; the Chaos Toolkit experiment chaos/experiments/region-loss.json SIGKILLs us-east; RTO
and RPO are computed from the load records and the survivors' replica streams. Asserts the
product's bounds and our targets: RTO <= 15 s, RPO <= 2 s, zero empty homepage slates, and that
acknowledged events were actually measured (a measurement over nothing proves nothing).
"""
from __future__ import annotations

from pathlib import Path

import pytest

from chaos.gameday import run_gameday
from regions import stack
from regionctl.stack_specs import stack_specs
from failover.control_api import ControlClient
from regions.topology import load_topology
from tests.stack_helpers import publish_geo_bundles, write_topology

pytestmark = pytest.mark.slow


def test_region_loss_game_day_meets_rto_rpo_and_never_empties_the_homepage(tmp_path: Path, tiny_geo_bundles: dict[str, Path]) -> None:
    topo_file = write_topology(tmp_path / "topology.toml")
    topo = load_topology(topo_file)
    state = tmp_path / "stack"
    urls = stack.stack_urls(state)
    publish_geo_bundles(tiny_geo_bundles, Path(urls.artifacts.removeprefix("file://")))
    try:
        stack.up(stack_specs(topo, state_dir=state, urls=urls), topology_path=topo_file, state_dir=state)
        ControlClient(f"http://127.0.0.1:{topo.settings.controller_port}", stack.token_for(state, "viewer")).wait_until_healthy()
        report = run_gameday("region-loss", state_dir=state, topology=topo_file, load_rate=40, duration_s=70,
                             out_dir=tmp_path / "gameday", progress=lambda m: None, warmup_s=15)
    finally:
        stack.down(state_dir=state)
    print(f"\nregion-loss game day: RTO {report['rto']}, RPO {report['rpo']}, load {report['load']}")
    assert report["status"] == "completed"
    assert report["rto"]["measured"] and report["rto"]["seconds"] <= 15.0
    assert report["rpo"]["acknowledged"] >= 20, "too few acknowledged events in the lost region to measure an RPO"
    assert report["rpo"]["seconds"] <= 2.0
    assert report["load"]["empty_slates"] == 0
    assert all(v["status"] == "pass" for v in report["verdicts"])
    for name in ("report.json", "report.md", "report.png", "journal.json", "load.jsonl"):
        assert (tmp_path / "gameday" / name).exists(), name
