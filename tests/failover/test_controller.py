"""The controller's driver: `Controller.step(now)` over STAND-IN cells, and leader/standby processes.

The cells are stand-ins (tests/failover/standin_cell.py: tiny HTTP servers serving /readyz and the
homepage per docs/interfaces.md, in threads or as real subprocesses); the lead's end-to-end tests
use the real cells. Steps are driven with an explicit `now`: no test sleeps to move the controller's
clock. The two slow-marked tests use real time and print what they measure.
"""
from __future__ import annotations

import json
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from failover.auth import Permission, TokenBook
from regions.tokens import ensure_tokens_file
from contracts.store_keys import FAILBACK_KEY, LEADER_KEY, OVERRIDES_KEY
from failover.controller import Controller, weights_of
from failover.health import HealthState
from failover.journal import Action
from failover.probing import Prober
from contracts.store_keys import TABLE_KEY
from failover.safety import request_drain
from failover.settings import ControllerSettings
from failover.sqlite_store import SqliteStore
from regions.processes import free_port, python_module_argv, spawn, wait_until
from regions.topology import parse_topology
from tests.failover.controller_helpers import FAST, LAYOUT, Rig, make_rig, topology_raw, write_toml
from tests.failover.standin_cell import StandinCell

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def rig() -> Iterator[Rig]:
    yield from make_rig()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    s = SqliteStore(tmp_path / "control.db")
    yield s
    s.close()


def table(store: SqliteStore) -> dict:
    found = store.get(TABLE_KEY)
    assert found is not None
    return json.loads(found.value)


def actions(controller: Controller) -> list[str]:
    return [e.action for e in controller.journal.entries()]


def test_first_round_takes_the_lease_and_writes_table_health_and_journal(rig: Rig, store: SqliteStore) -> None:
    ctl = rig.controller(store)
    result = ctl.step(time.time())
    assert result.leader and not result.problems
    assert set(result.wrote) >= {TABLE_KEY, LEADER_KEY, "health/us-east", "health/us-west", "health/eu-west"}
    assert table(store)["geos"]["us"]["regions"] == {"us-east": 50, "us-west": 50}
    assert table(store)["version"] == 1
    assert actions(ctl) == [Action.LEADER_CHANGE.value, Action.WEIGHT_CHANGE.value]
    assert json.loads(store.get(LEADER_KEY).value)["holder"] == "A"


def test_nothing_is_written_or_journaled_when_nothing_changed(rig: Rig, store: SqliteStore) -> None:
    ctl = rig.controller(store)
    now = time.time()
    ctl.step(now)
    before = store.list("")
    for i in range(1, 4):
        result = ctl.step(now + i)
        assert result.leader and result.wrote == () and result.journaled == ()
    assert store.list("") == before


@pytest.mark.parametrize("failures_down", [1, 2, 3, 5])
def test_a_dead_cell_is_unhealthy_after_n_failed_probes_and_loses_its_weight(
        rig: Rig, store: SqliteStore, failures_down: int) -> None:
    ctl = rig.controller(store, settings=replace(FAST, failures_down=failures_down))
    now = time.time()
    ctl.step(now)
    rig.cells["us-west"].stop()
    states = []
    for i in range(1, failures_down + 2):
        result = ctl.step(now + i)
        states.append(result.health["us-west"].state)
    assert states[failures_down - 1] is HealthState.UNHEALTHY
    assert all(s is HealthState.HEALTHY for s in states[:failures_down - 1])
    assert table(store)["geos"]["us"]["regions"] == {"us-east": 100, "us-west": 0}
    last = ctl.journal.entries()[-1]
    assert last.action == Action.WEIGHT_CHANGE.value
    assert "us-west" in last.reason and "unhealthy" in last.reason
    assert last.inputs["health"]["us-west"]["failures"] == failures_down
    assert last.inputs["thresholds"]["failures_down"] == failures_down
    assert ctl.journal.verify().ok


def test_a_standby_probes_but_writes_nothing(rig: Rig, store: SqliteStore, tmp_path: Path) -> None:
    leader = rig.controller(store, holder="A")
    now = time.time()
    leader.step(now)
    other = SqliteStore(tmp_path / "control.db")
    standby = rig.controller(other, holder="B")
    before = store.list("")
    rig.cells["us-west"].mode = "unready"
    for i in range(1, 5):
        result = standby.step(now + i)
        assert not result.leader and result.wrote == ()
    assert result.health["us-west"].state is HealthState.UNHEALTHY  # fresh health for a takeover
    assert store.list("") == before
    other.close()


