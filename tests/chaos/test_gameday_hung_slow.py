"""Game days of hung and slow regions against ONE real local stack shared by the module:

- hung-region: every process of us-east SIGSTOPped (ports still accept connections, nothing
  answers): the edge cuts each call at its deadline and retries, the controller's probes time out
  and demote us-east, availability holds; the rollback SIGCONTs every process;
- hung-redis: us-east's redis-server SIGSTOPped alone: the cell steps down its ladder within the
  deadline, readyz says redis_ok false;
- slow-region: us-east's answers 300-800 ms late while it stays up: ejected as a latency outlier,
  the edge never waits on it longer than its attempt budget;
- must fail: outlier detection switched off (REGIONCTL_CONTROLLER_OUTLIER_ENABLED=false) and
  us-east answering 300-450 ms late (under the 500 ms probe timeout, so error-based health sees
  nothing): us-east keeps its weight and the slow-region game day fails.

The hypothesis with the fault in place must hold but for its user-level latency probe (the p99, so
the slowest, of 50 homepages: one stall of the shared 2-core machine fails it; the slow region's
hypothesis once read 215 ms here): the fault's own expectation and the success probes must hold,
and hung-region's latency is judged from the load's hundreds of requests during the fault instead.

Short runs at 25 req/s (55 s for hung-region, whose RTO is measured; 36-45 s for the others, as
long as their experiment), the fault 10-20 s in. Processes are never left stopped: every
test SIGCONTs its region in `finally`, whatever the game day did.
"""
from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any, Iterator

import pytest

from chaos import actions, fault_registry, gameday
from chaos.context import REGION_KINDS, process_stopped
from failover.control_api import ControlClient
from regions import stack
from tests.chaos.gameday_stack import (
    FAILBACK_HOLD_S, LATENCY_PROBE, Stack, action, after_held, experiment_writer, failed_records, failures_beyond_bound,
    running_stack, verdict_of, waits_on_slow_cell,
)

pytestmark = pytest.mark.slow
SLO_P99_MS = "400"
"""The controllers' cell p99 SLO in this module (the product's default is 150 ms): on 2 shared cores
a tiny cell's own p99 reaches 100-150 ms and a degraded region fails the premise (every region
healthy). The latency-outlier threshold keeps the product's 180 ms: it is what these tests test."""
RATE, WARMUP_S = 25, 8
SETTLE_MAX_S = 9.0
"""After the warm-up a game day waits (load running) for every region healthy, but never into the
last SETTLE_LEAVES_S of the load (45 s by default, which these short runs leave no room for): here
the run's length less the warm-up and 9 s, so the wait gets about 9 s whatever the length. Under
load on the starved machine a region is often judged degraded for a few seconds; the experiment's
premise needs them healthy."""
HUNG_REGION_S = 55.0
"""hung-region's run: the fault 10-20 s in and one whole 30 s window after it (its availability RTO
must be measured, met or not)."""
FAULT_ONLY_S = 36.0
"""A run whose test asserts no RTO: the warm-up, the settle wait, the hypothesis, the fault's 12 s and
the hypothesis after it (about 32 s at most), with the load running throughout."""
SLOW_S = 45.0
"""The same for the slow-region runs, whose fault lasts 20 s."""


@pytest.fixture(scope="module")
def real_stack(tmp_path_factory: pytest.TempPathFactory, tiny_geo_bundles: dict[str, Path]) -> Iterator[Stack]:
    env = {"REGIONCTL_CONTROLLER_FAILBACK_HOLD_S": FAILBACK_HOLD_S, "REGIONCTL_CONTROLLER_SLO_P99_MS": SLO_P99_MS}
    with running_stack(tmp_path_factory.mktemp("hung-slow"), tiny_geo_bundles, env) as running:
        yield running


