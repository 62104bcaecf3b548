"""A real cell process (HTTP + gRPC) over a real redis-server and a real bundle.

Covers the issue's acceptance tests: kill Redis mid-stream -> answers keep coming from lower
tiers within the deadline, never empty; restart it -> back to full ranking; a corrupt bundle
published while serving -> refused, the old bundle keeps serving.
"""
from __future__ import annotations

import contextlib
import json
import threading
import shutil
import time
from pathlib import Path
from typing import Any, Iterator

import grpc
import httpx
import pytest
import redis
from grpc_health.v1 import health_pb2, health_pb2_grpc

from prometheus_client.parser import text_string_to_metric_families

from observability.promtool import check_metrics
from regions.errors import InputError
from regions.processes import ManagedProcess, start_redis, wait_until
from regions.topology import Topology, load_topology
from replication.artifact_store import LocalArtifactStore
from serving.cell_runtime import CellSettings
from contracts.proto import recommend_pb2 as pb
from contracts.proto import recommend_pb2_grpc as pb_grpc
from tests.stack_helpers import publish_geo_bundles, start_cell, write_topology

pytestmark = pytest.mark.slow


class Cell:
    def __init__(self, topo: Topology, topo_file: Path, root: Path, version: str) -> None:
        self.topo, self.topo_file, self.root, self.version = topo, topo_file, root, version
        self.region = topo.region("us-east")
        self.base = f"http://127.0.0.1:{self.region.http_port}"
        self.redis: ManagedProcess | None = None
        self.proc: ManagedProcess | None = None

    @property
    def bundle_dir(self) -> Path:
        """The promoted us bundle, as the us geography's store holds it."""
        return self.root / "artifacts" / "geo" / "us" / "bundles" / self.version

    def start_redis(self) -> None:
        self.redis = start_redis(port=self.region.redis_port, data_dir=self.root / "redis", name="redis-us-east")

    def get(self, path: str, **params: Any) -> httpx.Response:
        return httpx.get(self.base + path, params=params, timeout=5.0)

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        text = self.get("/metrics").text
        return {(s.name, tuple(sorted(s.labels.items()))): s.value
                for family in text_string_to_metric_families(text) for s in family.samples}

    def homepage(self, user: str = "us-1", count: int = 8) -> dict[str, Any]:
        resp = self.get("/v1/recommendations/homepage", user_id=user, count=count)
        assert resp.status_code == 200, resp.text
        return resp.json()


@contextlib.contextmanager
def running_cell(root: Path, bundles: dict[str, Path], *, env: dict[str, str] | None = None) -> Iterator[Cell]:
    """A us-east cell and its redis-server under `root`, serving the us bundle of `bundles`."""
    topo_file = write_topology(root / "topology.toml")
    topo = load_topology(topo_file)
    version = publish_geo_bundles(bundles, root / "artifacts")["us"]
    c = Cell(topo, topo_file, root, version)
    c.start_redis()
    try:
        c.proc = start_cell(region="us-east", topology_file=topo_file, artifacts_root=root / "artifacts",
                            state_dir=root / "state", http_port=c.region.http_port, env=env)
        yield c
    finally:
        if c.proc:
            c.proc.kill()
        if c.redis:
            c.redis.kill()


@pytest.fixture(scope="module")
def cell(tmp_path_factory: pytest.TempPathFactory, tiny_geo_bundles: dict[str, Path]) -> Iterator[Cell]:
    with running_cell(tmp_path_factory.mktemp("cell"), tiny_geo_bundles) as c:
        yield c


def _users(cell: Cell) -> list[str]:
    users = json.loads((cell.bundle_dir / "users.json").read_text())
    return [u["user_id"] for u in users if u["user_id"].startswith("us-")][:20]


def test_homepage_is_fully_ranked_and_named(cell: Cell) -> None:
    body = cell.homepage(_users(cell)[0])
    assert body["tier"] == "full"
    assert body["region"] == "us-east"
    assert body["bundle_version"] == cell.version
    assert len(body["items"]) == 8
    assert len({i["item_id"] for i in body["items"]}) == 8


def test_unknown_user_gets_cold_start_answer(cell: Cell) -> None:
    body = cell.homepage("us-never-seen-before")
    assert len(body["items"]) == 8
    assert body["tier"] in ("full", "segment", "popularity")


