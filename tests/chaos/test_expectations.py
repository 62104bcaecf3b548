"""The fault-aware steady-state probes (chaos.expectations) and the fault ledger. (The network faults
they read from the fault registry are tested against real namespaces in tests/chaos/test_netns_faults.py.)

Ground truth is real: a real redis-server (or a port nothing listens on), real processes in the
stack state, a real SQLite control store. The cell is the fake HTTP cell of tests.chaos.fake_stack
(its tier is set per test): what is tested here is the judgement, against the answers a cell gives.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from chaos import actions, expectations
from chaos import fault_registry
from contracts.store_keys import TABLE_KEY
from failover.control_stores import store_from_url
from regions import stack
from tests.chaos.fake_stack import FakeHttp, Ports, sleeper, start_stack, store_with_bundle, write_topology

OK = "ok"


@pytest.fixture
def ports() -> Ports:
    return Ports()


@pytest.fixture
def setup(tmp_path: Path, ports: Ports) -> Iterator[dict[str, str]]:
    state_dir = tmp_path / "stack"
    state_dir.mkdir()
    topology = write_topology(tmp_path / "topology.toml", ports)
    store_with_bundle(state_dir, tmp_path)
    yield {"state_dir": str(state_dir), "topology": str(topology)}
    stack.down(state_dir=state_dir)


def _put(conf: dict[str, str], key: str, value: Any) -> None:
    with store_from_url(stack.stack_urls(Path(conf["state_dir"])).control_store) as store:
        current = store.get(key)
        assert store.put(key, json.dumps(value), cas=current.version if current else 0)


# -- fault ledger -------------------------------------------------------------------------------
def test_cell_fault_actions_keep_the_ledger_and_clearing_empties_it(setup: dict[str, str], ports: Ports) -> None:
    state_dir = Path(setup["state_dir"])
    (state_dir / "tokens.json").write_text(json.dumps({"chaos-token": "chaos"}))
    with FakeHttp(ports.http["us-east"]):
        actions.inject_ranking_latency("us-east", latency_ms=300.0, configuration=setup)
        assert actions.fault_ledger(state_dir) == {"us-east": {"ranking_latency_ms": 300.0, "freeze_index": False}}
        actions.clear_ranking_latency("us-east", configuration=setup)
        assert actions.fault_ledger(state_dir) == {}
        actions.freeze_index("us-east", configuration=setup)
        assert actions.fault_ledger(state_dir)["us-east"]["freeze_index"] is True


def test_an_unreadable_ledger_reads_as_no_fault(tmp_path: Path) -> None:
    (tmp_path / actions.FAULT_LEDGER).write_text("{not json")
    assert actions.fault_ledger(tmp_path) == {}


# -- feature store ------------------------------------------------------------------------------
@pytest.mark.parametrize(("redis_up", "tier", "redis_ok", "verdict"), [
    (False, "segment", False, OK),
    (False, "popularity", False, OK),
    (False, "full", False, "violated"),        # no Redis, yet full ranking claimed
    (False, "segment", True, "violated"),      # /readyz hides the outage
    (True, "full", True, OK),
    (True, "full", False, "violated"),         # /readyz reports an outage that is not there
])
def test_feature_store_fallback(tmp_path: Path, ports: Ports, redis_factory: Callable[..., Any], redis_up: bool, tier: str,
                                redis_ok: bool, verdict: str) -> None:
    state_dir = tmp_path / "stack"
    state_dir.mkdir()
    if redis_up:
        redis_factory("us-east", port=ports.redis["us-east"])
    conf = {"state_dir": str(state_dir), "topology": str(write_topology(tmp_path / "t.toml", ports))}
    store_with_bundle(state_dir, tmp_path)
    with FakeHttp(ports.http["us-east"], readyz={"ready": True, "redis_ok": redis_ok}) as cell:
        cell.tier = tier
        found = expectations.feature_store_fallback("us-east", requests=3, configuration=conf)
    assert found["verdict"].startswith(verdict) and found["fault"] is (not redis_up)


def test_empty_answers_violate_every_expectation(setup: dict[str, str], ports: Ports) -> None:
    with FakeHttp(ports.http["us-east"], items=0, readyz={"ready": True, "redis_ok": False}) as cell:
        cell.tier = "segment"
        found = expectations.feature_store_fallback("us-east", requests=3, configuration=setup)
    assert found["verdict"].startswith("violated") and "empty" in found["verdict"]


# -- slow ranking and frozen index (cell faults from the ledger) -------------------------------------
@pytest.mark.parametrize(("injected", "tier", "verdict"), [
    (300.0, "cached", OK), (300.0, "segment", OK), (300.0, "full", "violated"),
    (0.0, "full", OK), (0.0, "segment", "violated"), (100.0, "full", OK),
])
def test_ranking_deadline_holds(setup: dict[str, str], ports: Ports, injected: float, tier: str, verdict: str) -> None:
    state_dir = Path(setup["state_dir"])
    actions.record_faults(state_dir, "us-east", {"ranking_latency_ms": injected, "freeze_index": False})
    with FakeHttp(ports.http["us-east"]) as cell:
        cell.tier = tier
        found = expectations.ranking_deadline_holds("us-east", deadline_ms=150.0, requests=5, configuration=setup)
    assert found["verdict"].startswith(verdict), found
    assert found["fault"] is (injected >= 150.0)


@pytest.mark.parametrize(("frozen", "reported", "verdict"), [
    (True, True, OK), (True, False, "violated"), (False, False, OK), (False, True, "violated"),
])
def test_index_freeze_contained(setup: dict[str, str], ports: Ports, frozen: bool, reported: bool, verdict: str) -> None:
    actions.record_faults(Path(setup["state_dir"]), "us-east", {"ranking_latency_ms": 0.0, "freeze_index": frozen})
    with FakeHttp(ports.http["us-east"], readyz={"ready": True, "index_frozen": reported, "bundle_version": "v1"}):
        found = expectations.index_freeze_contained("us-east", requests=3, configuration=setup)
    assert found["verdict"].startswith(verdict) and found["fault"] is frozen


# -- routed around (partition / loss) -------------------------------------------------------------
@pytest.mark.parametrize(("partitioned", "state", "weights", "verdict"), [
    (True, "unhealthy", {"us-east": 0, "us-west": 100}, OK),
    (True, "healthy", {"us-east": 50, "us-west": 50}, "violated"),
    (True, "unhealthy", {"us-east": 50, "us-west": 50}, "violated"),
    (False, "healthy", {"us-east": 50, "us-west": 50}, OK),
    (False, "unhealthy", {"us-east": 0, "us-west": 100}, "violated"),
])
def test_routed_around(setup: dict[str, str], ports: Ports, partitioned: bool, state: str, weights: dict[str, int],
                       verdict: str) -> None:
    start_stack(Path(setup["state_dir"]), [sleeper(f"cell-{r}", "cell", r) for r in ("us-east", "us-west", "eu-west")])
    _put(setup, TABLE_KEY, {"version": 2, "geos": {"us": {"regions": weights}, "eu": {"regions": {"eu-west": 100}}}})
    for region in ("us-west", "eu-west"):
        _put(setup, f"health/{region}", {"state": "healthy"})
    _put(setup, "health/us-east", {"state": state})
    if partitioned:  # what chaos.net_actions.cut_region registers before it drops the packets
        fault_registry.record(Path(setup["state_dir"]), "net:isolate:us-east", undo="heal_region",
                              arguments={"region": "us-east"}, what="us-east cut off from the hub")
    with FakeHttp(ports.http["us-east"]):
        found = expectations.routed_around("us-east", configuration=setup)
    assert found["verdict"].startswith(verdict), found
    assert found["fault"] is partitioned