@pytest.fixture
def experiments(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    return experiment_writer(monkeypatch, tmp_path)


def _resume(real_stack: Stack, region: str) -> None:
    """SIGCONT every process of the region, whatever happened (a test never leaves one stopped)."""
    for proc in stack.select(stack.StackState.load(real_stack.state), region=region, kinds=REGION_KINDS):
        stack.signal_process(proc, signal.SIGCONT)


def _stopped(real_stack: Stack, region: str) -> list[str]:
    state = stack.StackState.load(real_stack.state)
    return [p.name for p in stack.select(state, region=region, kinds=REGION_KINDS) if process_stopped(p.pid)]


def _after(real_stack: Stack, out: str, probe: str) -> dict[str, Any]:
    """The output of the steady-state probe `probe` in the hypothesis checked with the fault in place."""
    journal = json.loads((real_stack.out(out) / "journal.json").read_text())
    runs = journal["steady_states"]["after"]["probes"]
    return next(r["output"] for r in runs if r["activity"]["name"] == probe)


def _reads(real_stack: Stack, out: str, since: float) -> list[dict[str, Any]]:
    lines = (real_stack.out(out) / "load.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] != "events" and r["t"] >= since]


def _run(real_stack: Stack, experiments: Any, name: str, base: str, pause: float | None, *, duration_s: float,
         **kwargs: Any) -> dict[str, Any]:
    """The game day, once every region is back at its full weight and healthy (the premise). With
    8 sessions sharing the 2 cores a region is sometimes judged degraded (a homepage served below
    full, a slow readyz) just as the experiment starts: it then injects nothing and is invalid;
    such a run is repeated once, and said so (Stack.judged_gameday)."""
    api = ControlClient(f"http://127.0.0.1:{real_stack.topology.settings.controller_port}",
                        stack.token_for(real_stack.state, "viewer"))
    exp = experiments(name, base, pause_after_fault=pause, **kwargs)

    def premise() -> None:
        real_stack.wait_full_weights()
        api.wait_until_healthy(timeout_s=120)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(gameday, "SETTLE_LEAVES_S", duration_s - WARMUP_S - SETTLE_MAX_S)
        return real_stack.judged_gameday(exp, name, prepare=premise, cleanup=lambda: _resume(real_stack, "us-east"),
                                         load_rate=RATE, duration_s=duration_s, warmup_s=WARMUP_S)


def _assert_served(real_stack: Stack, out: str, during: dict[str, Any]) -> None:
    """Success >= 99.9 % while the fault was in place, as far as the window's few hundred requests
    can tell (failures_beyond_bound); what failed is shown when it fails."""
    beyond = failures_beyond_bound(during)
    assert beyond is None, (beyond, during, failed_records(real_stack.out(out), start=during["start"], end=during["end"]))


def test_a_hung_region_is_cut_at_the_deadline_and_routed_around(real_stack: Stack, experiments: Any) -> None:
    report = _run(real_stack, experiments, "hung-region", "hung-region", 12, duration_s=HUNG_REGION_S)
    rto, edge = report["rto"], report["edge"]
    print(f"\nhung-region: RTO {rto}\nquality {report['quality_rto']}\nedge {edge}\nRPO {report['rpo']}\n"
          f"weights changed after {report['weights_changed_after_s']} s")
    assert not report["invalid_reasons"], report["invalid_reasons"]
    assert after_held(report, but=(LATENCY_PROBE,)), report["hypothesis"]
    seen = _after(real_stack, "hung-region", "routed-around-us-east")
    assert seen["hung"] and seen["state"] == "unhealthy" and seen["weights"] == {"us-east": 0, "us-west": 100}
    # While us-east hung, the requests were answered (99.9 %, as far as the window can tell) within
    # the SLO: the edge cut each call at its deadline. The availability RTO's 30 s window also
    # covers what follows the rollback, where stalls of the whole shared 2-core machine were seen:
    # it is printed, and docs/gamedays.md has it.
    during = report["during_fault"]
    _assert_served(real_stack, "hung-region", during)
    assert during["p99_ms"] <= 180.0 and during["empty_slates"] == 0, during
    assert rto["status"] in ("met", "not met") and report["load"]["empty_slates"] == 0
    assert report["weights_changed_after_s"] is not None
    assert edge["first_attempt_failures"] > 0, "us-east's first attempts timed out before the controller moved it"
    assert report["rpo"]["status"] == "measured"
    assert not _stopped(real_stack, "us-east") and fault_registry.pending(real_stack.state) == {}


def test_a_hung_redis_pushes_the_cell_down_its_ladder_within_the_deadline(real_stack: Stack, experiments: Any) -> None:
    report = _run(real_stack, experiments, "hung-redis", "hung-redis", 12, duration_s=FAULT_ONLY_S)
    print(f"\nhung-redis: RTO {report['rto']}\nquality {report['quality_rto']}\nedge {report['edge']}\n"
          f"degradation {report['degradation']}")
    assert not report["invalid_reasons"] and after_held(report, but=(LATENCY_PROBE,)), (report["invalid_reasons"],
                                                                                     report["hypothesis"])
    seen = _after(real_stack, "hung-redis", "hung-redis-cut-at-the-deadline")
    assert seen["fault"] and seen["redis_ok"] is False and set(seen["tiers"]) <= {"segment", "popularity"}
    assert seen["p90_ms"] <= 150 + 60
    during = report["during_fault"]
    _assert_served(real_stack, "hung-redis", during)
    assert during["empty_slates"] == 0, during
    assert set(during["tiers"]) & {"segment", "popularity"}, "us-east's homepages stepped down the ladder"
    assert not _stopped(real_stack, "us-east") and fault_registry.pending(real_stack.state) == {}


def test_a_slow_region_is_ejected_on_latency_and_never_waited_on_past_the_budget(real_stack: Stack,
                                                                                experiments: Any) -> None:
    report = _run(real_stack, experiments, "slow-region", "slow-region", 20, duration_s=SLOW_S)
    print(f"\nslow-region: RTO {report['rto']}\nquality {report['quality_rto']}\nedge {report['edge']}")
    assert not report["invalid_reasons"] and after_held(report, but=(LATENCY_PROBE,)), (report["invalid_reasons"],
                                                                                     report["hypothesis"])
    seen = _after(real_stack, "slow-region", "slow-us-east-ejected-on-latency")
    assert seen["outlier"]["ejected"] and seen["outlier"]["window_p99_ms"] > 180 and seen["weights"]["us-east"] == 0
    reads = _reads(real_stack, "slow-region", report["fault_at"])
    tried_east = [r for r in reads if any(a["region"] == "us-east" for a in r["attempts"] or ())]
    deadline = real_stack.topology.settings.request_deadline_ms
    assert tried_east, "the load asked us-east before the controller moved it"
    edge_ms = sorted(r["edge_ms"] for r in tried_east if r["edge_ms"] is not None)
    print(f"reads that tried us-east: {len(tried_east)}, edge ms p50 {edge_ms[len(edge_ms) // 2]:.0f}, max {edge_ms[-1]:.0f}")
    # CI once saw a maximum of 211 ms (p50 150 ms): a stall of the shared machine, not a wait.
    shipped = json.loads((gameday.EXPERIMENTS_DIR / "slow-region.json").read_text())
    slow_low_ms = shipped["method"][0]["provider"]["arguments"]["low_ms"]
    waited = waits_on_slow_cell(edge_ms, deadline_ms=deadline, slow_low_ms=slow_low_ms)
    assert not waited, ("the edge never waits for the slow cell's answer past the request's budget", waited)
    assert all(r["ok"] for r in tried_east), "every read that tried the slow region was answered (by a retry)"
    assert report["load"]["empty_slates"] == 0 and fault_registry.pending(real_stack.state) == {}


def test_without_outlier_detection_a_slow_region_keeps_its_traffic_and_the_game_day_fails(
        real_stack: Stack, experiments: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs last: it leaves the controllers restarted with outlier detection off, and the edge
    without its own ejection (REGIONCTL_EDGE_EJECTION=off: else the edge alone would stop sending
    first attempts to the slow cell, edge.ejection, and the first-attempt failures asserted below
    would be the handful before it ejected the cell, not the controller's miss)."""
    controllers = ("controller-a", "controller-b")
    stack.kill(real_stack.state, names=controllers + ("edge",))
    monkeypatch.setenv("REGIONCTL_CONTROLLER_OUTLIER_ENABLED", "false")
    monkeypatch.setenv("REGIONCTL_EDGE_EJECTION", "off")
    stack.restart(real_stack.topology, real_stack.state, names=controllers + ("edge",))
    real_stack.wait_edge_ready()
    slower = [action("inject_answer_latency", pause=20, region="us-east", low_ms=300.0, high_ms=450.0)]
    try:
        report = _run(real_stack, experiments, "slow-no-outlier", "slow-region", None, method=slower,
                      duration_s=SLOW_S)
    finally:
        actions.clear_answer_latency("us-east", configuration={"state_dir": str(real_stack.state),
                                                               "topology": str(real_stack.topology_file)})
    seen = _after(real_stack, "slow-no-outlier", "slow-us-east-ejected-on-latency")
    print(f"\nslow region, no outlier detection: {seen}\nedge {report['edge']}\nRTO {report['rto']}")
    assert seen["fault"] and seen["verdict"].startswith("violated") and seen["weights"]["us-east"] > 0
    assert not seen["outlier"]["ejected"] and seen["outlier"]["enabled"] is False
    assert report["hypothesis"]["after"] is False and report["verdict"] == "fail"
    assert verdict_of(report, "steady state after", "hypothesis")["status"] == "fail"
    # what users would have seen without the edge's retry: us-east's share of first attempts, all timed out
    assert report["edge"]["first_attempt_failure_rate"] > 0.1