@pytest.mark.parametrize(
    ("path", "params", "status", "field"),
    [
        ("/v1/recommendations/homepage", {"user_id": "us-1", "count": 0}, 422, "count"),
        ("/v1/recommendations/homepage", {"user_id": "us-1", "count": 101}, 422, "count"),
        ("/v1/recommendations/homepage", {"user_id": "us-1", "max_tier": "gold"}, 422, "max_tier"),
        ("/v1/recommendations/homepage", {"user_id": "us-1", "count": "many"}, 422, "count"),
        ("/v1/recommendations/similar", {"product_id": "no-such-sku"}, 404, "product_id"),
        ("/v1/recommendations/cart", {"cart_items": "no-such-sku"}, 404, "cart_items"),
        ("/v1/recommendations/cart", {"cart_items": ","}, 422, "cart_items"),
    ],
)
def test_bad_reads_get_clear_errors(cell: Cell, path: str, params: dict[str, Any], status: int, field: str) -> None:
    resp = cell.get(path, **params)
    assert resp.status_code == status, resp.text
    assert resp.json()["error"]["field"] == field


def test_similar_and_cart(cell: Cell) -> None:
    items = json.loads((cell.bundle_dir / "popularity.json").read_text())
    similar = cell.get("/v1/recommendations/similar", product_id=items[0], count=5).json()
    assert len(similar["items"]) == 5 and items[0] not in {i["item_id"] for i in similar["items"]}
    cart = cell.get("/v1/recommendations/cart", cart_items=f"{items[0]},{items[1]}", count=4).json()
    assert len(cart["items"]) == 4 and not {items[0], items[1]} & {i["item_id"] for i in cart["items"]}


def test_events_are_acknowledged_only_once_in_the_log(cell: Cell) -> None:
    client = redis.Redis(port=cell.region.redis_port, decode_responses=True)
    before = client.xlen("log:events")
    batch = [{"user_id": "us-7", "item_id": "sku-1", "type": "view", "seq": n} for n in range(3)]
    resp = httpx.post(cell.base + "/v1/events", json={"events": batch}, timeout=5)
    assert resp.status_code == 200, resp.text
    ack = resp.json()
    assert ack["accepted"] == 3 and ack["region"] == "us-east"
    assert client.xlen("log:events") == before + 3
    stored = client.xrange("log:events", min=ack["stream_ids"][0], max=ack["stream_ids"][-1])
    assert [int(f["seq"]) for _, f in stored] == [0, 1, 2]


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"events": [{"user_id": "us-7", "item_id": "sku-1", "type": "zap"}]}, 422, "events[0].type"),
        ({"events": [{"user_id": "us-7", "type": "view"}]}, 422, "events[0].item_id"),
        ({"events": [{"user_id": "us-7", "item_id": "x", "type": "view", "ts": time.time() + 86400}]}, 422, "events[0].ts"),
        ({"events": [{"user_id": "eu-7", "item_id": "sku-1", "type": "view"}]}, 422, "user_id"),
        ({"events": []}, 422, "events"),
        ({"events": [{"user_id": "us-7", "item_id": "sku-1", "type": "view"}] * 501}, 413, "events"),
        ("not json at all", 422, "body"),
    ],
)
def test_bad_events_change_nothing(cell: Cell, body: Any, status: int, field: str) -> None:
    client = redis.Redis(port=cell.region.redis_port, decode_responses=True)
    before = client.xlen("log:events")
    if isinstance(body, str):
        resp = httpx.post(cell.base + "/v1/events", content=body, timeout=5)
    else:
        resp = httpx.post(cell.base + "/v1/events", json=body, timeout=5)
    assert resp.status_code == status, resp.text
    assert resp.json()["error"]["field"] == field
    assert client.xlen("log:events") == before


@pytest.mark.parametrize(("params", "field"), [
    ({"user_id": "us-1", "count": "many"}, "count"), ({"user_id": "us-1", "count": 101}, "count"),
    ({"user_id": "u" * 129}, "user_id"), ({"user_id": "us-1", "max_tier": "gold"}, "max_tier"),
    ({"user_id": "us-1", "geography": "mars"}, "geography"),
])
def test_bad_reads_answer_the_one_error_body(cell: Cell, params: dict[str, Any], field: str) -> None:
    resp = httpx.get(cell.base + "/v1/recommendations/homepage", params=params, timeout=5)
    assert resp.status_code == 422 and resp.json() == {"error": {"field": field, "message": resp.json()["error"]["message"]}}


