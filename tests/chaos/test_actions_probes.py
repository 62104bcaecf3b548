"""Actions and probes against a small real stack: `sleep` processes and a real redis-server recorded
in a StackState, a SQLite control store, a LocalArtifactStore and a fake HTTP cell/edge."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
import redis
from chaoslib.exceptions import ActivityFailed

from chaos import actions, probes
from contracts.store_keys import TABLE_KEY
from failover.control_stores import store_from_url
from regions import cpu_quota, stack
from replication.verifying import BundleRejected, verify_bundle
from tests.chaos.fake_stack import FakeHttp, Ports, redis_spec, sleeper, start_stack, store_with_bundle, write_topology


@pytest.fixture
def ports() -> Ports:
    return Ports()


@pytest.fixture
def conf(tmp_path: Path, ports: Ports) -> Iterator[dict[str, Any]]:
    state_dir = tmp_path / "stack"
    state_dir.mkdir()
    topology = write_topology(tmp_path / "topology.toml", ports)
    yield {"state_dir": str(state_dir), "topology": str(topology)}
    stack.down(state_dir=state_dir)


@pytest.fixture
def region_stack(conf: dict[str, Any], ports: Ports) -> stack.StackState:
    """us-east's processes (a real redis-server with AOF, `sleep` for the rest) and a us-west cell."""
    return start_stack(Path(conf["state_dir"]), [
        redis_spec("us-east", ports.redis["us-east"], Path(conf["state_dir"])),
        sleeper("cell-us-east", "cell", "us-east"), sleeper("replicator-us-east", "replicator", "us-east"),
        sleeper("feature-updater-us-east", "feature-updater", "us-east"), sleeper("cell-us-west", "cell", "us-west"),
    ])


def _running(state_dir: Path) -> dict[str, bool]:
    return {p.name: alive for p, alive in stack.ps(state_dir=state_dir)}


def test_kill_region_kills_every_process_of_the_region_and_restore_brings_them_back(
        conf: dict[str, Any], region_stack: stack.StackState, ports: Ports) -> None:
    state_dir = Path(conf["state_dir"])
    before = {n: p.pid for n, p in region_stack.processes.items()}
    redis.Redis(port=ports.redis["us-east"]).xadd("log:events", {"seq": "1"})

    killed = actions.kill_region("us-east", configuration=conf)

    assert isinstance(killed["at"], float)
    assert sorted(killed["killed"]) == ["cell-us-east", "feature-updater-us-east", "redis-us-east", "replicator-us-east"]
    assert killed["pids"]["cell-us-east"] == before["cell-us-east"]
    assert _running(state_dir) == {"redis-us-east": False, "cell-us-east": False, "replicator-us-east": False,
                                   "feature-updater-us-east": False, "cell-us-west": True}

    restored = actions.restore_region("us-east", configuration=conf)

    assert sorted(restored["restarted"]) == sorted(killed["killed"])
    assert all(_running(state_dir).values())
    assert restored["pids"]["cell-us-east"] != before["cell-us-east"]
    assert redis.Redis(port=ports.redis["us-east"]).xlen("log:events") == 1  # reloaded from its AOF


def test_feature_store_and_updater_actions_touch_only_their_process(conf: dict[str, Any], region_stack: stack.StackState) -> None:
    state_dir = Path(conf["state_dir"])
    assert actions.stop_feature_store("us-east", configuration=conf)["killed"] == ["redis-us-east"]
    assert actions.stop_feature_updater("us-east", configuration=conf)["killed"] == ["feature-updater-us-east"]
    assert _running(state_dir)["cell-us-east"] is True
    assert actions.restore_feature_store("us-east", configuration=conf)["restarted"] == ["redis-us-east"]
    assert actions.restore_feature_updater("us-east", configuration=conf)["restarted"] == ["feature-updater-us-east"]
    assert all(_running(state_dir).values())


@pytest.mark.parametrize("call", [
    lambda c: actions.kill_region("mars-north", configuration=c),
    lambda c: actions.kill_region("eu-west", configuration=c),  # nothing of eu-west is recorded
    lambda c: actions.kill_controller_leader(configuration=c),  # nobody holds the lease
    lambda c: actions.publish_corrupt_bundle(configuration=c),  # no store, no current bundle
    lambda c: actions.freeze_index("us-east", configuration=c),  # no tokens.json
])
def test_failures_raise_activity_failed_with_a_message(conf: dict[str, Any], region_stack: stack.StackState, call: Any) -> None:
    with pytest.raises(ActivityFailed) as err:
        call(conf)
    assert str(err.value)


