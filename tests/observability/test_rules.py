"""The shipped recording and alerting rules under the real promtool (Debian's prometheus package):
`promtool check rules`, `promtool test rules` on observability/rules/tests, every alert with a
firing and a quiet case, thresholds equal to the topology's requirements, and a broken rule caught."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import yaml

from observability.prometheus_config import RULES_DIR, scrape_config, shipped_rule_files
from observability.promtool import _run, check_rules, test_rules
from regions.stack import RunningProcess, StackState
from regions.topology import load_topology
from tests.stack_helpers import write_topology

TESTS_DIR = RULES_DIR / "tests"


def alerts() -> dict[str, str]:
    doc = yaml.safe_load((RULES_DIR / "alerts.yml").read_text())
    return {r["alert"]: r["expr"] for g in doc["groups"] for r in g["rules"]}


def test_promtool_checks_the_shipped_rules() -> None:
    result = check_rules(*shipped_rule_files())
    assert result.ok, result.output
    assert "SUCCESS: 16 rules found" in result.output


def test_promtool_unit_tests_of_the_rules_pass() -> None:
    files = sorted(TESTS_DIR.glob("*.test.yml"))
    assert len(files) == 4
    result = test_rules(*files)
    assert result.ok, result.output


def test_every_alert_fires_on_a_failing_series_and_stays_quiet_on_a_healthy_one() -> None:
    fires: set[str] = set()
    quiet: set[str] = set()
    for path in TESTS_DIR.glob("*.test.yml"):
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                (fires if check["exp_alerts"] else quiet).add(check["alertname"])
    assert fires == set(alerts()), f"alerts without a firing case: {set(alerts()) - fires}"
    assert quiet == set(alerts()), f"alerts without a quiet case: {set(alerts()) - quiet}"


def test_thresholds_are_the_topologys_requirements() -> None:
    settings = load_topology(None).settings
    exprs = alerts()
    assert f"> {settings.rpo_budget_s:g}" in exprs["ReplicationLagOverRPO"]
    assert f"> {settings.user_freshness_s:g}" in exprs["UserFeaturesStale"]
    assert f"> {settings.item_freshness_s:g}" in exprs["ItemFeaturesStale"]
    recording = (RULES_DIR / "recording.yml").read_text()
    assert 'le="0.18"' in recording  # the 180 ms end-to-end p99 of the homepage SLO
    assert "0.0001" in exprs["HomepageSLOBurnRateFast"]  # 99.99 %


def test_a_broken_rule_fails_its_unit_tests(tmp_path: Path) -> None:
    broken = tmp_path / "rules"
    shutil.copytree(RULES_DIR, broken)
    text = (broken / "alerts.yml").read_text()
    (broken / "alerts.yml").write_text(text.replace("shopnow:replication_lag_seconds:max > 300",
                                                    "shopnow:replication_lag_seconds:max > 3000"))
    assert check_rules(broken / "alerts.yml").ok  # still valid PromQL ...
    result = test_rules(broken / "tests" / "regions.test.yml")
    assert not result.ok and "ReplicationLagOverRPO" in result.output  # ... but it no longer pages


def test_the_generated_scrape_configuration_passes_promtool(tmp_path: Path) -> None:
    topo = load_topology(write_topology(tmp_path / "topology.toml"))
    state = StackState(processes={
        "cell-us-east": RunningProcess(name="cell-us-east", kind="cell", pid=1, argv=[], region="us-east"),
        "replicator-us-east": RunningProcess(name="replicator-us-east", kind="replicator", pid=2, argv=[],
                                             region="us-east", port=40001),
        "controller-b": RunningProcess(name="controller-b", kind="controller", pid=3, argv=[], port=40002),
        "redis-us-east": RunningProcess(name="redis-us-east", kind="redis", pid=4, argv=[], region="us-east", port=6400),
        "etcd-1": RunningProcess(name="etcd-1", kind="etcd", pid=5, argv=[], port=40003),
    })
    doc = scrape_config(state, topo, rule_files=shipped_rule_files())
    jobs = {j["job_name"]: j["static_configs"] for j in doc["scrape_configs"]}
    assert set(jobs) == {"cell", "replicator", "controller", "etcd"}  # redis exposes no /metrics
    assert jobs["cell"] == [{"targets": [f"127.0.0.1:{topo.region('us-east').http_port}"],
                             "labels": {"process": "cell-us-east", "region": "us-east"}}]
    assert jobs["replicator"][0]["targets"] == ["127.0.0.1:40001"]
    assert jobs["etcd"] == [{"targets": ["127.0.0.1:40003"], "labels": {"process": "etcd-1"}}]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(doc))
    result = _run(["check", "config", str(path)])
    assert result.ok, result.output
    assert re.search(r"SUCCESS: 16 rules found", result.output)