def test_grpc_recommend_log_events_and_health(cell: Cell) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{cell.region.grpc_port}") as channel:
        stub = pb_grpc.RecommenderStub(channel)
        resp = stub.Recommend(pb.RecommendRequest(user_id=_users(cell)[1], count=6, deadline_ms=150), timeout=2)
        assert len(resp.items) == 6 and resp.region == "us-east" and resp.tier == "full"
        anon = stub.Recommend(pb.RecommendRequest(user_id="us-1", anonymous=True, count=4), timeout=2)
        assert anon.tier == "popularity" and len(anon.items) == 4
        ack = stub.LogEvents(pb.EventBatch(events=[pb.Event(user_id="us-9", item_id="sku-2", type="cart", seq=5,
                                                            ts=time.time(), geo="us")]), timeout=2)
        assert ack.accepted == 1 and len(ack.stream_ids) == 1
        with pytest.raises(grpc.RpcError) as info:  # the cell never stamps an event with its own clock
            stub.LogEvents(pb.EventBatch(events=[pb.Event(user_id="us-9", item_id="sku-2", type="cart")]), timeout=2)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "events[0].ts" in (info.value.details() or "")
        with pytest.raises(grpc.RpcError) as info:  # a carried geography is still checked against residency
            stub.LogEvents(pb.EventBatch(events=[pb.Event(user_id="eu-9", item_id="sku-2", type="cart", ts=time.time(),
                                                          geo="eu")]), timeout=2)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "user_id" in (info.value.details() or "")
        with pytest.raises(grpc.RpcError) as info:
            stub.Recommend(pb.RecommendRequest(user_id="us-1", count=4, geography="mars"), timeout=2)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "geography" in (info.value.details() or "")
        carried = stub.Recommend(pb.RecommendRequest(user_id="us-1", count=4, geography="us"), timeout=2)
        assert len(carried.items) == 4
        with pytest.raises(grpc.RpcError) as info:
            stub.Recommend(pb.RecommendRequest(surface=pb.SIMILAR, product_id="nope", count=3), timeout=2)
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.RpcError) as info:
            stub.LogEvents(pb.EventBatch(events=[pb.Event(user_id="us-9", item_id="sku-2", type="zap", ts=time.time())]),
                          timeout=2)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "type" in (info.value.details() or "")
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service="shopnow.v1.Recommender"), timeout=2)
        assert health.status == health_pb2.HealthCheckResponse.SERVING


def test_readyz_and_metrics(cell: Cell) -> None:
    cell.homepage()
    ready = cell.get("/readyz").json()
    assert ready["bundle_version"] == cell.version and ready["redis_ok"] is True
    assert {"error_rate", "p99_ms", "qps", "tier_mix", "freshness", "replication"} <= set(ready)
    assert ready["freshness"]["stale"] is False
    text = cell.get("/metrics").text
    assert 'shopnow_cell_tier_choices_total{region="us-east",tier="full"}' in text
    assert check_metrics(text).ok, check_metrics(text).output
    metrics = cell.metrics()
    assert all(dict(labels).get("region") == "us-east" for _, labels in metrics)
    region = ("region", "us-east")
    assert metrics[("shopnow_cell_redis_ok", (region,))] == 1
    assert metrics[("shopnow_cell_index_frozen", (region,))] == 0
    assert metrics[("shopnow_cell_bundle_refused", (region,))] == 0
    assert metrics[("shopnow_cell_breaker_state", (("breaker", "redis"), region, ("state", "closed")))] == 1
    assert metrics[("shopnow_cell_injected_fault", (("fault", "ranking_latency"), region))] == 0
    assert cell.get("/healthz").json()["alive"] is True


