"""Game-day pieces without the real stack: dry run, state file and abort, RPO evidence from a real
Redis, the sampler, the load thread, and one short end-to-end run against the fake stack."""
from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import redis

from chaos import actions, gameday
from chaos import fault_registry
from contracts.store_keys import TABLE_KEY
from chaos.gameday_io import DurableSnapshot, acked_events, claim_state, stream_event_ids
from chaos.load import LoadSpec, read_records
from chaos.measurement import compute_rpo
from chaos.sampling import Sampler, SamplerSettings, weights_of
from failover.control_stores import store_from_url
from regions import stack
from regions.errors import InputError
from regions.processes import wait_until
from tests.chaos.fake_stack import FakeHttp, Ports, redis_sleeper, sleeper, start_stack, store_with_bundle, write_topology


@pytest.fixture
def ports() -> Ports:
    return Ports()


@pytest.fixture
def setup(tmp_path: Path, ports: Ports) -> Iterator[tuple[Path, Path]]:
    state_dir = tmp_path / "stack"
    state_dir.mkdir()
    topology = write_topology(tmp_path / "topology.toml", ports)
    yield state_dir, topology
    stack.down(state_dir=state_dir)


def _conf(state_dir: Path, topology: Path) -> dict[str, str]:
    return {"state_dir": str(state_dir), "topology": str(topology)}


@pytest.mark.parametrize("name", ["region-loss", "corrupted-artifact", "controller-loss", "region-partition"])
def test_dry_run_touches_nothing(setup: tuple[Path, Path], tmp_path: Path, name: str) -> None:
    state_dir, topology = setup
    state = start_stack(state_dir, [redis_sleeper("us-east", state_dir), sleeper("cell-us-east", "cell", "us-east"),
                                    sleeper("controller-a", "controller"), sleeper("controller-b", "controller")])
    store = store_with_bundle(state_dir, tmp_path)
    files_before = {p: p.read_bytes() for p in state_dir.rglob("*") if p.is_file()}
    printed: list[str] = []

    result = gameday.run_gameday(name, state_dir=state_dir, topology=topology, load_rate=10, duration_s=5,
                                 out_dir=tmp_path / "out", dry=True, progress=printed.append)

    assert result["dry"] and result["plan"]
    assert {p: p.read_bytes() for p in state_dir.rglob("*") if p.is_file()} == files_before
    assert all(alive for _, alive in stack.ps(state_dir=state_dir))
    assert not (tmp_path / "out").exists() and not (state_dir / gameday.STATE_FILE).exists()
    assert store.current() == "20260101T000000Z-good0001"
    text = "\n".join(printed)
    if name == "region-loss":
        assert f"cell-us-east (pid {state.processes['cell-us-east'].pid}, running)" in text
        assert "kill_region(region='us-east')" in text
    if name == "controller-loss":
        assert "controller-a (pid" in text and "controller-b (pid" in text
    if name == "corrupted-artifact":
        assert "current bundle 20260101T000000Z-good0001" in text


def test_unknown_experiment_names_the_known_ones() -> None:
    with pytest.raises(InputError, match="region-loss"):
        gameday.load_experiment("meteor-strike")


@pytest.mark.parametrize("runs, expected", [
    ([], None),
    ([{"activity": {"type": "probe"}, "output": {"at": 1.0}}, {"activity": {"type": "action"}, "output": {"at": 5.0}},
      {"activity": {"type": "action"}, "output": {"at": 9.0}}], 5.0),
    ([{"activity": {"type": "action"}, "output": None}, {"activity": {"type": "action"}, "output": {"at": 7}}], 7.0),
])
def test_fault_time_is_the_first_action_at(runs: list[dict[str, Any]], expected: float | None) -> None:
    assert gameday.first_action_at({"run": runs}) == expected


def test_lost_region_is_named_by_kill_region_only() -> None:
    assert gameday.lost_region_of(gameday.load_experiment("region-loss")) == "us-east"
    assert gameday.lost_region_of(gameday.load_experiment("feature-store-outage")) is None


def _sleep() -> subprocess.Popen[bytes]:
    """`sleep 1000`, returned once it runs that command (so that its /proc cmdline is the recorded argv)."""
    proc = subprocess.Popen(["sleep", "1000"])
    wait_until(lambda: Path(f"/proc/{proc.pid}/cmdline").read_bytes() == b"sleep\x001000\x00", timeout=10, what="sleep")
    return proc


