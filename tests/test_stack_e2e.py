"""The whole local stack, real processes: 3 redis-servers, 3 cells, replicators, feature updaters,
two controllers and the edge, started by regions.stack.up exactly as `regionctl up` does.

Measures (printed, never asserted as timings): detection time (region killed -> controller marks
it unhealthy) and steering time (routing table written -> edge uses it). Asserts behaviour: the
homepage through the edge is never empty while a region dies, personal data stays in its
geography, replication copies acknowledged events to the peer, `down` stops exactly what `up` started.
"""
from __future__ import annotations

import json
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
from tests.stack_helpers import publish_geo_bundles, write_topology

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
def local_stack(tmp_path_factory: pytest.TempPathFactory, tiny_geo_bundles: dict[str, Path]) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("stack")
    topo_file = write_topology(root / "topology.toml")
    topo = load_topology(topo_file)
    s = Stack(root, topo_file, topo)
    urls = stack.stack_urls(s.state)
    publish_geo_bundles(tiny_geo_bundles, Path(urls.artifacts.removeprefix("file://")))
    try:
        stack.up(stack_specs(topo, state_dir=s.state, urls=urls), topology_path=topo_file, state_dir=s.state)
        ControlClient(s.api, stack.token_for(s.state, "viewer")).wait_until_healthy()
        yield s
    finally:
        stack.down(state_dir=s.state)


def test_every_process_runs_and_the_edge_answers_both_geographies(local_stack: Stack) -> None:
    listed = stack.ps(state_dir=local_stack.state)
    assert len(listed) == 16 and all(running for _, running in listed)
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


def _audit(s: Stack) -> Any:
    from replication.redis_io import connect_all
    from replication.residency_audit import audit

    clients = connect_all(s.topo)
    try:
        return audit(s.topo, clients, state_dir=s.state)
    finally:
        for client in clients.values():
            client.close()


def _lose_region(s: Stack, region: str, *, during: Any) -> None:
    """Kill every process of `region`, run `during()` until the controller steered around it (and at
    least once after), then restore it and wait until it is healthy again."""
    geo = s.topo.region(region).geography
    stack.kill(s.state, region=region)
    wait_until(lambda: (during() or True) and s.status()["regions"][region]["state"] == "unhealthy",
               timeout=30, interval=0.1, what=f"{region} unhealthy")
    wait_until(lambda: (during() or True) and s.status()["table"]["geos"][geo]["regions"].get(region, 0) == 0,
               timeout=15, interval=0.1, what=f"a routing table without {region}")
    time.sleep(0.5)  # the edge follows the table within ~0.2 s
    during()
    stack.restart(s.topo, s.state, region=region)
    wait_until(lambda: s.status()["regions"][region]["state"] == "healthy", timeout=60, interval=0.3,
               what=f"{region} healthy again")


def test_personal_data_stays_home_through_a_us_east_loss_and_an_eu_west_loss(local_stack: Stack) -> None:
    """Both geographies' users through the edge while us-east and then eu-west are lost (EU users
    then answered anonymously from the US); the residency audit stays clean."""
    s = local_stack
    seen: list[tuple[str, str, str]] = []
    sequence = iter(range(20_000, 30_000))

    def traffic() -> None:
        for user in ("us-11", "us-12", "eu-11", "eu-12"):
            body = s.homepage(user)
            assert len(body["items"]) == 8
            seen.append((user, body["region"], body["tier"]))
            httpx.post(s.edge + "/v1/events", timeout=5, json={"events": [
                {"user_id": user, "item_id": "sku-000001", "type": "view", "seq": next(sequence)}]})

    _lose_region(s, "us-east", during=traffic)
    assert not any(region == "us-east" for _, region, _ in seen[-4:])
    _lose_region(s, "eu-west", during=traffic)
    anonymous = [(region, tier) for user, region, tier in seen if user.startswith("eu-") and region != "eu-west"]
    assert anonymous and all(s.topo.region(r).geography == "us" and t in ("segment", "popularity") for r, t in anonymous)
    traffic()
    report = _audit(s)
    assert report.clean, report.to_json()
    assert report.scanned["eu-west"]["stream_entries"] > 0 and report.scanned["us-east"]["bundle_files"] > 0


def test_a_deleted_user_leaves_nothing_behind_and_nothing_new_is_written(local_stack: Stack) -> None:
    import subprocess
    import sys

    from regions.topology import REPO_ROOT

    s, user = local_stack, "us-77"
    events = lambda seq: {"events": [{"user_id": user, "item_id": "sku-000002", "type": "cart", "seq": seq}]}  # noqa: E731
    for seq in range(3):
        assert httpx.post(s.edge + "/v1/events", json=events(seq), timeout=5).status_code == 200
    regions = [r.name for r in s.topo.regions_in("us")]

    def holds(region: str) -> list[str]:
        c = s.redis(region)
        found = [k for k in c.scan_iter("*") if user in k]
        for key in c.scan_iter("log:*"):
            found += [f"{key} {i}" for i, f in c.xrange(key) if f.get("user_id") == user]
        return found

    wait_until(lambda: all(any(k.startswith("log:") for k in holds(r)) for r in regions), timeout=15,
               what="the user's events in both us regions (own log and replica)")
    wait_until(lambda: s.homepage(user)["tier"] == "full" and any(f"cache:{user}" in holds(r) for r in regions),
               timeout=15, what="a cached slate of the user")
    argv = [sys.executable, "-m", "regionctl.main", "users", "delete", user, "--json", "--topology", str(s.topo_file),
            "--store", stack.stack_urls(s.state).artifacts]
    done = subprocess.run(argv, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["complete"] and sorted(r["region"] for r in report["regions"]) == sorted(regions)
    removed = {r["region"]: r for r in report["regions"]}
    assert sum(r["cached_results_removed"] for r in removed.values()) >= 1
    assert all(sum(r["log_entries_removed"].values()) >= 3 for r in removed.values())  # own log + the peer's replica
    assert all(any("excluded from the next bundle, due by" in m for m in r["remains"]) for r in removed.values())
    assert all(holds(r) == [] for r in regions), {r: holds(r) for r in regions}
    # The cells' tombstone view refreshes every 2 s; until then a full answer is possible, but never cached.
    wait_until(lambda: s.homepage(user)["tier"] != "full", timeout=5, interval=0.2, what="anonymous answers")
    for seq in range(3, 13):  # the user keeps coming back
        assert s.homepage(user)["tier"] in ("segment", "popularity")
        refused = httpx.post(s.edge + "/v1/events", json=events(seq), timeout=5)
        assert refused.status_code == 422 and "was deleted" in refused.text, refused.text
        time.sleep(0.3)
    time.sleep(1.0)  # let replicators, feature updaters and the slate writer catch up
    assert all(holds(r) == [] for r in regions), {r: holds(r) for r in regions}
    assert all(s.redis(r).hexists("users:deleted", user) for r in regions)


def test_down_stops_exactly_what_up_started(local_stack: Stack) -> None:
    """Runs last in this module: `down` ends every recorded process and touches nothing else."""
    import subprocess

    outsider = subprocess.Popen(["sleep", "300"])
    try:
        recorded = list(stack.StackState.load(local_stack.state).processes.values())
        assert len(recorded) == 16 and all(stack.is_running(p) for p in recorded)
        stopped = stack.down(state_dir=local_stack.state)
        assert sorted(stopped) == sorted(p.name for p in recorded)
        assert not any(stack.is_running(p) for p in recorded)
        assert outsider.poll() is None, "down must not touch a process it did not start"
        assert stack.ps(state_dir=local_stack.state) == []
    finally:
        outsider.kill()