def test_redis_killed_mid_stream_then_restarted(cell: Cell) -> None:
    users = _users(cell)
    assert cell.homepage(users[2])["tier"] == "full"  # also caches users[2]'s slate
    assert cell.redis is not None
    cell.redis.kill()
    tiers = []
    for n in range(30):
        started = time.perf_counter()
        body = cell.homepage(users[n % len(users)])
        elapsed_ms = (time.perf_counter() - started) * 1000
        assert len(body["items"]) == 8, body
        assert body["tier"] in ("segment", "popularity"), body
        assert body["latency_ms"] <= 150.0, body  # the cell's own deadline, not a benchmark
        tiers.append(body["tier"])
        assert elapsed_ms < 2000
    assert "segment" in tiers
    metrics = cell.metrics()
    assert metrics[("shopnow_cell_redis_ok", (("region", "us-east"),))] == 0
    # the failures must last BreakerSettings.min_failing_s (0.5 s) before the breaker opens
    wait_until(lambda: cell.homepage(users[0])["tier"] in ("segment", "popularity") and cell.metrics()[
        ("shopnow_cell_breaker_state", (("breaker", "redis"), ("region", "us-east"), ("state", "closed")))] == 0,
        timeout=10, interval=0.1, what="the redis breaker open while Redis is down")
    cell.start_redis()  # same port, same AOF directory: the data comes back
    wait_until(lambda: cell.homepage(users[3])["tier"] == "full", timeout=30, interval=0.5, what="full ranking after Redis restart")