def test_state_file_refuses_a_second_running_game_day_and_replaces_a_dead_one(tmp_path: Path) -> None:
    path = tmp_path / gameday.STATE_FILE
    proc = _sleep()
    try:
        path.write_text(json.dumps({"pid": proc.pid, "argv": ["sleep", "1000"], "experiment": "region-loss"}))
        with pytest.raises(InputError, match="is running"):
            claim_state(path, experiment="stale-features", out_dir=tmp_path, topology="")
    finally:
        proc.kill()
        proc.wait()
    info = claim_state(path, experiment="stale-features", out_dir=tmp_path, topology="")
    assert json.loads(path.read_text())["experiment"] == "stale-features" == info["experiment"]


def _updater_running(state_dir: Path, region: str) -> bool:
    return stack.is_running(stack.StackState.load(state_dir).processes[f"feature-updater-{region}"])


def test_abort_signals_the_game_day_and_plays_its_rollbacks(setup: tuple[Path, Path]) -> None:
    state_dir, topology = setup
    start_stack(state_dir, [sleeper("feature-updater-us-east", "feature-updater", "us-east")])
    actions.stop_feature_updater("us-east", configuration=_conf(state_dir, topology))
    pretend = _sleep()  # stands in for the game-day process
    (state_dir / gameday.STATE_FILE).write_text(json.dumps(
        {"pid": pretend.pid, "argv": ["sleep", "1000"], "experiment": "stale-features", "topology": str(topology)}))

    assert set(fault_registry.pending(state_dir)) == {"feature-updater:us-east"}
    assert not _updater_running(state_dir, "us-east")
    result = gameday.abort_gameday(state_dir=state_dir, timeout_s=10, progress=lambda _m: None)

    assert result["signalled"] and pretend.poll() is not None, result
    assert result["rollbacks"] == [{"name": "feature-updater:us-east", "status": "succeeded"}], result
    assert _updater_running(state_dir, "us-east")
    assert not (state_dir / gameday.STATE_FILE).exists() and fault_registry.pending(state_dir) == {}
    with pytest.raises(InputError, match="no game day is running"):
        gameday.abort_gameday(state_dir=state_dir)


def test_abort_removes_the_faults_of_a_run_it_did_not_start(setup: tuple[Path, Path]) -> None:
    """No game-day state file (a bare `chaos run`, or an action called by hand): the registry knows."""
    state_dir, topology = setup
    start_stack(state_dir, [sleeper("feature-updater-us-west", "feature-updater", "us-west")])
    actions.stop_feature_updater("us-west", configuration=_conf(state_dir, topology))
    result = gameday.abort_gameday(state_dir=state_dir, timeout_s=10, progress=lambda _m: None)
    assert not result["signalled"] and result["rollbacks"] == [{"name": "feature-updater:us-west", "status": "succeeded"}]
    assert _updater_running(state_dir, "us-west")


def test_rpo_from_a_survivors_replica_stream_by_event_id(tmp_path: Path, redis_factory: Callable[..., Any]) -> None:
    _, port = redis_factory("us-west")
    ports = Ports()
    ports.redis["us-west"] = port
    ctx = actions.context_from({"state_dir": str(tmp_path), "topology": str(write_topology(tmp_path / "t.toml", ports))})
    survivor = redis.Redis(port=port, decode_responses=True)
    survivor.xadd("log:replica:us-east", {"event_id": "e3"}, id="1000-0")  # an earlier game day: not read
    since = time.time()
    for n in range(7):
        survivor.xadd("log:replica:us-east", {"event_id": f"e{n}"})
    survivor.xadd("log:events", {"event_id": "e8"})  # the survivor's own log is no copy of us-east's
    records = [{"t": since + i, "done": since + i + 0.01, "kind": "events", "status": 200, "ok": True,
                "stored_by": {"us-east": [f"e{3 * i}", f"e{3 * i + 1}", f"e{3 * i + 2}"]}} for i in range(4)]
    records.append({"t": since + 5, "done": since + 5.01, "kind": "events", "status": 503, "ok": False, "stored_by": {}})
    records.append({"t": since + 6, "done": since + 6.01, "kind": "events", "status": 200, "ok": True,
                    "stored_by": {"us-west": ["w1"]}})

    snapshot = DurableSnapshot(ctx, lost_region="us-east", since=since)
    snapshot.take()
    rpo = compute_rpo(acked_events(records), lost_region="us-east", fault_at=since + 10, durable_ids=snapshot.ids)

    assert snapshot.ids == {f"e{n}" for n in range(7)}
    assert (rpo.acknowledged, rpo.lost) == (12, 5)  # e7..e11 never reached us-west; e8 in its own log does not count
    assert list(rpo.lost_ids) == ["e7", "e8", "e9", "e10", "e11"]
    assert rpo.seconds == pytest.approx(10 - 2.01)  # e6, the newest with every earlier one durable, acked at +2.01 s
    assert stream_event_ids(survivor, "log:replica:us-east", since=0) == {f"e{n}" for n in range(7)} | {"e3"}


