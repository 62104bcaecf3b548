"""Every experiment is valid for chaoslib and restores what it breaks; discovery lists every activity."""
from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

import pytest
from chaoslib.experiment import ensure_experiment_is_valid

import chaos
from chaos import actions, expectations, net_actions, probes
from chaos.gameday import EXPERIMENTS_DIR, experiment_names

REQUIRED = ["region-loss", "feature-store-outage", "corrupted-artifact", "stale-ann-index", "stale-features",
            "ranking-latency", "controller-loss", "feature-drift",
            "hung-region", "hung-redis", "slow-region"]
RESTORES = {
    "kill_region": "restore_region", "stop_feature_store": "restore_feature_store",
    "publish_corrupt_bundle": "restore_good_bundle", "freeze_index": "unfreeze_index",
    "stop_feature_updater": "restore_feature_updater", "inject_ranking_latency": "clear_ranking_latency",
    "kill_controller_leader": "restore_controllers",
    "inject_homepage_errors": "clear_cell_faults",
    "kill_etcd_leader": "restore_etcd", "kill_etcd_quorum": "restore_etcd",
    "limit_cell_cpu": "restore_cell_cpu",
    "reprice_items": "restore_item_prices",
    "hang_region": "resume_region", "hang_feature_store": "resume_feature_store",
    "inject_answer_latency": "clear_answer_latency",
}
NET_RESTORES = {
    "cut_region": "heal_region", "partition_regions": "heal_partition", "block_controller_path": "unblock_controller_path",
    "block_edge_path": "unblock_edge_path", "drop_packets": "stop_packet_loss",
}
FILES = sorted(EXPERIMENTS_DIR.glob("*.json"))


def _load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def test_every_required_failure_mode_has_an_experiment() -> None:
    assert set(REQUIRED) <= set(experiment_names())


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_experiment_is_valid_for_chaoslib(path: Path) -> None:
    ensure_experiment_is_valid(_load(path))


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_experiment_has_the_parts_a_game_day_needs(path: Path) -> None:
    exp = _load(path)
    assert exp["title"] and exp["description"] and exp["tags"]
    assert {"state_dir", "topology"} <= set(exp["configuration"])
    hypothesis = exp["steady-state-hypothesis"]["probes"]
    assert hypothesis and all("tolerance" in p for p in hypothesis)
    assert exp["method"][0]["type"] == "action", "the first method activity is the fault (its `at` is the fault time)"
    assert any(a["type"] == "probe" for a in exp["method"])
    for activity in exp["method"] + hypothesis + exp["rollbacks"]:
        assert activity["provider"]["type"] == "python"
        assert activity["provider"]["module"] in ("chaos.actions", "chaos.net_actions", "chaos.probes", "chaos.expectations")


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_steady_state_checks_the_behaviour_under_the_fault(path: Path) -> None:
    """The "after" hypothesis runs with the fault in place: one fault-aware expectation must be in it,
    with the tolerance that makes a violated expectation deviate."""
    exp_probes = _load(path)["steady-state-hypothesis"]["probes"]
    found = [p for p in exp_probes if p["provider"]["module"] == "chaos.expectations"]
    assert len(found) == 1, [p["name"] for p in exp_probes]
    assert found[0]["provider"]["func"] in expectations.__all__
    assert found[0]["tolerance"] == {"type": "regex", "target": "verdict", "pattern": "^ok$"}


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_rollbacks_restore_every_fault_of_the_method(path: Path) -> None:
    exp = _load(path)
    faults = [(a["provider"]["func"], a["provider"]["arguments"].get("region")) for a in exp["method"]
              if a["type"] == "action" and a["provider"]["func"] in RESTORES]
    rollbacks = {(a["provider"]["func"], a["provider"]["arguments"].get("region")) for a in exp["rollbacks"]}
    for func, region in faults:
        assert (RESTORES[func], region) in rollbacks
    # a network fault is removed by its remover with the same arguments (they name its tables)
    net = [(NET_RESTORES[a["provider"]["func"]], json.dumps(a["provider"]["arguments"], sort_keys=True))
           for a in exp["method"] if a["type"] == "action" and a["provider"]["func"] in NET_RESTORES]
    assert set(net) <= {(a["provider"]["func"], json.dumps(a["provider"]["arguments"], sort_keys=True)) for a in exp["rollbacks"]}


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_every_experiment_always_plays_its_rollbacks(path: Path) -> None:
    """chaostoolkit reads runtime.rollbacks.strategy from the experiment: Ctrl-C still restores."""
    assert _load(path)["runtime"]["rollbacks"]["strategy"] == "always"


def test_discover_lists_every_action_and_probe() -> None:
    discovery = chaos.discover(discover_system=False)
    found = {(a["type"], a["name"]) for a in discovery["activities"]}
    assert found == ({("action", n) for n in actions.__all__} | {("action", n) for n in net_actions.__all__}
                     | {("probe", n) for n in probes.__all__} | {("probe", n) for n in expectations.__all__})
    assert discovery["extension"] == {"name": "shopnow-chaos", "version": chaos.__version__}
    assert set(RESTORES) | set(RESTORES.values()) | {"log_events"} == set(actions.__all__)
    assert set(NET_RESTORES) | set(NET_RESTORES.values()) == set(net_actions.__all__)


@pytest.mark.parametrize("func", [getattr(actions, n) for n in actions.__all__] + [getattr(net_actions, n) for n in net_actions.__all__]
                         + [getattr(probes, n) for n in probes.__all__]
                         + [getattr(expectations, n) for n in expectations.__all__],
                         ids=lambda f: f.__name__)
def test_activities_follow_the_chaos_toolkit_conventions(func: Any) -> None:
    sig = inspect.signature(func)
    assert sig.parameters["configuration"].default is None and sig.parameters["secrets"].default is None
    assert sig.return_annotation is not inspect.Signature.empty
    assert all(p.annotation is not inspect.Parameter.empty for p in sig.parameters.values())
    assert inspect.getdoc(func)
