"""Bundle rollouts on real processes: redis-servers, cells and two controllers started as
`regionctl up` starts them, a homepage load on the us cells, `regionctl rollout` driving them.

- a good bundle (the serving ranker under a new version) goes shadow -> 50 % -> 100 % and becomes
  the serving bundle (promoted by the leader, journaled);
- a bundle that verifies and ranks badly (inverted leaves) is stopped in shadow by the rank
  correlation gate and rolled back by itself: no user ever got it;
- a bundle that verifies and ranks slowly (10x trees) is stopped in shadow by the latency gate, and,
  rolled out without a shadow stage, by the canary's latency gate at 20 %: only users of the canary
  share (contracts.bucketing) ever got it.
Figures (printed): each rollout's gate values; `regionctl rollout status --geo us` prints them too.
An A/B experiment through `regionctl experiments` (the control beats its inverted copy, an identical
copy names no winner) is tests/test_experiment_stack.py, on its own stack.
"""
from __future__ import annotations

import json
import random
import threading
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest
from typer.testing import CliRunner

from failover.control_stores import store_from_url
from failover.journal import Journal
from failover.rollout_store import read_plan
from regionctl.main import build_app
from regionctl.stack_specs import stack_specs
from regions import stack
from regions.processes import wait_until
from replication.geo_artifacts import open_geo_store
from serving.bundle import LoadedBundle
from serving.weak_bundle import weaken_bundle
from tests.stack_helpers import prepared_stack_dir

pytestmark = pytest.mark.slow
HOLD = "4s"
GATES = ["--min-requests", "20", "--min-shadow", "20", "--min-impressions", "30", "--min-users", "10"]


class Load(threading.Thread):
    """Homepages for us users on both us cells, ~25/s, recording who got which bundle."""

    def __init__(self, urls: list[str], users: list[str]) -> None:
        super().__init__(daemon=True)
        self.urls, self.users = urls, users
        self.seen: list[tuple[str, str]] = []
        self.failures = 0
        self.stopping = threading.Event()

    def run(self) -> None:
        rng = random.Random(5)
        with httpx.Client(timeout=2.0) as client:
            while not self.stopping.wait(0.04):
                user = rng.choice(self.users)
                try:
                    body = client.get(rng.choice(self.urls) + "/v1/recommendations/homepage",
                                      params={"user_id": user, "count": 8}).json()
                    self.seen.append((user, body["bundle_version"]))
                except (httpx.HTTPError, ValueError, KeyError):
                    self.failures += 1


class Rig:
    def __init__(self, root: Path, bundles: dict[str, Path]) -> None:
        self.topo_file, self.topo, self.state, self.urls = prepared_stack_dir(root, bundles)
        self.root, self.bundles = root, bundles
        self.store = open_geo_store(self.urls.artifacts, "us")
        self.runner = CliRunner()
        self.app = build_app()

    def cli(self, *args: str, artifacts: bool = True) -> Any:
        extra = ["--store", self.urls.artifacts] if artifacts else []
        return self.runner.invoke(self.app, [*args, "--control-store", self.urls.control_store, *extra],
                                  env={"REGIONCTL_TOPOLOGY": str(self.topo_file)})

    def publish(self, mode: str, version: str) -> str:
        weaken_bundle(self.bundles["us"], self.root / version, mode=mode, version=version)
        return self.store.publish(self.root / version)

    def plan(self) -> Any:
        with store_from_url(self.urls.control_store) as cs:
            return read_plan(cs, "us")[0]

    def journal(self) -> list[Any]:
        with store_from_url(self.urls.control_store) as cs:
            return Journal(cs).entries()

    def wait_ended(self, timeout: float) -> Any:
        wait_until(lambda: not self.plan().running, timeout=timeout, interval=0.5, what="the rollout to end")
        return self.plan()

    def cells(self) -> list[str]:
        return [f"http://127.0.0.1:{self.topo.region(r).http_port}" for r in ("us-east", "us-west")]


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory, tiny_geo_bundles: dict[str, Path]) -> Iterator[tuple[Rig, Load]]:
    r = Rig(tmp_path_factory.mktemp("rollout"), tiny_geo_bundles)
    specs = stack_specs(r.topo, state_dir=r.state, urls=r.urls)
    users = [u for u in LoadedBundle.load(tiny_geo_bundles["us"]).user_row if u.startswith("us-")][:300]
    load = Load(r.cells(), users)
    try:
        stack.up(specs, topology_path=r.topo_file, state_dir=r.state, kinds={"redis", "cell", "controller"})
        load.start()
        yield r, load
    finally:
        load.stopping.set()
        stack.down(state_dir=r.state)


