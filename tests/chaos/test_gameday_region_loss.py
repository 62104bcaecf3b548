"""Game days against ONE real local stack (redis-servers, cells, replicators, feature updaters, two
controllers, the edge), shared by the module: the ordinary region loss passes, and sabotaged game
days fail the way they must.

- the ordinary region-loss experiment: passes, with its availability and quality RTO, an RPO
  measured on real acknowledged events, and no empty slate;
- us-east's replicator frozen (SIGSTOP) before the kill: the RPO fails and names the lost events;
- a fault action that raises: the game day is INVALID;
- us-east's cell answering 404, then 500, to homepages (the load straight at the cell): the
  availability RTO is not met;
- the edge's in-geography retry switched off (REGIONCTL_EDGE_PERSONAL_TRIES=1) and both
  controllers frozen (SIGSTOP), then us-east killed: first-attempt failures above 0 and the
  quality RTO not met (availability holds: the edge's anonymous cross-geography ask answers);
- `chaos run` interrupted with SIGINT (us-west's index frozen): no fault is left (rollbacks
  always) and none registered.

Short runs at low rates (25-30 req/s, 8-75 s); the waits for a failback (us-east back at full
weight, about a minute) are what the next game day's premise needs. About 6-11 minutes on this
2-core machine, depending on what else runs on it.
"""
from __future__ import annotations

import copy
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from chaos import fault_registry, gameday
from chaos.sampling import weights_of
from failover.control_api import ControlClient
from failover.control_store import store_from_url
from regions import stack
from regions.processes import wait_until
from regions.topology import Topology, load_topology
from tests.stack_helpers import publish_and_promote, write_topology

pytestmark = pytest.mark.slow
QUIET = lambda _m: None  # noqa: E731


class Stack:
    def __init__(self, root: Path, topology_file: Path, topology: Topology, state: Path) -> None:
        self.root, self.topology_file, self.topology, self.state = root, topology_file, topology, state

    def gameday(self, name: str, out: str, **kwargs: Any) -> dict[str, Any]:
        return gameday.run_gameday(name, state_dir=self.state, topology=self.topology_file, out_dir=self.root / out,
                                   progress=QUIET, **kwargs)

    def proc(self, name: str) -> stack.RunningProcess:
        return stack.StackState.load(self.state).processes[name]

    def signal(self, names: tuple[str, ...], sig: int) -> None:
        for name in names:
            stack.signal_process(self.proc(name), sig)

    def freeze_between_transactions(self, names: tuple[str, ...]) -> None:
        """SIGSTOP the processes at a moment none of them holds the SQLite control store's write lock:
        a controller frozen inside a transaction would freeze the store for everyone (the edge and
        the game day's sampler included), which is another experiment than a dead control plane."""
        db = stack.stack_urls(self.state).control_store.removeprefix("sqlite://")
        for _ in range(200):
            self.signal(names, signal.SIGSTOP)
            try:
                conn = sqlite3.connect(db, timeout=0.2)
                conn.execute("BEGIN IMMEDIATE")
                conn.rollback()
                conn.close()
                return
            except sqlite3.OperationalError:
                self.signal(names, signal.SIGCONT)
                time.sleep(0.05)
        raise AssertionError(f"could not freeze {names} outside a control-store transaction")

    def weights(self) -> dict[str, dict[str, float]]:
        with store_from_url(stack.stack_urls(self.state).control_store) as store:
            current = store.get("routing/table")
        return weights_of(json.loads(current.text)) if current is not None else {}

    def wait_full_weights(self, timeout: float = 300.0) -> None:
        """Until every region of the topology has its full weight again (a failback ramps over ~1 min)."""
        def full() -> bool:
            weights = self.weights()
            return all(len(set(w.values())) == 1 and min(w.values()) > 0 for w in weights.values()) and \
                {r for w in weights.values() for r in w} == set(self.topology.regions)

        wait_until(full, timeout=timeout, what="every region back at its full weight")

    def wait_weight(self, region: str, at_least: float, timeout: float = 240.0) -> None:
        """Until `region` has at least this weight (a failback ramps 0 -> 5 -> 25 -> 50)."""
        geo = self.topology.region(region).geography
        wait_until(lambda: self.weights().get(geo, {}).get(region, 0.0) >= at_least, timeout=timeout, interval=1.0,
                   what=f"{region} at weight {at_least:g} or more")

    def wait_edge_ready(self) -> None:
        """Until the restarted edge answers a homepage (its port is open once it has started)."""
        url = f"http://127.0.0.1:{self.topology.settings.edge_port}/v1/recommendations/homepage?user_id=us-1"
        wait_until(lambda: _status(url) == 200, timeout=90, interval=0.5, what="the edge to answer")


def _status(url: str) -> int:
    try:
        return httpx.get(url, timeout=2.0, trust_env=False).status_code
    except httpx.HTTPError:
        return 0


