"""The edge router against STAND-IN cells (tests/edge/edge_fakes.py: real gRPC/HTTP servers on
loopback running a tiny fake Recommender, not the project's cell) and a real SQLite control store.
The lead's end-to-end tests run the same edge against real cells."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest
from fastapi.testclient import TestClient

from failover.control_stores import store_from_url
from edge.router import create_app
from contracts.store_keys import TABLE_KEY
from edge.last_resort import PACKAGED_LAST_RESORT, LastResort, load_last_resort
from edge.routing import rendezvous_order
from edge.settings import EdgeSettings
from regions.processes import LOOPBACK, free_port, wait_until
from replication.artifact_store import LocalArtifactStore
from replication.manifest import build_manifest, write_manifest
from tests.edge.edge_fakes import StandInStack, stack_iter

LAYOUT = {"us": ["us-east", "us-west"], "eu": ["eu-west"]}
FAST = EdgeSettings(poll_interval_s=0.05)
LAST = LastResort(items=tuple(f"pop-{n}" for n in range(50)), source="test list")


@pytest.fixture
def stack() -> Iterator[StandInStack]:
    yield from stack_iter(LAYOUT)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Any]:
    with store_from_url(f"sqlite:///{tmp_path / 'control.db'}") as s:
        yield s


@pytest.fixture
def edge(stack: StandInStack, store: Any) -> Iterator[TestClient]:
    app = create_app(topology=stack.topology, store=store, last_resort=LAST, settings=FAST)
    with TestClient(app) as client:
        wait_until(lambda: client.get("/readyz").status_code == 200, timeout=10, what="edge ready")
        yield client


def write_table(store: Any, version: int, geos: dict[str, Any], **extra: Any) -> None:
    store.put(TABLE_KEY, json.dumps({"version": version, "updated_at": time.time(), "geos": geos, **extra}))


def wait_for_version(client: TestClient, version: int) -> dict[str, Any]:
    wait_until(lambda: client.get("/readyz").json()["table_version"] == version, timeout=10,
               what=f"routing table version {version} at the edge")
    return client.get("/readyz").json()


def primary_of(user: str, weights: dict[str, int]) -> str:
    return rendezvous_order(user, weights)[0]


# -- reads -------------------------------------------------------------------------------------------

def test_homepage_goes_to_the_users_region_with_deadline_and_user(edge: TestClient, stack: StandInStack) -> None:
    answer = edge.get("/v1/recommendations/homepage", params={"user_id": "us-42", "count": 7}).json()
    expected = primary_of("us-42", {"us-east": 1, "us-west": 1})
    assert answer["region"] == expected and len(answer["items"]) == 7
    assert [t["region"] for t in answer["tried"]] == [expected] and answer["routing_version"] == 0
    assert answer["edge_ms"] >= 0 and answer["outcome"] == "primary"
    sent = stack.cells[expected].requests[-1]
    assert (sent.user_id, sent.anonymous, sent.count, sent.geography) == ("us-42", False, 7, "us")
    assert 0 < sent.deadline_ms <= stack.topology.settings.request_deadline_ms


def test_a_failed_cell_is_retried_once_in_the_same_geography(edge: TestClient, stack: StandInStack) -> None:
    first = primary_of("us-42", {"us-east": 1, "us-west": 1})
    other = ({"us-east", "us-west"} - {first}).pop()
    stack.cells[first].mode = "fail"
    answer = edge.get("/v1/recommendations/homepage", params={"user_id": "us-42"}).json()
    assert answer["region"] == other
    assert [(t["region"], t["result"]) for t in answer["tried"]] == [(first, "error"), (other, "ok")]
    assert answer["outcome"] == "retry"
    assert stack.cells[other].user_ids() == ["us-42"] and stack.cells["eu-west"].requests == []
    assert 'shopnow_edge_retries_total{geo="us"} 1.0' in edge.get("/metrics").text


def test_a_slow_cell_is_given_up_within_the_deadline(edge: TestClient, stack: StandInStack) -> None:
    first = primary_of("us-9", {"us-east": 1, "us-west": 1})
    stack.cells[first].mode = "slow"
    answer = edge.get("/v1/recommendations/homepage", params={"user_id": "us-9"}).json()
    assert [t["result"] for t in answer["tried"]] == ["timeout", "ok"]
    assert answer["region"] != first and answer["tier"] == "full"


def test_when_the_geography_fails_another_one_is_asked_without_the_user_id(edge: TestClient, stack: StandInStack) -> None:
    stack.cells["us-east"].mode = stack.cells["us-west"].mode = "fail"
    answer = edge.get("/v1/recommendations/homepage", params={"user_id": "us-77"}).json()
    assert answer["region"] == "eu-west" and answer["tried"][-1]["anonymous"] is True and answer["outcome"] == "cross_geo"
    (sent,) = stack.cells["eu-west"].requests
    assert (sent.user_id, sent.anonymous, sent.geography) == ("", True, "")
    assert 'shopnow_edge_cross_geo_anonymous_total{geo="us",region="eu-west"} 1.0' in edge.get("/metrics").text


def test_an_anonymous_route_from_the_table_never_sends_the_user_id(edge: TestClient, stack: StandInStack, store: Any) -> None:
    write_table(store, 3, {"us": {"regions": {"us-east": 50, "us-west": 50}},
                           "eu": {"regions": {"us-east": 50, "us-west": 50}, "anonymous": True}})
    wait_for_version(edge, 3)
    for n in range(20):
        answer = edge.get("/v1/recommendations/homepage", params={"user_id": f"eu-{n}"}).json()
        assert answer["region"] in ("us-east", "us-west")
    received = stack.cells["us-east"].requests + stack.cells["us-west"].requests
    assert len(received) == 20 and all(r.user_id == "" and r.anonymous and not r.geography for r in received)
    assert stack.cells["eu-west"].requests == []


def test_nothing_answers_the_edge_serves_its_own_list(edge: TestClient, stack: StandInStack) -> None:
    for cell in stack.cells.values():
        cell.mode = "fail"
    answer = edge.get("/v1/recommendations/homepage", params={"user_id": "eu-5", "count": 12}).json()
    assert (answer["tier"], answer["region"]) == ("edge-popularity", "edge")
    assert [i["item_id"] for i in answer["items"]] == list(LAST.items[:12])
    assert 'shopnow_edge_last_resort_total{surface="homepage"} 1.0' in edge.get("/metrics").text


def test_an_empty_answer_counts_as_a_failure(edge: TestClient, stack: StandInStack) -> None:
    for cell in stack.cells.values():
        cell.mode = "empty"
    answer = edge.get("/v1/recommendations/homepage", params={"user_id": "us-5"}).json()
    assert answer["items"] and answer["tier"] == "edge-popularity"


@pytest.mark.parametrize(("mode", "status", "field", "reason"), [
    ("not_found", 404, "product_id", "not_found"),
    ("refuse", 422, "request", "invalid"),
])
def test_a_read_the_cell_refuses_is_passed_on_at_once(edge: TestClient, stack: StandInStack, mode: str, status: int,
                                                      field: str, reason: str) -> None:
    for cell in stack.cells.values():
        cell.mode = mode
    resp = edge.get("/v1/recommendations/similar", params={"product_id": "no-such-sku", "count": 4})
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error"} and body["error"]["field"] == field and "stand-in" in body["error"]["message"]
    assert sum(len(c.requests) for c in stack.cells.values()) == 1  # every region would say the same: none asked
    metrics = edge.get("/metrics").text
    assert f'shopnow_edge_client_errors_total{{reason="{reason}",surface="similar"}} 1.0' in metrics
    assert "shopnow_edge_last_resort_total{" not in metrics  # a client's mistake is never answered from the list


def test_similar_and_cart_reach_the_cell(edge: TestClient, stack: StandInStack) -> None:
    similar = edge.get("/v1/recommendations/similar", params={"product_id": "sku-1", "count": 3}).json()
    cart = edge.get("/v1/recommendations/cart", params={"cart_items": "sku-1, sku-2", "user_id": "eu-3"}).json()
    assert len(similar["items"]) == 3 and cart["region"] == "eu-west"
    sent = stack.cells["eu-west"].requests[-1]
    assert (list(sent.cart_items), sent.user_id) == (["sku-1", "sku-2"], "eu-3")


# -- the table ----------------------------------------------------------------------------------------

def test_a_new_table_is_used_and_its_version_shown(edge: TestClient, stack: StandInStack, store: Any) -> None:
    write_table(store, 5, {"us": {"regions": {"us-east": 0, "us-west": 100}}},
                max_tier={"us-west": {"tier": "segment", "fraction": 1.0}})
    ready = wait_for_version(edge, 5)
    assert ready["table_source"] == "store" and ready["table_first_seen_at"] is not None
    for n in range(30):
        answer = edge.get("/v1/recommendations/homepage", params={"user_id": f"us-{n}"}).json()
        assert answer["region"] == "us-west" and answer["routing_version"] == 5
    assert stack.cells["us-east"].requests == []
    assert {r.max_tier for r in stack.cells["us-west"].requests} == {"segment"}
    assert "shopnow_edge_routing_table_version 5.0" in edge.get("/metrics").text


def test_a_malformed_table_keeps_the_last_good_one(edge: TestClient, store: Any) -> None:
    write_table(store, 6, {"us": {"regions": {"us-east": 100, "us-west": 0}}})
    wait_for_version(edge, 6)
    store.put(TABLE_KEY, json.dumps({"version": 7, "geos": {"eu": {"regions": {"us-east": 100}}}}))
    wait_until(lambda: "geos.eu.regions.us-east" in edge.get("/readyz").json()["table_error"], timeout=10,
               what="the edge to report the bad table")
    assert edge.get("/readyz").json()["table_version"] == 6
    assert edge.get("/v1/recommendations/homepage", params={"user_id": "us-1"}).json()["region"] == "us-east"


# -- validation -----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("path", "params", "headers", "status"), [
    ("/v1/recommendations/homepage", {"user_id": "us-1", "count": 0}, {}, 422),
    ("/v1/recommendations/homepage", {"user_id": "us-1", "count": 101}, {}, 422),
    ("/v1/recommendations/homepage", {"user_id": "us-1", "count": "many"}, {}, 422),
    ("/v1/recommendations/homepage", {"count": 5}, {}, 422),
    ("/v1/recommendations/homepage", {"user_id": "u" * 129}, {}, 422),
    ("/v1/recommendations/homepage", {"user_id": "us-1"}, {"X-Deadline-Ms": "soon"}, 422),
    ("/v1/recommendations/similar", {"count": 5}, {}, 422),
    ("/v1/recommendations/cart", {"cart_items": " , "}, {}, 422),
    ("/v1/recommendations/homepage", {"user_id": "us-1", "count": 100}, {"X-Deadline-Ms": "80"}, 200),
])
def test_reads_are_validated_like_a_cell(edge: TestClient, path: str, params: dict[str, Any],
                                         headers: dict[str, str], status: int) -> None:
    resp = edge.get(path, params=params, headers=headers)
    assert resp.status_code == status
    if status != 200:  # the cell's error body: {"error": {"field", "message"}}, FastAPI's validation included
        assert set(resp.json()) == {"error"} and set(resp.json()["error"]) == {"field", "message"}


@pytest.mark.parametrize(("body", "status", "field"), [
    ({"events": [{"user_id": "us-1", "item_id": "i", "type": "hover"}]}, 422, "events[0].type"),
    ({"events": [{"item_id": "i", "type": "view"}]}, 422, "events[0].user_id"),
    ({"events": [{"user_id": "us-1", "type": "view"}]}, 422, "events[0].item_id"),
    ({"events": []}, 422, "events"),
    ({"event": []}, 422, "events"),
    ({"events": [{"user_id": "us-1", "item_id": "i", "type": "view"}] * 501}, 413, "events"),
])
def test_events_are_validated(edge: TestClient, body: Any, status: int, field: str) -> None:
    resp = edge.post("/v1/events", json=body)
    assert resp.status_code == status and resp.json()["error"]["field"] == field


# -- events -----------------------------------------------------------------------------------------------

def _events(*users: str) -> list[dict[str, Any]]:
    return [{"event_id": f"e{n}", "user_id": u, "item_id": f"sku-{n}", "type": "view", "ts": time.time()}
            for n, u in enumerate(users)]


def test_events_go_to_each_users_geography_only(edge: TestClient, stack: StandInStack) -> None:
    resp = edge.post("/v1/events", json={"events": _events("us-1", "eu-1", "us-2", "eu-2", "us-1")})
    assert resp.status_code == 200 and resp.json()["accepted"] == 5
    assert sorted(stack.cells["eu-west"].event_users()) == ["eu-1", "eu-2"]
    us = stack.cells["us-east"].event_users() + stack.cells["us-west"].event_users()
    assert sorted(us) == ["us-1", "us-1", "us-2"]
    assert set(resp.json()["stream_ids"]) == {f"e{n}" for n in range(5)}
    carried = [(e.user_id, e.geo, e.HasField("ts")) for b in stack.cells["eu-west"].batches for e in b.events]
    assert carried == [("eu-1", "eu", True), ("eu-2", "eu", True)]  # the geography and ts travel with the event


def test_events_no_region_of_the_geography_stores_them_503(edge: TestClient, stack: StandInStack) -> None:
    stack.cells["eu-west"].events_mode = "fail"
    resp = edge.post("/v1/events", json={"events": _events("us-1", "eu-1")})
    body = resp.json()
    assert resp.status_code == 503 and body["not_stored"] == ["e1"] and body["accepted"] == 1
    assert body["error"]["field"] == "events" and "eu-west" in body["error"]["message"]
    us = stack.cells["us-east"].event_users() + stack.cells["us-west"].event_users()
    assert us == ["us-1"]  # the eu event never went to a us region


def test_events_fail_over_inside_the_geography(edge: TestClient, stack: StandInStack) -> None:
    first = rendezvous_order("us-3", {"us-east": 1, "us-west": 1})[0]
    stack.cells[first].events_mode = "fail"
    resp = edge.post("/v1/events", json={"events": _events("us-3")})
    assert resp.status_code == 200 and list(resp.json()["stored"]) == [({"us-east", "us-west"} - {first}).pop()]


def test_a_region_that_never_answers_leaves_time_to_store_events_in_the_next(edge: TestClient, stack: StandInStack) -> None:
    """A blackholed first region (the edge-cut game day) must not eat the whole events deadline: it
    gets its share (events_first_attempt_share of 1 s) and the peer stores the batch within the deadline."""
    first = rendezvous_order("us-3", {"us-east": 1, "us-west": 1})[0]
    stack.cells[first].events_mode = "hang"
    started = time.perf_counter()
    resp = edge.post("/v1/events", json={"events": _events("us-3")})
    assert resp.status_code == 200 and list(resp.json()["stored"]) == [({"us-east", "us-west"} - {first}).pop()], resp.json()
    assert time.perf_counter() - started < 1.5


def test_a_cell_whose_batches_time_out_is_ejected_and_the_next_batches_go_to_its_peer(
        edge: TestClient, stack: StandInStack) -> None:
    """Event batches feed the edge's ejection too (edge.ejection): after five timeouts in a row the
    hung cell is no longer asked first; the batches are stored by its peer at once."""
    first = rendezvous_order("us-3", {"us-east": 1, "us-west": 1})[0]
    peer = ({"us-east", "us-west"} - {first}).pop()
    stack.cells[first].events_mode = "hang"
    for n in range(8):
        resp = edge.post("/v1/events", json={"events": [{**_events("us-3")[0], "event_id": f"ej-{n}"}]})
        assert resp.status_code == 200 and list(resp.json()["stored"]) == [peer], resp.json()
    assert stack.cells[first].hung == 5, "only the five batches before the ejection waited on the hung cell"
    ejection = edge.get("/readyz").json()["ejection"]
    assert ejection["enabled"] and list(ejection["ejected"]) == [first], ejection
    metrics = edge.get("/metrics").text
    assert f'shopnow_edge_ejections_total{{event="ejected",region="{first}"}} 1.0' in metrics
    assert "shopnow_edge_ejected_cells 1.0" in metrics


def test_events_refused_by_the_cell_are_422_not_retried(edge: TestClient, stack: StandInStack) -> None:
    for cell in stack.cells.values():
        cell.events_mode = "refuse"
    resp = edge.post("/v1/events", json={"events": _events("eu-1")})
    assert resp.status_code == 422 and resp.json()["not_stored"] == ["e0"]


# -- the HTTP transport, health, the last-resort list, the CLI -----------------------------------------

def test_the_http_transport_reaches_a_cells_http_api(store: Any) -> None:
    for stack in stack_iter(LAYOUT, http=True):
        app = create_app(topology=stack.topology, store=store, last_resort=LAST,
                         settings=EdgeSettings(poll_interval_s=0.05, transport="http"))
        with TestClient(app) as client:
            answer = client.get("/v1/recommendations/homepage", params={"user_id": "eu-8", "count": 4}).json()
            assert answer["region"] == "eu-west" and len(answer["items"]) == 4
            assert stack.cells["eu-west"].user_ids() == ["eu-8"]
            assert client.post("/v1/events", json={"events": _events("eu-8")}).status_code == 200
            assert stack.cells["eu-west"].event_users() == ["eu-8"]


def test_health_and_readiness(edge: TestClient) -> None:
    assert edge.get("/healthz").json() == {"status": "ok"}
    ready = edge.get("/readyz").json()
    assert ready["ready"] and ready["table_version"] == 0 and ready["table_source"] == "default"
    assert ready["last_resort"]["items"] == len(LAST.items)


def test_last_resort_from_the_newest_bundle_else_packaged(tmp_path: Path) -> None:
    bundle = tmp_path / "staging" / "v1"
    bundle.mkdir(parents=True)
    (bundle / "popularity.json").write_text(json.dumps(["sku-9", "sku-3"]))
    write_manifest(bundle, build_manifest(bundle, bundle_version="v1", created_at=1.0, schema_version=1,
                                          data_watermark=0.0, metrics={}))
    LocalArtifactStore(tmp_path / "artifacts").publish(bundle)
    got = load_last_resort(artifacts_url=f"file://{tmp_path / 'artifacts'}")
    assert (got.items, got.source) == (("sku-9", "sku-3"), "bundle v1")
    missing = load_last_resort(artifacts_url=f"file://{tmp_path / 'nothing-here'}")
    assert missing.source == "packaged" and missing.note and len(missing.items) >= 100
    assert missing.items == tuple(json.loads(PACKAGED_LAST_RESORT.read_text()))


def test_the_cli_serves_on_loopback(tmp_path: Path, stack: StandInStack) -> None:
    topo = stack.topology
    lines = ["[settings]", f"edge_port = {topo.settings.edge_port}", f"controller_port = {topo.settings.controller_port}"]
    lines += ["[geographies.us]", "peak_share = 0.5", "[geographies.eu]", "peak_share = 0.5"]
    for r in topo.regions.values():
        lines += [f"[regions.{r.name}]", f'geography = "{r.geography}"', "capacity_qps = 100",
                  f"http_port = {r.http_port}", f"grpc_port = {r.grpc_port}", f"redis_port = {r.redis_port}"]
    (tmp_path / "topology.toml").write_text("\n".join(lines) + "\n")
    port = free_port()
    code = ("import typer; from regionctl.edge_cmds import register; app = typer.Typer(); register(app); "
            "app.command('noop')(lambda: None); app()")
    argv = [sys.executable, "-c", code, "edge", "--store", f"sqlite:///{tmp_path / 'c.db'}", "--port", str(port),
            "--topology", str(tmp_path / "topology.toml")]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=Path(__file__).parents[2])
    try:
        url = f"http://{LOOPBACK}:{port}"

        def ready() -> bool:
            try:
                return httpx.get(f"{url}/readyz", timeout=1, trust_env=False).status_code == 200
            except httpx.HTTPError:
                return proc.poll() is not None

        wait_until(ready, timeout=30, what="regionctl edge to serve /readyz")
        assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
        answer = httpx.get(f"{url}/v1/recommendations/homepage", params={"user_id": "eu-1"}, trust_env=False).json()
        assert answer["region"] == "eu-west"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
