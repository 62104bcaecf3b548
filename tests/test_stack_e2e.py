"""The whole local stack, real processes: 3 redis-servers, 3 cells, replicators, feature updaters,
two controllers and the edge, started by regions.stack.up exactly as `regionctl up` does.

Measures (printed, never asserted as timings): detection time (region killed -> controller marks
it unhealthy) and steering time (routing table written -> edge uses it). Asserts behaviour: the
homepage through the edge is never empty while a region dies, personal data stays in its
geography, replication copies acknowledged events to the peer, `down` stops exactly what `up` started.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest
import redis

from failover.control_api import ControlClient
from regions import stack
from regionctl.stack_specs import stack_specs
from regions.processes import wait_until
from regions.topology import Topology, load_topology
from tests.stack_helpers import publish_and_promote, write_topology

pytestmark = pytest.mark.slow


class Stack:
    def __init__(self, root: Path, topo_file: Path, topo: Topology) -> None:
        self.root, self.topo_file, self.topo = root, topo_file, topo
        self.state = root / "stack"
        self.edge = f"http://127.0.0.1:{topo.settings.edge_port}"
        self.api = f"http://127.0.0.1:{topo.settings.controller_port}"

    def viewer(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {stack.token_for(self.state, 'viewer')}"}

    def status(self) -> dict[str, Any]:
        resp = httpx.get(self.api + "/v1/status", headers=self.viewer(), timeout=2)
        resp.raise_for_status()
        return resp.json()

    def homepage(self, user: str) -> dict[str, Any]:
        resp = httpx.get(self.edge + "/v1/recommendations/homepage", params={"user_id": user, "count": 8}, timeout=2)
        assert resp.status_code == 200, resp.text
        return resp.json()

    def redis(self, region: str) -> redis.Redis:
        return redis.Redis(port=self.topo.region(region).redis_port, decode_responses=True)


@pytest.fixture(scope="module")
def local_stack(tmp_path_factory: pytest.TempPathFactory, tiny_bundle: Path) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("stack")
    topo_file = write_topology(root / "topology.toml")
    topo = load_topology(topo_file)
    s = Stack(root, topo_file, topo)
    urls = stack.stack_urls(s.state)
    publish_and_promote(tiny_bundle, Path(urls.artifacts.removeprefix("file://")))
    try:
        stack.up(stack_specs(topo, state_dir=s.state, urls=urls), topology_path=topo_file, state_dir=s.state)
        ControlClient(s.api, stack.token_for(s.state, "viewer")).wait_until_healthy()
        yield s
    finally:
        stack.down(state_dir=s.state)


def test_every_process_runs_and_the_edge_answers_both_geographies(local_stack: Stack) -> None:
    listed = stack.ps(state_dir=local_stack.state)
    assert len(listed) == 15 and all(running for _, running in listed)
    for user, geo in (("us-1", "us"), ("eu-2", "eu")):
        body = local_stack.homepage(user)
        assert len(body["items"]) == 8 and body["tier"] == "full"
        assert local_stack.topo.region(body["region"]).geography == geo


def test_events_replicate_inside_the_geography_only(local_stack: Stack) -> None:
    batch = [{"user_id": "eu-42", "item_id": "sku-1", "type": "view", "seq": 9000 + n} for n in range(5)]
    resp = httpx.post(local_stack.edge + "/v1/events", json={"events": batch}, timeout=5)
    assert resp.status_code == 200, resp.text
    assert list(resp.json()["stored"]) == ["eu-west"]
    us_batch = [{"user_id": "us-42", "item_id": "sku-1", "type": "cart", "seq": 9100 + n} for n in range(5)]
    resp = httpx.post(local_stack.edge + "/v1/events", json={"events": us_batch}, timeout=5)
    assert resp.status_code == 200, resp.text
    (source,) = resp.json()["stored"]
    peer = "us-west" if source == "us-east" else "us-east"
    wait_until(lambda: local_stack.redis(peer).xlen(f"log:replica:{source}") >= 5, timeout=10, what="replication to the peer")
    for region in ("us-east", "us-west"):
        client = local_stack.redis(region)
        for key in client.scan_iter("*"):
            if client.type(key) == "stream":
                assert not any(f.get("user_id", "").startswith("eu-") for _, f in client.xrange(key)), key
            assert "eu-42" not in key


def test_region_loss_is_detected_steered_around_and_never_empties_the_homepage(local_stack: Stack) -> None:
    s = local_stack
    before = s.status()["table"]["version"]
    killed_at = time.time()
    assert sorted(stack.kill(s.state, region="us-west")) == sorted(
        ["redis-us-west", "cell-us-west", "replicator-us-west", "feature-updater-us-west"])
    detected_at = None
    empty = 0
    answers = 0
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for user in ("us-1", "us-2", "us-3", "us-4"):
            body = s.homepage(user)
            answers += 1
            empty += len(body["items"]) == 0
            assert body["region"] != "us-west"
        if detected_at is None and s.status()["regions"]["us-west"]["state"] == "unhealthy":
            detected_at = time.time()
            break
        time.sleep(0.05)
    assert detected_at is not None, "the controller never marked the killed region unhealthy"
    assert empty == 0 and answers > 0
    wait_until(lambda: s.status()["table"]["version"] > before
               and s.status()["table"]["geos"]["us"]["regions"].get("us-west", 0) == 0,
               timeout=10, what="a routing table without us-west")
    table = s.status()["table"]
    wait_until(lambda: httpx.get(s.edge + "/readyz", timeout=2).json()["table_version"] >= table["version"],
               timeout=5, what="the edge to use the new table")
    edge = httpx.get(s.edge + "/readyz", timeout=2).json()
    print(f"\ndetection time (killed -> unhealthy): {detected_at - killed_at:.2f}s; "
          f"steering time (table written -> edge uses it): {edge['table_first_seen_at'] - table['updated_at']:.3f}s")
    stack.restart(s.topo, s.state, region="us-west")
    wait_until(lambda: s.status()["regions"]["us-west"]["state"] == "healthy", timeout=60, interval=0.3,
               what="us-west healthy again")


def test_down_stops_exactly_what_up_started(local_stack: Stack) -> None:
    """Runs last in this module: `down` ends every recorded process and touches nothing else."""
    import subprocess

    outsider = subprocess.Popen(["sleep", "300"])
    try:
        recorded = list(stack.StackState.load(local_stack.state).processes.values())
        assert len(recorded) == 15 and all(stack.is_running(p) for p in recorded)
        stopped = stack.down(state_dir=local_stack.state)
        assert sorted(stopped) == sorted(p.name for p in recorded)
        assert not any(stack.is_running(p) for p in recorded)
        assert outsider.poll() is None, "down must not touch a process it did not start"
        assert stack.ps(state_dir=local_stack.state) == []
    finally:
        outsider.kill()
