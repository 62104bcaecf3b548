"""The control API over a real controller (stepped by hand) probing STAND-IN cells.

Stand-in cells: tests/failover/standin_cell.py (threads serving /readyz and the homepage per
docs/interfaces.md). The API runs in-process through FastAPI's TestClient; the standby-to-leader
path over real sockets is covered by test_controller's two-process test.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest
from fastapi.testclient import TestClient

from failover.auth import TokenBook, parse_tokens
from failover.control_api import create_app, parse_duration
from failover.controller import Controller
from failover.drill_runner import DrillRunner
from contracts.store_keys import TABLE_KEY
from failover.sqlite_store import SqliteStore
from regions.errors import InputError
from tests.failover.controller_helpers import Rig, make_rig

TOKENS = {"v" * 20: {"role": "viewer", "name": "vera"}, "d" * 20: {"role": "director", "name": "dan"},
          "c" * 20: {"role": "chaos", "name": "cleo"}}
BEARER = {"viewer": "v" * 20, "director": "d" * 20, "chaos": "c" * 20, "unknown": "u" * 20}


@dataclass
class Api:
    client: TestClient
    controller: Controller
    store: SqliteStore
    rig: Rig

    def call(self, method: str, path: str, role: str | None = "director", **kwargs: Any) -> Any:
        headers = {"Authorization": f"Bearer {BEARER[role]}"} if role else {}
        return self.client.request(method, path, headers=headers, **kwargs)

    def step(self) -> None:
        self.controller.step(time.time())


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    for rig in make_rig():
        store = SqliteStore(tmp_path / "control.db")
        ctl = rig.controller(store)
        ctl.step(time.time())
        app = create_app(controller=ctl, tokens=TokenBook(parse_tokens(TOKENS)),
                         drills=DrillRunner(ctl, reports_dir=tmp_path / "drills"))
        with TestClient(app) as client:
            yield Api(client=client, controller=ctl, store=store, rig=rig)
        store.close()


ENDPOINTS = {
    "status": ("GET", "/v1/status", {}),
    "journal": ("GET", "/v1/journal?limit=5", {}),
    "drain": ("POST", "/v1/regions/us-east/drain", {"json": {"reason": "auth test", "ttl": "1h"}}),
    "undrain": ("POST", "/v1/regions/us-east/undrain", {"json": {"reason": "auth test"}}),
    "steer": ("POST", "/v1/steer", {"json": {"geography": "us", "weights": {"us-east": 60, "us-west": 40},
                                             "reason": "auth test"}}),
    "unsteer": ("DELETE", "/v1/steer/us?reason=auth+test", {}),
    "drill-plan": ("POST", "/v1/drills", {"json": {"region": "us-east", "dry_run": True}}),
    "drill-get": ("GET", "/v1/drills/nope", {}),
}
ALLOWED = {
    "viewer": {"status", "journal", "drill-get"},
    "director": set(ENDPOINTS),
    "chaos": {"status", "journal", "drill-get"},
}


@pytest.mark.parametrize("endpoint", sorted(ENDPOINTS))
@pytest.mark.parametrize("role", [None, "unknown", "viewer", "director", "chaos"])
def test_auth_matrix(api: Api, role: str | None, endpoint: str) -> None:
    method, path, kwargs = ENDPOINTS[endpoint]
    response = api.call(method, path, role, **kwargs)
    if role in (None, "unknown"):
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"] == "Bearer"
    elif endpoint in ALLOWED[role]:
        assert response.status_code not in (401, 403), response.text
    else:
        assert response.status_code == 403
        assert role in response.json()["error"]["message"]


def test_a_drain_is_applied_and_journaled_with_the_actor(api: Api) -> None:
    response = api.call("POST", "/v1/regions/us-west/drain", json={"reason": "kernel patch", "ttl": "2h"})
    assert response.status_code == 200, response.text
    drain = response.json()["overrides"]["drains"]["us-west"]
    assert drain["expires_at"] - drain["created_at"] == pytest.approx(7200)
    api.step()
    status = api.call("GET", "/v1/status", "viewer").json()
    assert status["regions"]["us-west"]["state"] == "drained"
    assert status["table"]["geos"]["us"]["regions"] == {"us-east": 100, "us-west": 0}
    entries = api.call("GET", "/v1/journal?limit=50", "viewer").json()["entries"]
    drains = [e for e in entries if e["action"] == "drain"]
    assert drains[-1]["actor"] == "director:dan" and drains[-1]["reason"] == "kernel patch"
    assert api.call("POST", "/v1/regions/us-west/undrain", json={"reason": "patched"}).status_code == 200


def test_status_shows_what_operators_need(api: Api) -> None:
    status = api.call("GET", "/v1/status", "viewer").json()
    east = status["regions"]["us-east"]
    assert east["state"] == "healthy" and east["bundle_version"] == "v1" and east["tier_mix"]["full"] == 1.0
    assert {(r["source"], r["destination"]) for r in status["replication"]} == {("us-east", "us-west"),
                                                                               ("us-west", "us-east")}
    assert status["leader"]["holder"] == "A" and status["fail_static"] is False


BAD_INPUT = [
    ("POST", "/v1/regions/us-middle/drain", {"reason": "x"}, "region"),
    ("POST", "/v1/regions/us-east/drain", {"reason": ""}, "reason"),
    ("POST", "/v1/regions/us-east/drain", {"reason": "x", "ttl": -5}, "ttl"),
    ("POST", "/v1/regions/us-east/drain", {"reason": "x", "ttl": "soon"}, "ttl"),
    ("POST", "/v1/regions/us-east/drain", {"reason": "x", "ttl": "30d"}, "ttl_s"),
    ("POST", "/v1/regions/eu-west/drain", {"reason": "x", "force": True}, "region"),
    ("POST", "/v1/regions/us-east/undrain", {"reason": "x"}, "region"),
    ("POST", "/v1/steer", {"geography": "us", "weights": {"us-east": 70, "us-west": 0}, "reason": "x"}, "weights"),
    ("POST", "/v1/steer", {"geography": "us", "weights": {"us-east": 50, "us-west": 50}, "reason": "x"},
     "weights.us-west"),
    ("POST", "/v1/steer", {"geography": "mars", "weights": {"us-east": 100}, "reason": "x"}, "geography"),
    ("POST", "/v1/steer", {"geography": "us", "weights": {"eu-west": 100}, "reason": "x"}, "weights.eu-west"),
    ("POST", "/v1/steer", {"geography": "us", "weights": {"us-east": 100}, "reason": "x", "ttl": "-1h"}, "ttl"),
    ("DELETE", "/v1/steer/us", None, "geography"),
    ("POST", "/v1/drills", {"region": "atlantis", "dry_run": True}, "region"),
    # FastAPI's own validation of the bodies answers with the same {"error": {field, message}} body
    ("POST", "/v1/steer", {"weights": {"us-east": 100}, "reason": "x"}, "geography"),
    ("POST", "/v1/steer", {"geography": "us", "weights": {"us-east": "lots"}, "reason": "x"}, "weights.us-east"),
    ("POST", "/v1/drills", {"dry_run": True}, "region"),
]


@pytest.mark.parametrize(("method", "path", "body", "field"), BAD_INPUT)
def test_bad_input_is_refused_and_the_store_is_byte_identical(api: Api, method: str, path: str, body: Any,
                                                               field: str) -> None:
    # us-west is drained first, so "weight to a drained region" can be tried
    assert api.call("POST", "/v1/regions/us-west/drain", json={"reason": "setup"}).status_code == 200
    api.step()
    before = api.store.list("")
    kwargs = {"json": body} if body is not None else {"params": {"reason": "x"}}
    response = api.call(method, path, **kwargs)
    assert 400 <= response.status_code < 500, response.text
    assert response.json()["error"]["field"] == field
    assert api.store.list("") == before


def test_a_standby_answers_changes_with_503_naming_the_leader(api: Api, tmp_path: Path) -> None:
    other = SqliteStore(tmp_path / "control.db")
    standby = api.rig.controller(other, holder="B")
    standby.step(time.time())
    app = create_app(controller=standby, tokens=TokenBook(parse_tokens(TOKENS)),
                     drills=DrillRunner(standby, reports_dir=tmp_path / "drills"))
    with TestClient(app) as client:
        headers = {"Authorization": f"Bearer {BEARER['director']}"}
        response = client.post("/v1/regions/us-east/drain", json={"reason": "x"}, headers=headers)
        assert response.status_code == 503
        assert response.json()["leader"] == "A"
        assert client.get("/v1/status", headers=headers).json()["leader"]["holder"] == "A"
        assert client.post("/v1/drills", json={"region": "us-east", "reason": "x"}, headers=headers).status_code == 503
    other.close()


def test_drill_dry_run_shows_the_plan_and_verdicts_without_acting(api: Api) -> None:
    before = api.store.list("")
    response = api.call("POST", "/v1/drills", "director", json={"region": "us-east", "dry_run": True, "hold": "5s"})
    assert response.status_code == 200, response.text
    plan = response.json()["plan"]
    assert plan["ok"], plan["checks"]
    assert [s["kind"] for s in plan["steps"]][:4] == ["shift", "drain", "hold", "undrain"]
    assert plan["steps"][0]["hold_s"] == 5
    assert api.store.list("") == before
    api.rig.cells["us-west"].bundle_version = "v2"
    api.step()
    plan = api.call("POST", "/v1/drills", "director", json={"region": "us-east", "dry_run": True}).json()["plan"]
    assert not plan["ok"] and [c["name"] for c in plan["checks"] if not c["passed"]] == ["bundle"]
    refused = api.call("POST", "/v1/drills", "director", json={"region": "us-east", "reason": "game day"})
    assert refused.status_code == 409 and "bundle" in refused.json()["error"]["message"]
    assert api.store.get(TABLE_KEY) is not None and api.store.list("control/overrides") == {}


@pytest.mark.parametrize(("text", "seconds"), [
    ("30s", 30.0), ("10m", 600.0), ("1h", 3600.0), ("24h", 86400.0), ("1.5d", 129600.0), ("90", 90.0), (45, 45.0),
    (None, None),
])
def test_durations(text: Any, seconds: float | None) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "1 hour", "h", "-5m", "0s", "1h30m", True])
def test_bad_durations_say_what_is_allowed(text: Any) -> None:
    with pytest.raises(InputError, match="ttl"):
        parse_duration(text)


@pytest.mark.parametrize(("text", "weights"), [
    ("us-east=70,us-west=30", {"us-east": 70, "us-west": 30}),
    (" us-east = 100 ", {"us-east": 100}),
    ("us-east=0,us-west=100,", {"us-east": 0, "us-west": 100}),
])
def test_cli_weights(text: str, weights: dict[str, int]) -> None:
    from regionctl.controller_cmds import parse_weights

    assert parse_weights(text) == weights


@pytest.mark.parametrize("text", ["", "us-east", "us-east=70%", "=50", "us-east=-5", "us-east=x"])
def test_cli_weights_refuse_what_is_not_region_equals_percent(text: str) -> None:
    from regionctl.controller_cmds import parse_weights

    with pytest.raises(InputError, match="--weights"):
        parse_weights(text)