def test_corrupt_bundle_is_refused_and_old_one_keeps_serving(cell: Cell) -> None:
    store = LocalArtifactStore(cell.root / "artifacts" / "geo" / "us")
    good = cell.bundle_dir
    bad_version = cell.version + "-corrupt"
    bad = cell.root / "artifacts" / "geo" / "us" / "bundles" / bad_version
    shutil.copytree(good, bad)
    manifest = json.loads((bad / "manifest.json").read_text())
    manifest["bundle_version"] = bad_version
    (bad / "manifest.json").write_text(json.dumps(manifest))
    ranker = bytearray((bad / "ranker.txt").read_bytes())
    ranker[len(ranker) // 2] ^= 0x01
    (bad / "ranker.txt").write_bytes(bytes(ranker))
    store.promote(bad_version)  # a broken pipeline: the pointer moved without verification
    wait_until(lambda: (cell.get("/readyz").json().get("bundle_refused") or {}).get("version") == bad_version,
               timeout=30, interval=0.5, what="the corrupt bundle to be refused")
    ready = cell.get("/readyz").json()
    assert ready["bundle_version"] == cell.version
    assert ready["bundle_refused"]["file"] == "ranker.txt"
    assert ready["bundle_refused"]["check"] == "sha256"
    body = cell.homepage()
    assert body["bundle_version"] == cell.version and len(body["items"]) == 8
    refusals = ("shopnow_cell_bundle_refusals_total", (("check", "sha256"), ("region", "us-east")))
    # the holder records the refusal (readyz) a moment before it counts it (metrics): wait for the count
    wait_until(lambda: cell.metrics().get(refusals) == 1, timeout=10, interval=0.2, what="the refusal counted")
    assert cell.metrics()[("shopnow_cell_bundle_refused", (("region", "us-east"),))] == 1
    store.rollback()
    wait_until(lambda: cell.metrics()[("shopnow_cell_bundle_refused", (("region", "us-east"),))] == 0,
               timeout=30, interval=0.5, what="the refused gauge to clear once the pointer is back on a good bundle")


def test_a_cell_without_any_usable_bundle_serves_the_packaged_popularity_list(cell: Cell) -> None:
    """No bundle in the store and no Redis at all: the homepage still has items."""
    region = cell.topo.region("us-west")
    empty_store = cell.root / "empty-artifacts"
    empty_store.mkdir()
    proc = start_cell(region="us-west", topology_file=cell.topo_file, artifacts_root=empty_store,
                      state_dir=cell.root / "state-empty", http_port=region.http_port)
    try:
        resp = httpx.get(f"http://127.0.0.1:{region.http_port}/v1/recommendations/homepage",
                         params={"user_id": "us-5", "count": 8}, timeout=5)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert body["tier"] == "popularity" and body["bundle_version"] == "packaged-popularity"
        assert len(body["items"]) == 8
        ready = httpx.get(f"http://127.0.0.1:{region.http_port}/readyz", timeout=5).json()
        assert ready["bundle_version"] == "packaged-popularity" and ready["redis_ok"] is False
    finally:
        proc.kill()


def test_a_user_of_another_geography_is_answered_anonymously_and_counted(cell: Cell) -> None:
    client = redis.Redis(port=cell.region.redis_port, decode_responses=True)
    body = cell.homepage("eu-3")
    assert body["tier"] == "segment" and len(body["items"]) == 8
    assert client.exists("cache:eu-3") == 0 and client.exists("uf:eu-3") == 0
    assert 'shopnow_cell_anonymous_answers_total{reason="foreign_user",region="us-east"}' in cell.get("/metrics").text


def test_a_bundle_holding_users_of_another_geography_is_refused_by_the_residency_check(cell: Cell, tiny_bundle: Path) -> None:
    """The global bundle (every geography's users) moved into the us store without verification."""
    store = LocalArtifactStore(cell.root / "artifacts" / "geo" / "us")
    version = "global-" + cell.version
    target = cell.root / "artifacts" / "geo" / "us" / "bundles" / version
    shutil.copytree(tiny_bundle, target)
    manifest = json.loads((target / "manifest.json").read_text())
    manifest["bundle_version"] = version
    manifest["metrics"]["geography"] = "us"  # claims to be a us bundle: the user ids give it away
    (target / "manifest.json").write_text(json.dumps(manifest))
    store.promote(version)
    try:
        wait_until(lambda: (cell.get("/readyz").json().get("bundle_refused") or {}).get("version") == version,
                   timeout=30, interval=0.5, what="the global bundle to be refused")
        refused = cell.get("/readyz").json()["bundle_refused"]
        assert refused["check"] == "residency" and "check_residency" in refused["message"]
        assert cell.get("/readyz").json()["bundle_version"] == cell.version
    finally:
        store.rollback()


def test_a_hung_redis_sends_reads_down_the_ladder_and_refuses_events_at_once(cell: Cell) -> None:
    """SIGSTOP, not kill: Redis accepts the connections and never answers. Reads must still be cut
    at the deadline; after two unacknowledged appends the log's breaker opens and a batch is refused
    fast (503) rather than held for the log client's timeouts, so the edge can store it in the peer."""
    import os
    import signal

    users = _users(cell)
    assert cell.redis is not None
    events = {"events": [{"user_id": users[0], "item_id": "i-1", "type": "view"}]}
    os.kill(cell.redis.pid, signal.SIGSTOP)
    try:
        tiers = []
        for n in range(20):
            body = cell.homepage(users[n % len(users)])
            assert len(body["items"]) == 8 and body["latency_ms"] <= 150.0, body
            tiers.append(body["tier"])
        assert set(tiers[5:]) <= {"segment", "popularity"}, tiers
        # Each of the first two appends waits the log client's timeout (and one retry): not acknowledged.
        # While the first waits, the cell answers other requests: the append is off the event loop (inline,
        # the wait froze every request of the cell, homepages included).
        pending: list[int] = []
        waiting = threading.Thread(target=lambda: pending.append(
            httpx.post(cell.base + "/v1/events", json=events, timeout=10.0).status_code))
        waiting.start()
        time.sleep(0.3)
        assert cell.get("/healthz").status_code == 200 and cell.homepage(users[1])["items"]
        assert waiting.is_alive(), "the blocked append held the other requests: it ran on the event loop"
        waiting.join()
        assert pending == [503]
        assert httpx.post(cell.base + "/v1/events", json=events, timeout=10.0).status_code == 503
        started = time.perf_counter()
        refused = httpx.post(cell.base + "/v1/events", json=events, timeout=5.0)
        took_ms = (time.perf_counter() - started) * 1000
        assert refused.status_code == 503 and "log breaker open" in refused.text and took_ms < 500, (refused.text, took_ms)
        ready = cell.get("/readyz")
        assert ready.status_code == 200 and ready.json()["redis_ok"] is False
    finally:
        os.kill(cell.redis.pid, signal.SIGCONT)
    wait_until(lambda: cell.homepage(users[3])["tier"] == "full", timeout=30, interval=0.5, what="full ranking after SIGCONT")
    wait_until(lambda: httpx.post(cell.base + "/v1/events", json=events, timeout=5.0).status_code == 200, timeout=30,
               interval=1.0, what="events acknowledged again (one trial after the log breaker's open time)")


def test_the_answer_latency_fault_slows_answers_outside_the_cells_own_timing(cell: Cell) -> None:
    (cell.root / "state" / "tokens.json").write_text(json.dumps({"t-chaos": "chaos", "t-viewer": "viewer"}))
    url, chaos = cell.base + "/admin/faults", {"Authorization": "Bearer t-chaos"}
    bad = httpx.post(url, json={"answer_latency_ms": [500, 200]}, headers=chaos, timeout=5.0)
    assert bad.status_code == 422 and "answer_latency_ms" in bad.text
    assert httpx.post(url, json={"answer_latency_ms": [200, 200]}, headers={"Authorization": "Bearer t-viewer"},
                      timeout=5.0).status_code == 403
    set_ = httpx.post(url, json={"answer_latency_ms": [200, 250]}, headers=chaos, timeout=5.0)
    assert set_.status_code == 200 and set_.json()["answer_latency_ms"] == [200.0, 250.0]
    try:
        started = time.perf_counter()
        body = cell.homepage()
        took_ms = (time.perf_counter() - started) * 1000
        assert took_ms >= 200 and body["latency_ms"] < 200, (took_ms, body["latency_ms"])
        channel = grpc.insecure_channel(f"127.0.0.1:{cell.region.grpc_port}")
        started = time.perf_counter()
        pb_grpc.RecommenderStub(channel).Recommend(pb.RecommendRequest(user_id="us-1", count=4), timeout=5.0)
        assert (time.perf_counter() - started) * 1000 >= 200
        channel.close()
        ready = cell.get("/readyz").json()
        assert ready["faults"]["answer_latency_ms"] == [200.0, 250.0]
        assert ready["p99_ms"] < 200, "the cell's own timing does not see the delay: it looks fine to itself"
    finally:
        assert httpx.delete(url, headers=chaos, timeout=5.0).json()["answer_latency_ms"] == [0.0, 0.0]


def _queued_reasons(cell: Cell, users: list[str]) -> list[set[str]]:
    """Homepages of `users` sent at once while each full ranking takes 150 ms (the ranking-latency
    fault): for each answer, the admission reasons it was lowered for."""
    (cell.root / "state" / "tokens.json").write_text(json.dumps({"t-chaos": "chaos"}))
    url, chaos = cell.base + "/admin/faults", {"Authorization": "Bearer t-chaos"}
    assert httpx.post(url, json={"ranking_latency_ms": 150}, headers=chaos, timeout=5.0).status_code == 200
    answers: list[dict[str, Any]] = []
    try:
        threads = [threading.Thread(target=lambda u=u: answers.append(cell.homepage(u))) for u in users]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=10)
    finally:
        httpx.delete(url, headers=chaos, timeout=5.0)
    assert len(answers) == len(users) and all(a["items"] for a in answers)
    return [{s["reason"] for s in a["skipped"] if s["reason"].startswith("admission_")} for a in answers]