def test_fail_static_is_entered_and_left_once_each(rig: Rig, store: SqliteStore) -> None:
    ctl = rig.controller(store)
    now = time.time()
    ctl.step(now)
    weights = table(store)["geos"]
    for cell in rig.cells.values():
        cell.mode = "unready"
    for i in range(1, 5):
        ctl.step(now + i)
    assert table(store)["fail_static"] is True
    assert table(store)["geos"] == weights  # the last weights are kept
    for cell in rig.cells.values():
        cell.mode = "ok"
    for i in range(5, 12):
        ctl.step(now + i)
    assert table(store)["fail_static"] is False
    seen = actions(ctl)
    assert seen.count(Action.FAILSTATIC.value) == 1 and seen.count(Action.FAILSTATIC_CLEARED.value) == 1


def test_operator_drain_is_applied_journaled_and_expires(rig: Rig, store: SqliteStore) -> None:
    ctl = rig.controller(store)
    now = time.time()
    ctl.step(now)
    ctl.change_overrides(lambda s: request_drain(s, region="us-east", ttl_s=30, reason="maintenance"),
                         actor="director:alice", action=Action.DRAIN, reason="maintenance", inputs={"region": "us-east"})
    drained = ctl.step(now + 1)
    assert drained.health["us-east"].state is HealthState.DRAINED
    assert table(store)["geos"]["us"]["regions"] == {"us-east": 0, "us-west": 100}
    drain_entry = [e for e in ctl.journal.entries() if e.action == Action.DRAIN.value][0]
    assert drain_entry.actor == "director:alice" and drain_entry.reason == "maintenance"
    result = ctl.step(now + 40)  # the drain's TTL has passed
    assert OVERRIDES_KEY in result.wrote
    assert json.loads(store.get(OVERRIDES_KEY).value) == {"drains": {}, "steer": {}}
    assert Action.OVERRIDE_CLEARED.value in result.journaled
    assert result.health["us-east"].state is not HealthState.DRAINED
    # failback starts at the first stage, persisted for a successor
    assert json.loads(store.get(FAILBACK_KEY).value)["us-east"]["stage"] == 0
    assert 0 < table(store)["geos"]["us"]["regions"]["us-east"] < 50


def test_change_overrides_needs_a_reason_and_the_lease(rig: Rig, store: SqliteStore, tmp_path: Path) -> None:
    from failover.leadership import NotLeader
    from regions.errors import InputError

    ctl = rig.controller(store)
    ctl.step(time.time())
    with pytest.raises(InputError, match="reason"):
        ctl.change_overrides(lambda s: request_drain(s, region="us-east"), actor="x:y", action=Action.DRAIN,
                             reason="  ", inputs={})
    other = SqliteStore(tmp_path / "control.db")
    standby = rig.controller(other, holder="B")
    standby.step(time.time())
    with pytest.raises(NotLeader):
        standby.change_overrides(lambda s: request_drain(s, region="us-east"), actor="x:y", action=Action.DRAIN,
                                 reason="why", inputs={})
    other.close()


def test_run_steps_at_the_interval_with_injected_clock_and_wait(rig: Rig, store: SqliteStore) -> None:
    clock = {"now": time.time()}
    waits: list[float] = []

    def wait(seconds: float) -> None:
        waits.append(seconds)
        clock["now"] += seconds

    ctl = rig.controller(store, clock=lambda: clock["now"], wait=wait)
    ctl.run(stop=lambda: len(waits) >= 3)
    assert waits == [FAST.interval_s] * 3
    assert store.lease_holder("controller") is None  # resigned on the way out


# -- real time, real processes ------------------------------------------------------------------

@pytest.mark.slow
def test_detection_time_of_a_killed_cell_with_default_settings(store: SqliteStore, tmp_path: Path) -> None:
    """Default settings (1 s interval, 0.5 s timeout, N=3). The killed cell is a real subprocess."""
    ports = {name: free_port() for names in LAYOUT.values() for name in names}
    cells = [StandinCell(region=r, port=ports[r]).start() for r in ("us-east", "eu-west")]
    proc = spawn("standin-us-west", python_module_argv("tests.failover.standin_cell", "--region", "us-west",
                                                       "--port", str(ports["us-west"])), log_dir=tmp_path, cwd=REPO)
    prober = None
    stop = threading.Event()
    try:
        topo = parse_topology(topology_raw(ports))
        wait_until(lambda: _connects(ports["us-west"]), timeout=20, what="stand-in cell subprocess")
        settings = ControllerSettings()
        prober = Prober(topology=topo, timeout_s=settings.probe_timeout_s)
        ctl = Controller(topology=topo, store=store, holder="A", prober=prober.probe_all, settings=settings,
                         log=lambda _l: None, wait=lambda s: stop.wait(s) and None)
        loop = threading.Thread(target=ctl.run, kwargs={"stop": stop.is_set}, daemon=True)
        loop.start()
        wait_until(lambda: ctl.last is not None and ctl.last.leader, timeout=20, what="first round")
        proc.kill()  # SIGKILL: what a crash looks like
        killed = time.monotonic()
        wait_until(lambda: ctl.last.health["us-west"].state is HealthState.UNHEALTHY, timeout=30, interval=0.01,
                   what="us-west unhealthy")
        detected = time.monotonic() - killed
        wait_until(lambda: weights_of(table(store))["us"]["us-west"] == 0, timeout=10, interval=0.01,
                   what="us-west at 0 %")
        evacuated = time.monotonic() - killed
        print(f"\nDETECTION: cell killed -> marked unhealthy in {detected:.2f} s; routing table gives it 0 % "
              f"after {evacuated:.2f} s (interval {settings.interval_s} s, timeout {settings.probe_timeout_s} s, "
              f"N={settings.failures_down})")
        assert detected < 15  # generous: the expected value is about N-1 to N intervals
    finally:
        stop.set()
        proc.kill()
        for cell in cells:
            cell.stop()
        if prober:
            prober.close()