def test_sampler_is_bounded_and_records_failed_reads() -> None:
    calls = iter([{"weights": {"us": {"us-east": 50}}}, RuntimeError("store down"), {}, {}, {}])

    def read() -> dict[str, Any]:
        value = next(calls)
        if isinstance(value, Exception):
            raise value
        return value

    clock = iter(range(100))
    sampler = Sampler(read, settings=SamplerSettings(max_samples=3), clock=lambda: float(next(clock)))
    for _ in range(5):
        sampler.sample_once()
    assert [s["t"] for s in sampler.samples()] == [2.0, 3.0, 4.0] and sampler.dropped == 2
    sampler2 = Sampler(lambda: (_ for _ in ()).throw(RuntimeError("store down")))
    assert sampler2.sample_once()["error"] == "RuntimeError: store down"


def test_sampler_thread_stops() -> None:
    sampler = Sampler(lambda: {}, settings=SamplerSettings(interval_s=0.01)).start()
    while not sampler.samples():
        time.sleep(0.01)
    sampler.stop()
    assert sampler.samples() and not sampler._thread.is_alive()  # type: ignore[union-attr]


@pytest.mark.parametrize("table, expected", [
    ({"geos": {"us": {"regions": {"us-east": 0, "us-west": 100}}}}, {"us": {"us-east": 0.0, "us-west": 100.0}}),
    ({"version": 1}, {}),
    ({"geos": {"eu": {"regions": {"us-east": "x"}}}}, {"eu": {}}),
])
def test_weights_of_a_routing_table(table: dict[str, Any], expected: dict[str, Any]) -> None:
    assert weights_of(table) == expected


def test_load_run_can_be_cancelled(tmp_path: Path, ports: Ports) -> None:
    with FakeHttp(ports.edge):
        spec = LoadSpec(base_url=f"http://127.0.0.1:{ports.edge}", rate=50, duration_s=60, users=["us-1"], items=["i1"])
        load = gameday.LoadRun(spec, tmp_path / "load.jsonl", lambda _m: None).start()
        while not (tmp_path / "load.jsonl").exists():
            time.sleep(0.01)
        load.cancel()
        load.join(timeout=30)
    assert not load._thread.is_alive() and load.error is None and load.result is None