def test_requests_beyond_the_request_slots_wait_and_the_wait_counts_as_queued(
        cell: Cell, tmp_path: Path, tiny_geo_bundles: dict[str, Path]) -> None:
    users = _users(cell)[:4]
    # One slot: the first homepage holds it through its 150 ms ranking, the other three wait for it
    # and admission sees that wait (queue time from the arrival stamp): they skip full ranking.
    with running_cell(tmp_path, tiny_geo_bundles, env={"REGIONCTL_CELL_REQUEST_SLOTS": "1"}) as single:
        reasons = _queued_reasons(single, users)
    assert sum("admission_queue_time" in r for r in reasons) >= 2, reasons
    # The control, the module's cell with the default 4 slots: the four start at once, none queued.
    assert not any("admission_queue_time" in r for r in _queued_reasons(cell, users)), reasons


@pytest.mark.parametrize("value", ["0", "many", "1000"])
def test_a_bad_request_slots_setting_is_refused_naming_the_variable(value: str) -> None:
    with pytest.raises(InputError) as err:
        CellSettings.from_env({"REGIONCTL_CELL_REQUEST_SLOTS": value})
    assert "REGIONCTL_CELL_REQUEST_SLOTS" in str(err.value)
    with pytest.raises(InputError) as err:
        CellSettings.from_env({"REGIONCTL_CELL_REQUEST_SLOT": "4"})
    assert "REGIONCTL_CELL_REQUEST_SLOTS" in str(err.value), "an unknown variable is refused, naming the known ones"
    assert CellSettings.from_env({"REGIONCTL_CELL_REQUEST_SLOTS": "8"}).request_slots == 8