def test_kill_controller_leader_kills_the_lease_holder_only(conf: dict[str, Any]) -> None:
    state_dir = Path(conf["state_dir"])
    start_stack(state_dir, [sleeper("controller-a", "controller"), sleeper("controller-b", "controller")])
    with store_from_url(stack.stack_urls(state_dir).control_store) as store:
        assert store.acquire_lease("controller", "controller-b", 60)

    result = actions.kill_controller_leader(configuration=conf)

    assert result["leader"] == "controller-b" and result["killed"] == ["controller-b"]
    assert _running(state_dir) == {"controller-a": True, "controller-b": False}
    assert actions.restore_controllers(configuration=conf)["restarted"] == ["controller-b"]
    assert all(_running(state_dir).values())


def test_corrupt_bundle_is_refused_by_verification_and_rollback_restores_the_good_one(conf: dict[str, Any], tmp_path: Path) -> None:
    store = store_with_bundle(Path(conf["state_dir"]), tmp_path)
    good = store.current()

    published = actions.publish_corrupt_bundle(configuration=conf)

    assert published["previous"] == good and store.current() == published["version"] != good
    with pytest.raises(BundleRejected) as err:
        verify_bundle(store.root / "bundles" / published["version"], supported_schema_versions={1})
    assert (err.value.file, err.value.check) == ("ranker.txt", "sha256")
    verify_bundle(store.root / "bundles" / good, supported_schema_versions={1})  # the good one is untouched

    restored = actions.restore_good_bundle(configuration=conf)
    assert restored["changed"] and restored["to"] == good and store.current() == good
    assert actions.restore_good_bundle(configuration=conf)["changed"] is False  # idempotent


def test_cell_fault_actions_send_the_chaos_token_and_the_fault(conf: dict[str, Any], ports: Ports) -> None:
    Path(conf["state_dir"], "tokens.json").write_text(json.dumps({"op-token": "operator", "chaos-token": "chaos"}))
    with FakeHttp(ports.http["us-east"]) as cell:
        slow = actions.inject_ranking_latency("us-east", latency_ms=250.0, configuration=conf)
        actions.clear_ranking_latency("us-east", configuration=conf)
        actions.freeze_index("us-east", configuration=conf)
        actions.unfreeze_index("us-east", configuration=conf)
    assert slow["faults"] == {"ranking_latency_ms": 250.0, "freeze_index": False} and "at" in slow
    assert [(m, p, b) for m, p, b, _ in cell.requests] == [
        ("POST", "/admin/faults", {"ranking_latency_ms": 250.0, "freeze_index": False}),
        ("DELETE", "/admin/faults", None),
        ("POST", "/admin/faults", {"ranking_latency_ms": 0.0, "freeze_index": True}),
        ("DELETE", "/admin/faults", None),
    ]
    assert {auth for *_, auth in cell.requests} == {"Bearer chaos-token"}


def test_hang_region_stops_every_process_of_the_region_and_resume_continues_them(
        conf: dict[str, Any], region_stack: stack.StackState, ports: Ports) -> None:
    from chaos import fault_registry
    from chaos.context import process_stopped

    state_dir = Path(conf["state_dir"])
    pids = {n: p.pid for n, p in region_stack.processes.items()}
    client = redis.Redis(port=ports.redis["us-east"], socket_timeout=0.3, socket_connect_timeout=0.3)
    try:
        hung = actions.hang_region("us-east", configuration=conf)
        assert sorted(hung["processes"]) == ["cell-us-east", "feature-updater-us-east", "redis-us-east",
                                             "replicator-us-east"] and hung["signal"] == "SIGSTOP"
        assert {n: process_stopped(pid) for n, pid in pids.items()} == {
            "redis-us-east": True, "cell-us-east": True, "replicator-us-east": True, "feature-updater-us-east": True,
            "cell-us-west": False}
        assert "hang:region:us-east" in fault_registry.pending(state_dir)
        with pytest.raises(redis.TimeoutError):  # the kernel accepts the connection; nothing answers
            client.ping()
    finally:
        resumed = actions.resume_region("us-east", configuration=conf)
    assert sorted(resumed["processes"]) == sorted(hung["processes"]) and resumed["signal"] == "SIGCONT"
    assert not any(process_stopped(pid) for pid in pids.values()) and all(_running(state_dir).values())
    assert client.ping() and fault_registry.pending(state_dir) == {}
    assert actions.resume_region("us-east", configuration=conf)["processes"], "idempotent"


