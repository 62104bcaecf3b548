"""Drills against STAND-IN cells (tests/failover/standin_cell.py) and a real controller loop.

The controller runs its loop in a thread with short intervals and holds (FAST); the cells and
the edge are stand-ins serving the shapes of docs/interfaces.md. Real time passes (a drill is a
sequence of holds), but nothing asserts on durations: the measured numbers are printed.
"""
from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

import pytest

from contracts.store_keys import OVERRIDES_KEY
from failover.controller import Controller
from failover.drill_report import report_markdown
from failover.status_view import drills_view
from failover.drill_runner import DrillConflict, DrillRunner, DrillSettings
from contracts.store_keys import TABLE_KEY
from failover.sqlite_store import SqliteStore
from regions.processes import free_port, wait_until
from tests.failover.controller_helpers import Rig, make_rig

QUICK = DrillSettings(poll_s=0.02, gate_timeout_s=0.6, failback_timeout_s=15.0, edge_timeout_s=5.0)


class StandinEdge:
    """Answers /readyz with the table version in the store, as an edge that has just polled it."""

    def __init__(self, store: SqliteStore) -> None:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                return

            def do_GET(self) -> None:  # noqa: N802
                found = store.get(TABLE_KEY)
                data = json.dumps({"ready": True, "table_version": json.loads(found.value)["version"] if found else 0})
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data.encode())

        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()
        outer.url = f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class Running:
    rig: Rig
    store: SqliteStore
    controller: Controller
    runner: DrillRunner
    reports: Path


@pytest.fixture
def running(tmp_path: Path) -> Iterator[Running]:
    for rig in make_rig():
        store = SqliteStore(tmp_path / "control.db")
        ctl = rig.controller(store)
        edge = StandinEdge(store)
        stop = threading.Event()
        loop = threading.Thread(target=ctl.run, kwargs={"stop": stop.is_set}, daemon=True)
        loop.start()
        wait_until(lambda: ctl.last is not None and ctl.last.leader, timeout=20, what="the controller leads")
        runner = DrillRunner(ctl, reports_dir=tmp_path / "drills", edge_url=edge.url, settings=QUICK)
        try:
            yield Running(rig=rig, store=store, controller=ctl, runner=runner, reports=tmp_path / "drills")
        finally:
            stop.set()
            ctl.poke()
            loop.join(timeout=10)
            edge.stop()
            store.close()


def overrides(store: SqliteStore) -> dict:
    found = store.get(OVERRIDES_KEY)
    return json.loads(found.value) if found else {"drains": {}, "steer": {}}


def test_a_short_real_drill_evacuates_fails_back_and_reports(running: Running) -> None:
    record = running.runner.start("us-east", hold_s=0.2, actor="chaos:cleo", reason="game day", background=False)
    assert record.status == "succeeded", (record.error, record.events)
    m = record.measurements
    print(f"\nDRILL: table gives us-east 0 % after {m['evacuate_table_s']:.2f} s (v{m['evacuate_table_version']}); "
          f"edge after {m.get('evacuate_edge_s')} s; failback {m['failback_s']:.2f} s; at risk {m['data_at_risk']}")
    assert m["evacuate_table_s"] <= m["evacuate_edge_s"]
    assert m["data_at_risk"] == [{"source": "us-east", "destination": "us-west", "lag_s": 0.2, "lag_events": 3}]
    kinds = [e["step"] for e in record.events]
    assert kinds.index("shift") < kinds.index("drain") < kinds.index("undrain") < kinds.index("failback")
    # afterwards: no drill override is left, and us-east is back to its fair share
    assert overrides(running.store) == {"drains": {}, "steer": {}}
    wait_until(lambda: json.loads(running.store.get(TABLE_KEY).value)["geos"]["us"]["regions"]["us-east"] == 50,
               timeout=10, what="us-east back at 50 %")
    json_path, md_path = (Path(p) for p in record.report_paths)
    report = json.loads(json_path.read_text())
    assert report["status"] == "succeeded" and report["measurements"]["evacuate_table_s"] == m["evacuate_table_s"]
    assert "time to evacuate" in md_path.read_text() and "us-west" in md_path.read_text()
    drill_entries = [e for e in running.controller.journal.entries() if e.action == "drill_step"]
    assert {e.actor for e in drill_entries} == {"chaos:cleo"}
    assert drill_entries[-1].inputs["status"] == "succeeded"
    assert running.controller.journal.verify().ok


def test_a_failing_gate_aborts_and_rolls_back(running: Running) -> None:
    record = running.runner.start("us-east", hold_s=5.0, actor="director:dan", reason="abort test")
    wait_until(lambda: any(e["step"] == "shift" for e in record.events), timeout=10, what="the first shift")
    running.rig.cells["us-west"].mode = "slo"  # the survivor breaks its SLO during the drill
    wait_until(lambda: record.status != "running", timeout=20, what="the drill to end")
    assert record.status == "aborted" and "gates failed" in record.error
    assert any(e["step"] == "rollback" for e in record.events)
    assert overrides(running.store) == {"drains": {}, "steer": {}}
    assert Path(record.report_paths[0]).exists()


def test_a_second_drill_waits_for_the_first(running: Running) -> None:
    first = running.runner.start("us-east", hold_s=5.0, actor="director:dan", reason="one")
    with pytest.raises(DrillConflict, match=first.id):
        running.runner.start("us-west", hold_s=0.1, actor="director:dan", reason="two")
    dry = running.runner.plan("us-west", hold_s=0.1)  # a dry run says so too, instead of "all pass"
    assert not dry.ok and "no-other-drill" in [c.name for c in dry.failed_checks]
    assert first.id in next(c.message for c in dry.failed_checks if c.name == "no-other-drill")
    shown = drills_view(r.document() for r in running.runner.records())
    assert [(d["id"], d["region"], d["actor"]) for d in shown] == [(first.id, "us-east", "director:dan")]
    running.rig.cells["us-west"].mode = "slo"  # end the first drill quickly (abort + rollback)
    wait_until(lambda: first.status != "running", timeout=20, what="the first drill to end")
    after = running.runner.plan("us-west", hold_s=0.1)
    assert next(c for c in after.checks if c.name == "no-other-drill").passed
    assert drills_view(r.document() for r in running.runner.records()) == []


def test_dry_run_plan_and_precheck_refusal_change_nothing(running: Running) -> None:
    plan = running.runner.plan("us-west", hold_s=1.0)
    assert plan.ok and plan.steps[0].hold_s == 1.0
    running.rig.cells["us-west"].lag_s = 900.0  # beyond the 300 s RPO budget
    wait_until(lambda: not running.runner.plan("us-east").ok, timeout=10, what="lag in the snapshot")
    before = overrides(running.store)
    with pytest.raises(DrillConflict, match="replication"):
        running.runner.start("us-east", hold_s=0.1, actor="director:dan", reason="lagging")
    assert overrides(running.store) == before


def test_markdown_report_renders_without_measurements() -> None:
    text = report_markdown({"id": "x", "region": "r", "status": "failed", "error": "boom", "measurements": {},
                            "plan": {"checks": []}, "events": []})
    assert "not measured" in text and "boom" in text