@pytest.fixture(scope="module")
def real_stack(tmp_path_factory: pytest.TempPathFactory, tiny_bundle: Path) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("gamedays")
    topo_file = write_topology(root / "topology.toml")
    topo = load_topology(topo_file)
    state = root / "stack"
    urls = stack.stack_urls(state)
    publish_and_promote(tiny_bundle, Path(urls.artifacts.removeprefix("file://")))
    try:
        stack.up(topo, topology_path=topo_file, state_dir=state, urls=urls)
        ControlClient(f"http://127.0.0.1:{topo.settings.controller_port}", stack.token_for(state, "viewer")).wait_until_healthy()
        yield Stack(root, topo_file, topo, state)
    finally:
        stack.down(state_dir=state)


@pytest.fixture
def experiments(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    """Write variants of the shipped experiments into a directory the game day reads from."""
    shipped = gameday.EXPERIMENTS_DIR
    target = tmp_path / "experiments"
    target.mkdir()
    for path in shipped.glob("*.json"):
        (target / path.name).write_text(path.read_text())
    monkeypatch.setattr(gameday, "EXPERIMENTS_DIR", target)

    def write(name: str, base: str, *, method: list[dict[str, Any]] | None = None, pause_after_fault: float | None = None,
              rollbacks: list[dict[str, Any]] | None = None, keep_probes: bool = True) -> str:
        exp = copy.deepcopy(json.loads((shipped / f"{base}.json").read_text()))
        if method is not None:
            exp["method"] = method
        if pause_after_fault is not None:
            exp["method"] = [exp["method"][0]]
            exp["method"][0]["pauses"] = {"after": pause_after_fault}
        if rollbacks is not None:
            exp["rollbacks"] = rollbacks
        if not keep_probes:
            exp["steady-state-hypothesis"]["probes"] = exp["steady-state-hypothesis"]["probes"][:1]
        (target / f"{name}.json").write_text(json.dumps(exp))
        return name

    return write


def _action(func: str, pause: float = 0.0, **arguments: Any) -> dict[str, Any]:
    act = {"type": "action", "name": func.replace("_", "-"),
           "provider": {"type": "python", "module": "chaos.actions", "func": func, "arguments": arguments}}
    if pause:
        act["pauses"] = {"after": pause}
    return act


def _verdict(report: dict[str, Any], name: str, kind: str) -> dict[str, Any]:
    return next(v for v in report["verdicts"] if v["name"] == name and v["kind"] == kind)


def test_the_ordinary_region_loss_passes_with_both_rtos(real_stack: Stack) -> None:
    report = real_stack.gameday("region-loss", "region-loss", load_rate=30, duration_s=75, warmup_s=12)
    print(f"\nregion-loss: RTO {report['rto']}\nquality {report['quality_rto']}\nedge {report['edge']}\nRPO {report['rpo']}")
    assert report["verdict"] == "pass", (report["invalid_reasons"], [v for v in report["verdicts"] if v["status"] != "pass"])
    assert report["rto"]["status"] == "met" and report["rto"]["seconds"] <= 15.0
    quality = report["quality_rto"]
    assert list(quality["geographies"]) == ["us"] and quality["baseline_share"] is not None
    assert quality["status"] in ("met", "not met") and _verdict(report, "quality RTO", "reported")["status"] == quality["status"]
    assert report["degradation"]["tier_seconds"].get("full", 0) > 0
    assert report["rpo"]["acknowledged"] >= 10, "too few acknowledged events in the lost region to measure an RPO"
    assert report["rpo"]["seconds"] <= 2.0 and report["load"]["empty_slates"] == 0 and report["load"]["valid"]
    assert report["edge"]["reads"] > 0 and report["edge"]["first_attempt_failure_rate"] is not None
    md = (real_stack.root / "region-loss" / "report.md").read_text()
    assert "quality RTO (us" in md and "first-attempt failures" in md
    for name in ("report.json", "report.md", "report.png", "journal.json", "load.jsonl"):
        assert (real_stack.root / "region-loss" / name).exists(), name
    assert fault_registry.pending(real_stack.state) == {}


def test_a_frozen_replicator_fails_the_rpo_and_names_the_lost_events(real_stack: Stack, experiments: Any) -> None:
    name = experiments("loss-frozen-replicator", "region-loss", pause_after_fault=4, keep_probes=False)
    real_stack.wait_weight("us-east", 25)  # us-east weighted again: it acknowledges a share of the events
    real_stack.signal(("replicator-us-east",), signal.SIGSTOP)
    try:
        report = real_stack.gameday(name, "frozen-replicator", load_rate=30, duration_s=32, warmup_s=10)
    finally:
        real_stack.signal(("replicator-us-east",), signal.SIGCONT)  # restored by the rollback: a new process
    rpo = report["rpo"]
    print(f"\nfrozen replicator: RPO {rpo['seconds']} s, lost {rpo['lost']} of {rpo['acknowledged']}")
    assert rpo["status"] == "measured" and rpo["acknowledged"] >= 5
    assert rpo["lost"] == rpo["acknowledged"], "nothing acknowledged by us-east reached us-west"
    assert _verdict(report, "RPO", "target")["status"] == "fail"
    assert report["verdict"] in ("fail", "invalid") and report["verdict"] != "pass"
    md = (real_stack.root / "frozen-replicator" / "report.md").read_text()
    assert f"{rpo['lost']} of {rpo['acknowledged']} acknowledged events lost" in md and rpo["lost_ids"][0] in md


def test_cells_answering_404_and_500_do_not_meet_the_availability_rto(real_stack: Stack, experiments: Any) -> None:
    name = experiments("homepage-errors", "ranking-latency", keep_probes=False,
                       method=[_action("inject_homepage_errors", pause=12, region="us-east", status=404),
                               _action("inject_homepage_errors", pause=26, region="us-east", status=500)],
                       rollbacks=[_action("clear_cell_faults", region="us-east")])
    report = real_stack.gameday(name, "homepage-errors", load_rate=25, duration_s=40, warmup_s=4, target="us-east")
    records = [json.loads(line) for line in (real_stack.root / "homepage-errors" / "load.jsonl").read_text().splitlines()]
    statuses = {r["status"] for r in records if r["kind"] == "homepage" and r["t"] >= report["fault_at"]}
    assert {404, 500} <= statuses
    assert report["rto"]["status"] == "not met", report["rto"]
    assert _verdict(report, "availability RTO", "target")["status"] == "fail" and report["verdict"] == "fail"
    assert fault_registry.pending(real_stack.state) == {}


def test_a_fault_action_that_raises_makes_the_game_day_invalid(real_stack: Stack, experiments: Any) -> None:
    name = experiments("kill-atlantis", "region-loss", method=[_action("kill_region", region="atlantis")],
                       rollbacks=[], keep_probes=False)
    report = real_stack.gameday(name, "kill-atlantis", load_rate=25, duration_s=8, warmup_s=3)
    assert report["verdict"] == "invalid"
    assert any("kill-region" in r and "atlantis" in r for r in report["invalid_reasons"]), report["invalid_reasons"]


def test_sigint_to_chaos_run_leaves_no_fault(real_stack: Stack, tmp_path: Path) -> None:
    exp = json.loads((gameday.EXPERIMENTS_DIR / "stale-ann-index.json").read_text())
    exp["method"] = [_action("freeze_index", pause=60, region="us-west")]
    exp["rollbacks"] = [_action("unfreeze_index", region="us-west")]
    del exp["steady-state-hypothesis"]
    path = tmp_path / "freeze.json"
    path.write_text(json.dumps(exp))
    readyz = f"http://127.0.0.1:{real_stack.topology.region('us-west').http_port}/readyz"

    def frozen() -> bool:
        return bool(httpx.get(readyz, timeout=2.0).json().get("index_frozen"))

    env = {**os.environ, "REGIONCTL_STATE_DIR": str(real_stack.state), "REGIONCTL_TOPOLOGY": str(real_stack.topology_file)}
    proc = subprocess.Popen([str(Path(sys.executable).with_name("chaos")), "run", str(path)], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(frozen, timeout=60, what="the index freeze to be injected")
        assert "cell:us-west" in fault_registry.pending(real_stack.state)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) is not None
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not frozen(), "the rollback unfroze the index"
    assert fault_registry.pending(real_stack.state) == {}
    journal = json.loads((tmp_path / "journal.json").read_text())
    assert journal["status"] == "interrupted" and journal["rollbacks"][0]["status"] == "succeeded"


def test_no_retry_and_frozen_controllers_show_first_attempt_failures(real_stack: Stack, experiments: Any,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs last: it leaves the edge restarted without its retry setting, the controllers running."""
    name = experiments("loss-no-retry", "region-loss", pause_after_fault=34, keep_probes=False)
    real_stack.wait_full_weights()  # frozen controllers keep the table as it is: us-east must be in it
    stack.kill(real_stack.state, names=("edge",))
    monkeypatch.setenv("REGIONCTL_EDGE_PERSONAL_TRIES", "1")  # the edge's in-geography retry off
    stack.restart(real_stack.topology, real_stack.state, names=("edge",))
    real_stack.wait_edge_ready()
    controllers = ("controller-a", "controller-b")
    real_stack.freeze_between_transactions(controllers)
    try:
        report = real_stack.gameday(name, "no-retry", load_rate=30, duration_s=42, warmup_s=6)
    finally:
        real_stack.signal(controllers, signal.SIGCONT)
    edge, rto, quality = report["edge"], report["rto"], report["quality_rto"]
    print(f"\nno retry, frozen controllers: edge {edge}\nRTO {rto}\nquality {quality}")
    assert edge["first_attempt_failures"] > 0 and edge["first_attempt_failure_rate"] > 0.05
    assert quality["status"] == "not met", quality  # us-east's users got anonymous cross-geo answers
    assert report["degradation"]["tier_seconds"].get("popularity", 0) > 1.0
    # Availability is still met: a SIGKILLed cell refuses connections at once and the edge's one
    # anonymous ask to eu-west answers within the deadline. What users lost is personalisation.
    assert rto["status"] in ("met", "not met")