def _connects(port: int) -> bool:
    try:
        httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=0.5)
        return True
    except httpx.HTTPError:
        return False


def _start_controller(ident: str, *, store_url: str, api_port: int, topo_file: Path, tokens: Path,
                      log_dir: Path):
    argv = python_module_argv("regionctl.controller_cmds", "controller", "--id", ident, "--store", store_url,
                              "--api-port", str(api_port), "--topology", str(topo_file), "--tokens", str(tokens))
    return spawn(f"controller-{ident}", argv, log_dir=log_dir, cwd=REPO)


@pytest.mark.slow
def test_standby_process_takes_over_after_kill_9_of_the_leader(rig: Rig, tmp_path: Path) -> None:
    """Two real controller processes (default 1 s interval, 3 s lease) share one SQLite store."""
    db = tmp_path / "shared.db"
    topo_file = write_toml(rig.raw, tmp_path / "topology.toml")
    tokens = tmp_path / "tokens.json"
    ensure_tokens_file(tokens)
    book = TokenBook.load(tokens)
    ports = {"A": free_port(), "B": free_port()}
    procs = {}
    observer = SqliteStore(db)
    try:
        procs["A"] = _start_controller("A", store_url=f"sqlite:///{db}", api_port=ports["A"], topo_file=topo_file,
                                       tokens=tokens, log_dir=tmp_path)
        wait_until(lambda: observer.get(TABLE_KEY) is not None, timeout=30, what="A writes the table")
        procs["B"] = _start_controller("B", store_url=f"sqlite:///{db}", api_port=ports["B"], topo_file=topo_file,
                                       tokens=tokens, log_dir=tmp_path)
        wait_until(lambda: _connects_api(ports["B"]), timeout=30, what="B's API")
        # the standby's API names the leader for writes and answers reads itself
        director = {"Authorization": f"Bearer {book.token_for(Permission.DIRECT)}"}
        refused = httpx.post(f"http://127.0.0.1:{ports['B']}/v1/regions/us-east/drain",
                             json={"reason": "test"}, headers=director)
        assert refused.status_code == 503
        assert refused.json()["leader"] == "A"
        assert refused.json()["leader_api"] == f"http://127.0.0.1:{ports['A']}"
        status = httpx.get(f"http://127.0.0.1:{ports['B']}/v1/status", headers=director).json()
        assert status["leader"]["holder"] == "A" and status["controller"] == "B"
        _operator_cli(api_a=f"http://127.0.0.1:{ports['A']}", api_b=f"http://127.0.0.1:{ports['B']}", tokens=tokens)
        version = table(observer)["version"]
        procs["A"].kill()
        killed = time.monotonic()
        wait_until(lambda: table(observer)["version"] > version, timeout=30, interval=0.02,
                   what="B writes the routing table")
        took = time.monotonic() - killed
        print(f"\nTAKEOVER: leader killed -> standby wrote routing table v{table(observer)['version']} "
              f"in {took:.2f} s (lease TTL 3 s)")
        assert observer.lease_holder("controller").holder == "B"
        entries = [json.loads(v.value) for v in observer.list("journal/entries/").values()]
        assert [e["actor"] for e in entries if e["action"] == "leader_change"] == ["controller:A", "controller:B"]
        assert took < 15  # generous bound; expected about one lease TTL
        procs["B"].stop()  # SIGTERM: the API stops, the loop ends and the lease is given back at once
        assert procs["B"].popen.returncode == 0, procs["B"].log_tail()
        assert observer.lease_holder("controller") is None
    finally:
        for proc in procs.values():
            proc.kill()
        observer.close()