def _print_gates(label: str, plan: Any) -> None:
    for ev in plan.evidence:
        print(f"{label} stage {ev['stage']} ({ev['verdict']}): " + ", ".join(
            f"{c['name']}={json.dumps(c['value'])} (limit {c['limit']})" for c in ev["checks"]))


def test_a_good_bundle_rolls_out_to_100_percent(rig: tuple[Rig, Load]) -> None:
    r, load = rig
    before = r.store.current()
    version = r.publish("identical", "us-good-2")
    result = r.cli("rollout", "start", version, "--geo", "us", "--stages", "shadow,50%,100%", "--hold", HOLD, *GATES)
    assert result.exit_code == 0, result.output
    plan = r.wait_ended(timeout=120)
    _print_gates("good", plan)
    assert plan.state == "completed", plan.reason
    assert r.store.current() == version and before != version  # promoted before the plan said completed
    assert [e["verdict"] for e in plan.evidence] == ["pass", "pass", "pass"]
    actions = [e.action for e in r.journal()]
    assert {"rollout_start", "rollout_stage", "rollout_complete", "bundle_promote"} <= set(actions)
    wait_until(lambda: all(httpx.get(c + "/readyz").json()["bundle_version"] == version for c in r.cells()),
               timeout=15, what="the cells serving the promoted bundle")
    status = r.cli("rollout", "status", "--geo", "us")
    assert status.exit_code == 0 and "completed" in status.output, status.output


@pytest.mark.parametrize("mode,gate", [("inverted", "shadow_rank_correlation"), ("slow", "shadow_latency_ratio")])
def test_a_bad_bundle_is_stopped_in_shadow_and_rolled_back(rig: tuple[Rig, Load], mode: str, gate: str) -> None:
    r, load = rig
    serving = r.store.current()
    version = r.publish(mode, f"us-{mode}")
    seen_before = len(load.seen)
    result = r.cli("rollout", "start", version, "--geo", "us", "--stages", "shadow,20%,100%", "--hold", HOLD, *GATES)
    assert result.exit_code == 0, result.output
    plan = r.wait_ended(timeout=90)
    _print_gates(mode, plan)
    assert plan.state == "rolled_back" and plan.stage.name == "shadow", plan.reason
    assert gate in plan.reason
    assert r.store.current() == serving  # the serving bundle stayed current
    assert not any(v == version for _, v in load.seen[seen_before:])  # no user was shown the bad bundle
    entry = [e for e in r.journal() if e.action == "rollout_rollback"][-1]
    assert any(c["name"] == gate and c["ok"] is False for c in entry.inputs["evidence"]["checks"])
    status = r.cli("rollout", "status", "--geo", "us")
    assert status.exit_code == 1 and "rolled_back" in status.output
    wait_until(lambda: all(not httpx.get(c + "/readyz").json()["rollout"]["held"] for c in r.cells()),
               timeout=15, what="the cells dropping the candidate")


def test_a_slow_bundle_without_shadow_is_stopped_at_the_canary_and_only_the_canary_share_saw_it(
        rig: tuple[Rig, Load]) -> None:
    from contracts.bucketing import in_share

    r, load = rig
    serving = r.store.current()
    version = r.publish("slow", "us-slow-canary")
    seen_before = len(load.seen)
    result = r.cli("rollout", "start", version, "--geo", "us", "--stages", "20%,100%", "--hold", HOLD, *GATES)
    assert result.exit_code == 0, result.output
    plan = r.wait_ended(timeout=90)
    _print_gates("slow canary", plan)
    assert plan.state == "rolled_back" and plan.stage.name == "20%" and "latency_p50" in plan.reason, plan.reason
    assert r.store.current() == serving
    shown = {user for user, v in load.seen[seen_before:] if v == version}
    assert shown and all(in_share(user, plan.id, 20.0) for user in shown)  # nobody outside the canary share
    everyone = {user for user, _ in load.seen[seen_before:]}
    print(f"slow canary: {len(shown)} of {len(everyone)} users got it ({len(shown) / len(everyone):.0%}; share 20 %)")