def test_hang_feature_store_stops_redis_alone_and_abort_continues_it(
        conf: dict[str, Any], region_stack: stack.StackState, ports: Ports) -> None:
    from chaos import fault_registry
    from chaos.context import process_stopped

    state_dir = Path(conf["state_dir"])
    try:
        assert actions.hang_feature_store("us-east", configuration=conf)["processes"] == ["redis-us-east"]
        stopped = {n: process_stopped(p.pid) for n, p in region_stack.processes.items()}
        assert [n for n, s in stopped.items() if s] == ["redis-us-east"]
        done = fault_registry.clear_all(state_dir, configuration=conf, progress=lambda _m: None)
        assert [d["func"] for d in done] == ["resume_feature_store"]
    finally:
        actions.resume_feature_store("us-east", configuration=conf)
    assert not process_stopped(region_stack.processes["redis-us-east"].pid)
    assert redis.Redis(port=ports.redis["us-east"]).ping()


def test_hang_refuses_an_unknown_region_and_registers_nothing(conf: dict[str, Any], region_stack: stack.StackState) -> None:
    from chaos import fault_registry

    with pytest.raises(ActivityFailed, match="mars-north"):
        actions.hang_region("mars-north", configuration=conf)
    with pytest.raises(ActivityFailed, match="no running process of region eu-west"):
        actions.hang_feature_store("eu-west", configuration=conf)
    actions.resume_feature_store("eu-west", configuration=conf)  # the registry entry the refused hang left
    assert fault_registry.pending(Path(conf["state_dir"])) == {}


def test_answer_latency_action_sends_the_range_and_checks_it(conf: dict[str, Any], ports: Ports) -> None:
    Path(conf["state_dir"], "tokens.json").write_text(json.dumps({"chaos-token": "chaos"}))
    with FakeHttp(ports.http["us-east"]) as cell:
        slow = actions.inject_answer_latency("us-east", low_ms=300.0, high_ms=800.0, configuration=conf)
        actions.clear_answer_latency("us-east", configuration=conf)
    assert slow["faults"] == {"answer_latency_ms": [300.0, 800.0]}
    assert [(m, b) for m, _, b, _ in cell.requests] == [("POST", {"answer_latency_ms": [300.0, 800.0]}), ("DELETE", None)]
    with pytest.raises(ActivityFailed, match="low_ms <= high_ms"):
        actions.inject_answer_latency("us-east", low_ms=900.0, high_ms=800.0, configuration=conf)


def test_cell_fault_refused_by_the_cell_fails_the_activity(conf: dict[str, Any], ports: Ports) -> None:
    Path(conf["state_dir"], "tokens.json").write_text(json.dumps({"stale-token": "chaos"}))
    with FakeHttp(ports.http["us-east"]), pytest.raises(ActivityFailed, match="403"):
        actions.freeze_index("us-east", configuration=conf)


@pytest.mark.parametrize("items, expected", [(3, True), (0, False)])
def test_homepage_non_empty_through_the_edge(conf: dict[str, Any], ports: Ports, items: int, expected: bool) -> None:
    with FakeHttp(ports.edge, items=items) as edge:
        assert probes.homepage_non_empty(requests=4, configuration=conf) is expected
    assert len(edge.requests) == 4


def test_homepage_non_empty_is_false_when_the_edge_is_down(conf: dict[str, Any]) -> None:
    assert probes.homepage_non_empty(requests=2, configuration=conf) is False


def test_probes_over_a_load_file(tmp_path: Path) -> None:
    records = [{"t": i, "kind": "homepage", "ok": i % 10 != 0, "latency_ms": float(i), "tier": "full" if i % 2 else "segment",
                "slate_len": 8} for i in range(100)]
    path = tmp_path / "load.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in records))
    assert probes.success_rate(load_file=str(path)) == pytest.approx(0.9)
    assert probes.p99_latency(load_file=str(path)) == pytest.approx(98.01)
    mix = probes.tier_mix(load_file=str(path))
    assert set(mix) == set(probes.TIERS) and mix["error"] == pytest.approx(0.1) and sum(mix.values()) == pytest.approx(1.0)


def test_replication_lag_and_bundle_refused_from_cell_readyz(conf: dict[str, Any], ports: Ports) -> None:
    readyz = {"ready": True, "bundle_refused": {"version": "v2", "file": "ranker.txt", "check": "sha256", "at": 1.0},
              "replication": [{"source": "us-east", "destination": "us-west", "lag_s": 0.4, "lag_events": 3},
                              {"source": "us-west", "destination": "us-east", "lag_s": 1.5, "lag_events": 9}]}
    with FakeHttp(ports.http["us-west"], readyz=readyz), FakeHttp(ports.http["us-east"], readyz={"ready": True, "bundle_refused": None}):
        assert probes.replication_lag(source="us-east", configuration=conf) == pytest.approx(0.4)
        assert probes.replication_lag(configuration=conf) == pytest.approx(1.5)
        assert probes.bundle_refused("us-west", configuration=conf) is True
        assert probes.bundle_refused("us-east", configuration=conf) is False
        with pytest.raises(ActivityFailed):
            probes.replication_lag(source="eu-west", configuration=conf)


