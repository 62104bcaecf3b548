"""`regionctl up --observability` for real (the CLI, as a subprocess): the whole local stack plus
Debian's Prometheus scraping it from the generated configuration. One stack for the module; Prometheus is scraped once the
targets are up. Also, against real cells through the real edge: an unknown product is a 404 passed
on and counted as a client error, never a last-resort answer; every process's /metrics passes
`promtool check metrics`."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from failover.control_api import ControlClient
from observability.prometheus_config import scrape_config
from observability.prometheus_stack import NAME, prometheus_url
from observability.promtool import check_metrics
from regions import stack
from regions.processes import wait_until
from regions.topology import REPO_ROOT, Topology, load_topology
from tests.stack_helpers import publish_geo_bundles, write_topology

pytestmark = pytest.mark.slow


class ObservedStack:
    def __init__(self, state: Path, topo: Topology) -> None:
        self.state, self.topo = state, topo
        self.edge = f"http://127.0.0.1:{topo.settings.edge_port}"

    @property
    def prometheus(self) -> str:
        url = prometheus_url(self.state)
        assert url is not None
        return url

    def query(self, promql: str) -> list[dict[str, Any]]:
        body = httpx.get(self.prometheus + "/api/v1/query", params={"query": promql}, timeout=5, trust_env=False).json()
        assert body["status"] == "success", body
        return list(body["data"]["result"])


@pytest.fixture(scope="module")
def observed(tmp_path_factory: pytest.TempPathFactory, tiny_geo_bundles: dict[str, Path]) -> Iterator[ObservedStack]:
    root = tmp_path_factory.mktemp("observed")
    topo_file = write_topology(root / "topology.toml")
    topo = load_topology(topo_file)
    state = root / "stack"
    urls = stack.stack_urls(state)
    publish_geo_bundles(tiny_geo_bundles, Path(urls.artifacts.removeprefix("file://")))
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("REGIONCTL_")} | {"PYTHONPATH": str(REPO_ROOT)}
        started = subprocess.run([sys.executable, "-m", "regionctl.main", "up", "--topology", str(topo_file),
                                  "--state-dir", str(state), "--observability"], env=env, cwd=root,
                                 capture_output=True, text=True, timeout=300, check=False)
        assert started.returncode == 0, started.stdout + started.stderr
        assert "prometheus http://127.0.0.1:" in started.stdout
        ControlClient(f"http://127.0.0.1:{topo.settings.controller_port}",
                      stack.token_for(state, "viewer")).wait_until_healthy()
        yield ObservedStack(state, topo)
    finally:
        stack.down(state_dir=state)


def test_prometheus_scrapes_every_process_of_the_stack(observed: ObservedStack) -> None:
    expected = {p.name for p in stack.StackState.load(observed.state).processes.values()
                if p.kind in ("cell", "replicator", "feature-updater", "retention", "controller", "edge")}
    assert len(expected) == 13  # 3 cells, 3 replicators, 3 feature updaters, retention, 2 controllers, the edge

    def all_up() -> bool:
        targets = httpx.get(observed.prometheus + "/api/v1/targets", timeout=5, trust_env=False).json()
        up = {t["labels"]["process"] for t in targets["data"]["activeTargets"] if t["health"] == "up"}
        return up == expected

    wait_until(all_up, timeout=30, interval=0.5, what="every target up in Prometheus")
    # the live RPO of every same-geography pair, scraped from the replicators
    pairs = {(r["metric"]["source"], r["metric"]["destination"]) for r in observed.query("shopnow_replication_lag_seconds")}
    assert pairs == {("us-east", "us-west"), ("us-west", "us-east")}
    assert float(observed.query("sum(shopnow_controller_leader)")[0]["value"][1]) == 1
    regions = {r["metric"]["region"] for r in observed.query('shopnow_cell_redis_ok == 1')}
    assert regions == {"us-east", "us-west", "eu-west"}
    # the retention worker ran at start and reached every region; no deletion is pending
    wait_until(lambda: observed.query("shopnow_retention_last_success_timestamp_seconds > 0"), timeout=30,
               interval=0.5, what="the retention worker's last success scraped")
    assert {r["metric"]["geography"] for r in observed.query("shopnow_erasure_overdue_users == 0")} == {"us", "eu"}
    rules = httpx.get(observed.prometheus + "/api/v1/rules", timeout=5, trust_env=False).json()
    names = {r["name"] for g in rules["data"]["groups"] for r in g["rules"]}
    assert {"ControllerNoLeader", "ReplicationLagOverRPO", "ErasureOverdue", "RetentionNotRunning",
            "shopnow:homepage_slo_errors:ratio_rate5m"} <= names


def test_every_process_metrics_pass_promtool(observed: ObservedStack) -> None:
    config = scrape_config(stack.StackState.load(observed.state), observed.topo)
    targets = [t for job in config["scrape_configs"] for group in job["static_configs"] for t in group["targets"]]
    assert len(targets) == 13
    for target in targets:
        text = httpx.get(f"http://{target}/metrics", timeout=5, trust_env=False).text
        result = check_metrics(text)
        assert result.ok, f"{target}: {result.output}"


def edge_samples(observed: ObservedStack) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(observed.edge + "/metrics", timeout=5, trust_env=False).text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_an_unknown_product_is_a_404_passed_on_not_a_last_resort_answer(observed: ObservedStack) -> None:
    resp = httpx.get(observed.edge + "/v1/recommendations/similar", params={"product_id": "no-such-sku", "count": 4},
                     timeout=5, trust_env=False)
    assert resp.status_code == 404, resp.text
    assert "no-such-sku" in resp.text
    s = edge_samples(observed)
    assert s[("shopnow_edge_client_errors_total", (("reason", "not_found"), ("surface", "similar")))] == 1
    assert ("shopnow_edge_last_resort_total", (("surface", "similar"),)) not in s
    failed = [k for k, v in s.items() if k[0] == "shopnow_edge_cell_attempts_total" and v
              and dict(k[1])["result"] in ("error", "timeout")]
    assert failed == []  # a client's mistake is not a cell failure


def test_an_injected_fault_shows_as_a_gauge(observed: ObservedStack) -> None:
    region = observed.topo.region("eu-west")
    token = stack.token_for(observed.state, "chaos")
    base = f"http://127.0.0.1:{region.http_port}"
    headers = {"Authorization": f"Bearer {token}"}

    def gauge(name: str, **labels: str) -> float:
        text = httpx.get(base + "/metrics", timeout=5, trust_env=False).text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                    return sample.value
        raise AssertionError(f"{name} {labels} not exposed")

    assert gauge("shopnow_cell_injected_fault", fault="ranking_latency") == 0
    try:
        assert httpx.post(base + "/admin/faults", json={"ranking_latency_ms": 40, "freeze_index": True},
                          headers=headers, timeout=5).status_code == 200
        assert gauge("shopnow_cell_injected_fault", fault="ranking_latency", region="eu-west") == 1
        assert gauge("shopnow_cell_injected_ranking_latency_seconds") == pytest.approx(0.04)
        assert gauge("shopnow_cell_index_frozen") == 1
    finally:
        httpx.delete(base + "/admin/faults", headers=headers, timeout=5)
    assert gauge("shopnow_cell_index_frozen") == 0


def cli(observed: ObservedStack, *args: str, token_role: str | None = None) -> subprocess.CompletedProcess[str]:
    """regionctl outside the repository with only REGIONCTL_STATE_DIR set: the controller URL comes
    from the topology the running stack recorded, the token from its tokens file."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGIONCTL_")}
    env |= {"REGIONCTL_STATE_DIR": str(observed.state), "PYTHONPATH": str(REPO_ROOT)}
    if token_role:
        env["REGIONCTL_TOKEN"] = stack.token_for(observed.state, token_role)
    return subprocess.run([sys.executable, "-m", "regionctl.main", *args], cwd=observed.state.parent, env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def test_the_cli_finds_the_running_stack_and_shows_drains_with_actor_and_expiry(observed: ObservedStack) -> None:
    doc = json.loads(cli(observed, "status", "--json").stdout)
    assert set(doc["regions"]) == {"us-east", "us-west", "eu-west"} and doc["drains"] == [] and doc["drills"] == []
    assert doc["failback_holds_s"] == [60.0, 120.0]
    drained = cli(observed, "drain", "us-west", "--reason", "cli test", "--ttl", "2h")
    assert drained.returncode == 0, drained.stderr
    try:
        wait_until(lambda: json.loads(cli(observed, "status", "--json").stdout)["drains"], timeout=10,
                   what="the drain in the status")
        drain = json.loads(cli(observed, "status", "--json").stdout)["drains"][0]
        assert (drain["region"], drain["reason"]) == ("us-west", "cli test")
        assert drain["actor"].startswith("director:") and 7000 < drain["expires_in_s"] <= 7200
        table = cli(observed, "status").stdout
        assert "cli test" in table and "director:" in table and "UTC" in table and "1h 59m" in table
    finally:
        assert cli(observed, "undrain", "us-west", "--reason", "cli test over").returncode == 0


def test_drill_exit_codes_and_roles(observed: ObservedStack) -> None:
    dry = cli(observed, "drill", "evacuate", "eu-west", "--dry-run", "--json")
    assert dry.returncode == 1, dry.stdout + dry.stderr  # eu-west has no peer: a pre-check fails
    assert not json.loads(dry.stdout)["plan"]["ok"]
    refused = cli(observed, "drill", "evacuate", "us-east", "--dry-run", token_role="chaos")
    assert refused.returncode == 2 and "may not drill" in refused.stderr  # only a director drills
    note = cli(observed, "drill", "evacuate", "us-east", "--dry-run", "--hold", "10s").stdout
    assert "REGIONCTL_CONTROLLER_FAILBACK_HOLD_S" in note and "60 + 120" in note


def test_down_stops_prometheus_too(observed: ObservedStack) -> None:
    """Runs last in this module."""
    proc = stack.StackState.load(observed.state).processes[NAME]
    assert stack.is_running(proc)
    done = cli(observed, "down", "--state-dir", str(observed.state))
    assert done.returncode == 0 and "stopped 17 processes" in done.stdout, done.stdout + done.stderr
    assert not stack.is_running(proc)
    assert prometheus_url(observed.state) is None
