"""The controller's /metrics, /healthz and /readyz over a real controller (stepped by hand) probing
STAND-IN cells (tests/failover/standin_cell.py), linted by the real `promtool check metrics`."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Iterator

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from failover.auth import TokenBook, parse_tokens
from failover.control_api import create_app
from failover.controller import Controller
from failover.drill_runner import DrillRunner
from failover.sqlite_store import SqliteStore
from observability.promtool import check_metrics
from tests.failover.controller_helpers import make_rig

TOKENS = {"v" * 20: "viewer"}


@pytest.fixture
def rig_api(tmp_path: Path) -> Iterator[tuple[TestClient, Controller, object]]:
    for rig in make_rig():
        store = SqliteStore(tmp_path / "control.db")
        ctl = rig.controller(store, holder="ctl-a")
        app = create_app(controller=ctl, tokens=TokenBook(parse_tokens(TOKENS)),
                         drills=DrillRunner(ctl, reports_dir=tmp_path / "drills"))
        with TestClient(app) as client:
            yield client, ctl, rig
        store.close()


def samples(client: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = client.get("/metrics")  # no token: Prometheus carries none
    assert response.status_code == 200
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(response.text) for s in family.samples}


def test_readyz_waits_for_a_probe_round_and_healthz_answers_at_once(rig_api: tuple[TestClient, Controller, object]) -> None:
    client, ctl, _ = rig_api
    assert client.get("/healthz").json()["status"] == "ok"
    before = client.get("/readyz")
    assert before.status_code == 503 and before.json()["ready"] is False
    ctl.step(time.time())
    after = client.get("/readyz")
    assert after.status_code == 200 and after.json()["leader"] is True and after.json()["term"] >= 1
    assert before.json()["error"]["field"] == "readiness" and "error" not in after.json()


def test_readyz_fails_when_the_loop_stops_stepping(rig_api: tuple[TestClient, Controller, object]) -> None:
    client, ctl, _ = rig_api
    ctl.step(time.time() - 60)  # the last round is a minute old: the loop is stuck
    body = client.get("/readyz")
    assert body.status_code == 503 and body.json()["last_round_age_s"] >= 59
    assert body.json()["error"]["field"] == "readiness" and "no probe round finished" in body.json()["error"]["message"]


def test_metrics_show_leadership_health_weights_and_latencies(rig_api: tuple[TestClient, Controller, object]) -> None:
    client, ctl, rig = rig_api
    for _ in range(2):
        ctl.step(time.time())
    s = samples(client)
    who = ("controller", "ctl-a")
    assert s[("shopnow_controller_leader", (who,))] == 1
    assert s[("shopnow_controller_term", (who,))] >= 1
    assert s[("shopnow_controller_fail_static", (who,))] == 0
    assert s[("shopnow_controller_rounds_total", (who,))] == 2
    assert s[("shopnow_controller_region_health", (who, ("region", "eu-west"), ("state", "healthy")))] == 1
    us = {r: s[("shopnow_controller_region_weight_percent", (who, ("geography", "us"), ("region", r)))]
          for r in ("us-east", "us-west")}
    assert sum(us.values()) == 100
    assert s[("shopnow_controller_decision_duration_seconds_count", (who,))] == 2
    assert s[("shopnow_controller_probe_duration_seconds_count", (who, ("region", "us-east")))] == 2

    rig.cells["us-east"].mode = "unready"  # three failed rounds: unhealthy, its weight goes to us-west
    for _ in range(3):
        ctl.step(time.time())
    s = samples(client)
    assert s[("shopnow_controller_region_health", (who, ("region", "us-east"), ("state", "unhealthy")))] == 1
    assert s[("shopnow_controller_region_health", (who, ("region", "us-east"), ("state", "healthy")))] == 0
    assert s[("shopnow_controller_region_weight_percent", (who, ("geography", "us"), ("region", "us-west")))] == 100


def test_fail_static_shows_when_every_probe_fails(rig_api: tuple[TestClient, Controller, object]) -> None:
    client, ctl, rig = rig_api
    ctl.step(time.time())
    for cell in rig.cells.values():
        cell.mode = "unready"
    for _ in range(3):
        ctl.step(time.time())
    assert samples(client)[("shopnow_controller_fail_static", (("controller", "ctl-a"),))] == 1


def test_promtool_accepts_the_controller_metrics(rig_api: tuple[TestClient, Controller, object]) -> None:
    client, ctl, _ = rig_api
    ctl.step(time.time())
    result = check_metrics(client.get("/metrics").text)
    assert result.ok, result.output


def test_promtool_lint_does_fail_on_a_badly_named_metric() -> None:
    bad = "# HELP shopnow_requests Requests.\n# TYPE shopnow_requests counter\nshopnow_requests 3\n"
    result = check_metrics(bad)
    assert not result.ok and "_total" in result.output