TABLE = {"version": 3, "geos": {"us": {"regions": {"us-east": 0, "us-west": 100}, "anonymous": False},
                                 "eu": {"regions": {"eu-west": 100}, "anonymous": False}}}


@pytest.mark.parametrize("doc, geo, region, expected", [
    (TABLE, "us", "us-west", 100.0),
    (TABLE, "us", "us-east", 0.0),
    ({"table": TABLE}, "eu", "eu-west", 100.0),
    ({"routing": TABLE}, "us", "us-west", 100.0),
    ({"weights": {"us": {"us-east": 30, "us-west": 70}}}, "us", "us-east", 30.0),
    ({"table_version": 3}, "us", "us-east", None),
])
def test_weight_in_reads_each_document_shape(doc: dict[str, Any], geo: str, region: str, expected: float | None) -> None:
    assert probes.weight_in(doc, geography=geo, region=region) == expected


def test_region_weight_from_the_routing_table(conf: dict[str, Any]) -> None:
    with store_from_url(stack.stack_urls(Path(conf["state_dir"])).control_store) as store:
        with pytest.raises(ActivityFailed, match=TABLE_KEY):
            probes.region_weight("us-east", configuration=conf)
        store.put(TABLE_KEY, json.dumps(TABLE))
    assert probes.region_weight("us-east", configuration=conf) == 0.0
    assert probes.region_weight("us-west", geography="us", configuration=conf) == 100.0


def _limited_for(conf: dict[str, Any], argv: tuple[str, ...], *, cores: float, seconds: float) -> dict[str, Any] | None:
    """us-west's cell running `argv`, limited to `cores` for `seconds`: survivor_cpu of the two outputs."""
    from chaos.overload import survivor_cpu

    start_stack(Path(conf["state_dir"]), [stack.ProcessSpec(name="cell-us-west", kind="cell", region="us-west", argv=argv)])
    limited = actions.limit_cell_cpu("us-west", cores=cores, configuration=conf)
    try:
        pid = next(iter(limited["pids"].values()))
        assert set(limited["cpu_s"]) == {pid}
        time.sleep(seconds)
    finally:
        restored = actions.restore_cell_cpu("us-west", configuration=conf)
    assert restored["released"] == [pid] and set(restored["cpu_s"]) == {pid}
    return survivor_cpu([{"activity": {"provider": {"func": "limit_cell_cpu"}}, "status": "succeeded", "output": limited}],
                        [{"activity": {"provider": {"func": "restore_cell_cpu"}}, "status": "succeeded", "output": restored}])


@pytest.mark.skipif(cpu_quota.unavailable() is not None, reason=f"{cpu_quota.unavailable()}")
def test_a_limited_cells_cpu_is_recorded_at_the_limit_and_at_the_restore(conf: dict[str, Any]) -> None:
    """limit_cell_cpu and restore_cell_cpu record a real busy cell's CPU seconds: the survivor's
    CPU while limited, as the overload game day reads it (chaos.overload.survivor_cpu): a busy loop
    at 0.2 of a core uses some of it and not more than the quota lets it (a generous margin: ticks)."""
    cpu = _limited_for(conf, (sys.executable, "-c", "while True: pass"), cores=0.2, seconds=1.5)
    assert cpu is not None and cpu["quota_cores"] == 0.2 and 0.0 < cpu["received_cores"] <= 0.2 * 1.5, cpu


@pytest.mark.skipif(cpu_quota.unavailable() is not None, reason=f"{cpu_quota.unavailable()}")
def test_a_survivor_that_did_not_use_its_quota_is_starved(conf: dict[str, Any]) -> None:
    """A cell that never used its half core (here one that sleeps: a real process that got no CPU
    while limited) is what a starved survivor looks like to the game day: chaos.overload.starved
    names it, and the overload game day is invalid (tests/chaos/test_overload_verdict.py)."""
    from chaos.overload import starved

    cpu = _limited_for(conf, ("sleep", "1000"), cores=0.5, seconds=1.0)
    assert cpu is not None and cpu["received_cores"] < 0.05, cpu
    reason = starved(cpu)
    assert reason is not None and "the survivor us-west used 0.00 of its 0.5 core(s)" in reason