def test_a_short_game_day_end_to_end_against_the_fake_stack(setup: tuple[Path, Path], tmp_path: Path, ports: Ports,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    state_dir, topology = setup
    store_with_bundle(state_dir, tmp_path)
    start_stack(state_dir, [sleeper("feature-updater-us-east", "feature-updater", "us-east")])
    experiment = json.loads((gameday.EXPERIMENTS_DIR / "stale-features.json").read_text())
    experiment["method"] = [a for a in experiment["method"] if a["provider"]["func"] != "log_events"]  # no cell here
    for activity in experiment["method"]:
        activity.pop("pauses", None)
    hypothesis = experiment["steady-state-hypothesis"]
    # the fake stack has no cell to read freshness from: the expectation is tested against real servers
    hypothesis["probes"] = [p for p in hypothesis["probes"] if p["provider"]["module"] != "chaos.expectations"]
    experiments = tmp_path / "experiments"
    experiments.mkdir()
    (experiments / "quick-stale-features.json").write_text(json.dumps(experiment))
    monkeypatch.setattr(gameday, "EXPERIMENTS_DIR", experiments)
    with store_from_url(stack.stack_urls(state_dir).control_store) as store:
        store.put(TABLE_KEY, json.dumps({"version": 1, "geos": {"us": {"regions": {"us-east": 50, "us-west": 50}}}}))

    with FakeHttp(ports.edge):
        report = gameday.run_gameday("quick-stale-features", state_dir=state_dir, topology=topology, load_rate=20, duration_s=3,
                                     out_dir=tmp_path / "out", progress=lambda _m: None)

    journal = json.loads((tmp_path / "out" / "journal.json").read_text())
    assert journal["status"] == "completed" and journal["rto"]["measured"] is False and journal["rpo"] is None
    assert report["invalid_reasons"] == []
    statuses = {v["name"]: v["status"] for v in report["verdicts"] if v["kind"] == "requirement"}
    assert statuses["availability RTO"] == "not measured", "3 s of load measure no RTO"
    # the fake stack has no Redis: the closing residency audit cannot run, which fails the game day
    assert statuses["residency audit"] == "fail" and report["verdict"] == "fail"
    assert all("Redis not audited" in e for e in report["residency"]["errors"]), report["residency"]
    assert report["load"]["valid"] and report["load"]["achieved_rate"] > 19.6
    assert report["fault_at"] == journal["run"][0]["output"]["at"]
    assert {p.name for p in (tmp_path / "out").iterdir()} >= {"load.jsonl", "report.json", "report.md", "report.png"}
    assert len(read_records(tmp_path / "out" / "load.jsonl")) == report["load"]["requests"] > 0
    assert any(s.get("weights") == {"us": {"us-east": 50.0, "us-west": 50.0}} for s in report["samples"])
    assert _updater_running(state_dir, "us-east")  # the rollback restored it
    assert fault_registry.pending(state_dir) == {}
    assert not (state_dir / gameday.STATE_FILE).exists()


def test_a_stack_that_never_settles_makes_the_game_day_invalid_with_the_reason(
        setup: tuple[Path, Path], tmp_path: Path, ports: Ports, monkeypatch: pytest.MonkeyPatch) -> None:
    """The settle wait after the warm-up gives up at its bound; the hypothesis (every region healthy
    and weighted) then fails before the method, nothing is injected, and the verdict says why."""
    state_dir, topology = setup
    store_with_bundle(state_dir, tmp_path)
    (state_dir / "tokens.json").write_text(json.dumps({"chaos-token": "chaos"}))
    experiment = json.loads((gameday.EXPERIMENTS_DIR / "region-partition.json").read_text())
    experiments = tmp_path / "experiments"
    experiments.mkdir()
    (experiments / "unsettled.json").write_text(json.dumps(experiment))
    monkeypatch.setattr(gameday, "EXPERIMENTS_DIR", experiments)
    monkeypatch.setattr(gameday, "SETTLE_S", 1.5)
    monkeypatch.setattr(gameday, "SETTLE_LEAVES_S", 1.0)
    with store_from_url(stack.stack_urls(state_dir).control_store) as store:
        store.put(TABLE_KEY, json.dumps({"version": 1, "geos": {"us": {"regions": {"us-east": 50, "us-west": 50}},
                                                                 "eu": {"regions": {"eu-west": 100}}}}))
        for region, state in (("us-east", "degraded"), ("us-west", "healthy"), ("eu-west", "healthy")):
            store.put(f"health/{region}", json.dumps({"state": state}))
    messages: list[str] = []
    with FakeHttp(ports.edge), FakeHttp(ports.controller) as controller:
        controller.status = {"us-east": {"state": "degraded"}, "us-west": {"state": "healthy"},
                             "eu-west": {"state": "healthy"}}
        report = gameday.run_gameday("unsettled", state_dir=state_dir, topology=topology, load_rate=20, duration_s=5,
                                     out_dir=tmp_path / "out", progress=messages.append, warmup_s=1.0)
    assert sum(1 for r in controller.requests if r[1] == "/v1/status") >= 2, "the settle wait polled the controller"
    assert any(m.startswith("the stack did not settle within 1.5 s") for m in messages), messages
    assert report["verdict"] == "invalid" and report["fault_at"] is None
    reason = next(r for r in report["invalid_reasons"] if r.startswith("the steady state before the method was not met"))
    assert "us-east is degraded with weight 50" in reason and "did not settle within 1.5 s" in reason, reason
    assert "'us-east': 'degraded'" in reason
    assert "no fault action ran" in report["invalid_reasons"]


def test_cli_lists_experiments_and_dry_runs_without_touching(tmp_path: Path) -> None:
    import typer
    from typer.testing import CliRunner

    from regionctl import chaos_cmds

    app = typer.Typer()
    chaos_cmds.register(app)
    runner = CliRunner()
    listed = runner.invoke(app, ["gameday", "list", "--state-dir", str(tmp_path / "s")])
    assert listed.exit_code == 0 and "region-loss" in listed.output
    dry = runner.invoke(app, ["gameday", "stale-features", "--dry", "--state-dir", str(tmp_path / "s")])
    assert dry.exit_code == 0 and "would run stop_feature_updater(region='us-east')" in dry.output
    assert not (tmp_path / "s").exists()
    aborted = runner.invoke(app, ["gameday", "abort", "--state-dir", str(tmp_path / "s")])
    assert isinstance(aborted.exception, InputError)


def test_the_fault_registry_keeps_what_it_could_not_remove(tmp_path: Path) -> None:
    fault_registry.record(tmp_path, "cell:us-east", undo="not_an_action", arguments={"region": "us-east"}, what="x")
    fault_registry.record(tmp_path, "region:us-west", undo="restore_region", arguments={"region": "us-west"}, what="kill_region")
    assert set(fault_registry.pending(tmp_path)) == {"cell:us-east", "region:us-west"}
    done = fault_registry.clear_all(tmp_path, configuration={"state_dir": str(tmp_path)}, progress=lambda _m: None)
    # restore_region has nothing to restart in an empty stack: it succeeds (undo actions are idempotent)
    assert {d["key"]: d["status"] for d in done} == {"cell:us-east": "failed", "region:us-west": "succeeded"}
    assert set(fault_registry.pending(tmp_path)) == {"cell:us-east"}  # what could not be removed stays registered
    fault_registry.forget(tmp_path, "cell:us-east")
    assert fault_registry.pending(tmp_path) == {}


def test_tolerated_failures_is_the_binomial_bound_of_a_999_success_rate() -> None:
    """P(X > 2 | n=400, p=0.001) = 0.8 % < 1 %, P(X > 1) = 6 %: 2 tolerated; none of 10 (P(X > 0) = 1 %)."""
    from tests.chaos.gameday_stack import tolerated_failures

    assert tolerated_failures(400) == 2 and tolerated_failures(10) == 0 and tolerated_failures(1000) == 4
    assert tolerated_failures(400, success=0.99) > tolerated_failures(400)
    assert tolerated_failures(400, confidence=0.5) == 0


def test_the_window_bound_fails_a_region_whose_calls_were_not_cut() -> None:
    """2 failures in 400 are within what 99.9 % gives; a hung region whose calls the edge did not cut
    fails a share of the window (here 190 of 400), and 3 of 400 are beyond the bound already."""
    from tests.chaos.gameday_stack import failures_beyond_bound

    assert failures_beyond_bound({"requests": 400, "success_rate": 398 / 400}) is None
    assert "3 of 400 requests failed" in (failures_beyond_bound({"requests": 400, "success_rate": 397 / 400}) or "")
    assert "190 of 400" in (failures_beyond_bound({"requests": 400, "success_rate": 210 / 400}) or "")


def test_an_edge_that_waits_for_the_slow_cell_is_caught() -> None:
    """Reads cut at the 150 ms deadline, one stalled to 211 ms (CI): no wait. An edge that waits for
    the 300-800 ms cell: every read 300 ms or more; an edge that cut late: a median past 180 ms."""
    from tests.chaos.gameday_stack import waits_on_slow_cell

    cut = [148.0, 150.0, 150.0, 151.0, 152.0, 211.0]
    assert waits_on_slow_cell(cut, deadline_ms=150.0, slow_low_ms=300.0) == []
    waited = waits_on_slow_cell([310.0, 450.0, 620.0, 790.0], deadline_ms=150.0, slow_low_ms=300.0)
    assert len(waited) == 2 and "the edge waited for its answer" in waited[1]
    late = waits_on_slow_cell([190.0, 200.0, 210.0], deadline_ms=150.0, slow_low_ms=300.0)
    assert late == ["the median read took 200 ms, over the 150 ms deadline + 30 ms"]
    assert waits_on_slow_cell([], deadline_ms=150.0, slow_low_ms=300.0) == ["no read tried the slow cell"]


def test_a_rerun_is_only_for_a_premise_that_failed_and_a_failed_fault_expectation_still_fails() -> None:
    """judged_gameday runs again only a game day that injected nothing (the steady state before was
    not met); one whose hypothesis after the fault failed is a verdict, never run again. after_held
    excuses only the probes it is told to: the fault's own expectation failing still fails it."""
    from tests.chaos.gameday_stack import LATENCY_PROBE, after_held, premise_failed

    nothing_injected = {"hypothesis": {"before": False, "after": None, "violations": ["before: homepage-p99-within-slo: 215"]},
                        "invalid_reasons": ["the steady state before the method was not met, so no fault was injected",
                                            "no fault action ran"]}
    failed_after = {"hypothesis": {"before": True, "after": False,
                                   "violations": ["after: slow-us-east-ejected-on-latency: {'verdict': 'violated'}"]},
                    "invalid_reasons": []}
    assert premise_failed(nothing_injected) and not premise_failed(failed_after)
    assert not after_held(failed_after, but=(LATENCY_PROBE,)) and not after_held(nothing_injected, but=(LATENCY_PROBE,))
    slow_only = {"hypothesis": {"before": True, "after": False, "violations": [f"after: {LATENCY_PROBE}: 215.0"]}}
    assert after_held(slow_only, but=(LATENCY_PROBE,)) and not after_held(slow_only)