def _connects_api(port: int) -> bool:
    try:
        httpx.get(f"http://127.0.0.1:{port}/v1/status", timeout=0.5)
        return True
    except httpx.HTTPError:
        return False


def _operator_cli(*, api_a: str, api_b: str, tokens: Path) -> None:
    """The thin CLI against the real processes: a change sent to the standby is followed to the leader."""
    import typer
    from typer.testing import CliRunner

    from regionctl.controller_cmds import register
    from regions.errors import InputError

    app = typer.Typer()
    register(app)
    runner = CliRunner()
    env = {"REGIONCTL_TOKENS_FILE": str(tokens), "REGIONCTL_TOKEN": ""}
    drained = runner.invoke(app, ["drain", "us-west", "--reason", "cli test", "--ttl", "10m", "--api", api_b], env=env)
    assert drained.exit_code == 0, drained.output
    shown = runner.invoke(app, ["status", "--api", api_a], env=env)
    assert shown.exit_code == 0 and "cli test" in shown.output and "us-west" in shown.output, shown.output
    refused = runner.invoke(app, ["steer", "--geo", "us", "--weights", "us-east=70,us-west=40", "--reason", "x",
                                  "--api", api_a], env=env)
    assert isinstance(refused.exception, InputError) and "may only get 0" in str(refused.exception)
    plan = runner.invoke(app, ["drill", "evacuate", "us-east", "--dry-run", "--hold", "30s", "--api", api_a], env=env)
    # us-west is drained: evacuating us-east would empty us, so the dry run says FAILING and exits 1
    assert plan.exit_code == 1 and "pre-checks" in plan.output and "FAILING" in plan.output, plan.output
    assert "REGIONCTL_CONTROLLER_FAILBACK_HOLD_S" in plan.output
    undrained = runner.invoke(app, ["undrain", "us-west", "--reason", "cli done", "--api", api_a], env=env)
    assert undrained.exit_code == 0, undrained.output


@pytest.mark.parametrize("enabled", [True, False])
def test_a_slow_region_is_ejected_on_latency_with_evidence_or_not_when_detection_is_off(
        rig: Rig, store: SqliteStore, enabled: bool) -> None:
    """us-west answers every probe, 300 ms late (under the 500 ms probe timeout): errors say nothing,
    the outlier detection ejects it after N bad windows; switched off, it keeps its weight."""
    from failover.controller_metrics import ControllerMetrics
    from failover.effects import health_document

    settings = replace(FAST, outlier_enabled=enabled)
    ctl = rig.controller(store, settings=settings)
    metrics = ControllerMetrics(ctl)
    now = time.time()
    ctl.step(now)
    rig.cells["us-west"].homepage_delay_s = 0.3
    rounds = settings.outlier_window_probes * settings.outlier_bad_windows - 1  # the first probe filled a window too
    results = [ctl.step(now + i) for i in range(1, rounds + 1)]
    west = results[-1].health["us-west"]
    assert west.state is HealthState.HEALTHY, "every probe answered: error-based health sees nothing"
    if not enabled:
        assert not west.outlier.ejected and table(store)["geos"]["us"]["regions"]["us-west"] > 0
        return
    assert not results[-2].health["us-west"].outlier.ejected and west.outlier.ejected
    assert table(store)["geos"]["us"]["regions"] == {"us-east": 100, "us-west": 0}
    doc = json.loads(store.get("health/us-west").value)
    assert doc["outlier"]["ejected"] and doc["outlier"]["window_p99_ms"] >= 300 and doc["outlier"]["threshold_ms"] == 180
    entry = ctl.journal.entries()[-1]
    assert entry.action == Action.WEIGHT_CHANGE.value and "latency outlier" in entry.reason
    assert entry.inputs["health"]["us-west"]["outlier"]["ejected"] is True
    assert entry.inputs["thresholds"]["outlier"]["p99_ms"] == 180
    text = metrics.render()[0].decode()
    assert 'shopnow_controller_region_latency_outlier{controller="A",region="us-west"} 1.0' in text
    assert 'shopnow_controller_region_latency_outlier{controller="A",region="us-east"} 0.0' in text
    assert health_document(west, settings)["outlier"]["bad_windows"] >= settings.outlier_bad_windows
    rig.cells["us-west"].homepage_delay_s = 0.0
    back = [ctl.step(now + rounds + i) for i in range(1, settings.outlier_window_probes * settings.outlier_good_windows + 1)]
    back.append(ctl.step(now + rounds + len(back) + 1))  # the failback starts on the round after the return
    assert back[-3].health["us-west"].outlier.ejected and not back[-2].health["us-west"].outlier.ejected
    assert 0 < table(store)["geos"]["us"]["regions"]["us-west"] < 50, "it fails back gradually"
