"""The controller leader drives a rollout through the control store: stages, gates, rollback,
promotion, the serving plan it publishes, and a leader change in the middle (real SQLite store,
real controllers and leases, stand-in cells reporting the rollout figures)."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from contracts.serving_plan import parse_serving_plan
from failover.journal import Action, Journal
from failover.rollout_driver import RolloutDriver
from failover.rollout_gates import GatePolicy
from failover.rollout_plan import abort, new_plan
from failover.rollout_store import change_plan, read_plan
from failover.sqlite_store import SqliteStore
from online_metrics.attribution import VariantTotals
from replication.artifact_store import LocalArtifactStore
from tests.failover.controller_helpers import Rig, make_rig

POLICY = GatePolicy(min_requests=10, min_shadow=10, quality_min_impressions=100)


@pytest.fixture
def rig() -> Iterator[Rig]:
    yield from make_rig()


def _figures(revision: int, *, cand_p99: float = 20.0, rank_corr: float = 0.8) -> dict[str, Any]:
    return {"revision": revision, "by_version": {
        "v2": {"requests": 40, "error_rate": 0.0, "p99_ms": cand_p99, "p50_ms": cand_p99 / 2, "tier_mix": {"full": 1.0}},
        "v1": {"requests": 400, "error_rate": 0.0, "p99_ms": 18.0, "p50_ms": 9.0, "tier_mix": {"full": 1.0}}},
        "shadow": {"candidate": "v2", "compared": 40, "errors": 0, "rank_corr": rank_corr, "overlap_at_8": 0.7,
                   "serving_p99_ms": 18.0, "candidate_p99_ms": cand_p99}}


class World:
    def __init__(self, rig: Rig, tmp: Path) -> None:
        self.rig, self.tmp = rig, tmp
        self.stores: list[SqliteStore] = []
        self.artifacts = {g: LocalArtifactStore(tmp / "artifacts" / g) for g in ("us", "eu")}
        self.promoted: list[tuple[str, str]] = []
        self.quality = {"v2": VariantTotals("v2", users=300, impressions=500, clicked=60, carted=20, last_ts=1.0),
                        "v1": VariantTotals("v1", users=300, impressions=5000, clicked=600, carted=200, last_ts=1.0)}

    def store(self) -> SqliteStore:
        s = SqliteStore(self.tmp / "control.db")
        self.stores.append(s)
        return s

    def controller(self, holder: str) -> Any:
        store = self.store()
        ctl = self.rig.controller(store, holder=holder)
        ctl.rollouts = RolloutDriver(
            topology=self.rig.topology, journal=ctl.journal, artifacts=lambda g: self.artifacts[g],
            quality=lambda geo, since: self.quality, policy=POLICY, actor=ctl.actor, log=lambda _l: None,
            promote=lambda geo, v: self.promoted.append((geo, v)))
        return ctl

    def report(self, view: dict[str, Any]) -> None:
        for region in ("us-east", "us-west"):
            self.rig.cells[region].rollout = view

    def plan(self) -> Any:
        return parse_serving_plan(self.artifacts["us"].serving_plan())

    def close(self) -> None:
        for s in self.stores:
            s.close()


@pytest.fixture
def world(rig: Rig, tmp_path: Path) -> Iterator[World]:
    w = World(rig, tmp_path)
    yield w
    w.close()


def _start(world: World, stages: str = "shadow,50%,100%", hold: float = 0.3) -> None:
    store = world.store()
    change_plan(store, Journal(store), "us", lambda _old: new_plan(geo="us", version="v2", baseline="v1", stages=stages,
                                                                  hold_s=hold, now=time.time(), actor="t"),
                actor="regionctl:t", action=Action.ROLLOUT_START, now=time.time(), reason=lambda p: "start")


def _steps(ctl: Any, world: World, n: int, view: Any = _figures) -> None:
    for _ in range(n):
        world.report(view(world.plan().revision))
        ctl.step(time.time())
        time.sleep(0.35)


def test_a_good_rollout_goes_to_100_percent_across_a_leader_change(world: World) -> None:
    _start(world)
    a = world.controller("A")
    a.step(time.time())  # takes the lease, publishes the shadow stage
    assert world.plan().candidate == "v2" and world.plan().canary_percent == 0 and world.plan().shadow_percent > 0
    time.sleep(0.35)
    _steps(a, world, 1)  # the shadow stage held and passed
    plan, _ = read_plan(world.stores[0], "us")
    assert plan.stage.name == "50%" and world.plan().canary_percent == 50.0
    a.leadership.resign()
    b = world.controller("B")
    _steps(b, world, 6)
    plan, _ = read_plan(world.stores[0], "us")
    assert plan.state == "completed", plan
    assert world.promoted == [("us", "v2")]
    assert world.plan().candidate is None  # the cells drop the candidate: it is the serving bundle now
    actions = [(e.actor, e.action) for e in Journal(world.stores[0]).entries()]
    assert ("controller:A", Action.ROLLOUT_STAGE.value) in actions
    assert ("controller:B", Action.ROLLOUT_COMPLETE.value) in actions
    assert ("controller:B", Action.BUNDLE_PROMOTE.value) in actions
    assert parse_serving_plan(world.artifacts["eu"].serving_plan()).candidate is None  # other geographies untouched


def test_a_slow_canary_rolls_back_by_itself_with_the_evidence(world: World) -> None:
    _start(world, stages="50%,100%")
    ctl = world.controller("A")
    _steps(ctl, world, 4, view=lambda rev: _figures(rev, cand_p99=160.0))
    plan, _ = read_plan(world.stores[0], "us")
    assert plan.state == "rolled_back" and "latency_p50" in plan.reason and "slo_p99" in plan.reason
    assert world.plan().candidate is None and world.promoted == []
    entry = [e for e in Journal(world.stores[0]).entries() if e.action == Action.ROLLOUT_ROLLBACK.value][-1]
    failed = {c["name"]: c for c in entry.inputs["evidence"]["checks"] if c["ok"] is False}
    assert failed["latency_p50"]["value"] == 80.0 and failed["slo_p99"]["value"] == 160.0


def test_a_candidate_that_ranks_unlike_the_serving_one_stops_in_shadow(world: World) -> None:
    _start(world)
    ctl = world.controller("A")
    _steps(ctl, world, 5, view=lambda rev: _figures(rev, rank_corr=-0.4))
    plan, _ = read_plan(world.stores[0], "us")
    assert plan.state == "rolled_back" and plan.stage.name == "shadow" and "shadow_rank_correlation" in plan.reason


def test_lower_ctr_in_the_canary_rolls_back(world: World) -> None:
    world.quality["v2"] = VariantTotals("v2", users=300, impressions=1000, clicked=30, carted=5, last_ts=1.0)
    _start(world, stages="50%,100%")
    ctl = world.controller("A")
    _steps(ctl, world, 4)
    plan, _ = read_plan(world.stores[0], "us")
    assert plan.state == "rolled_back" and "quality_ctr" in plan.reason


def test_figures_of_another_revision_are_not_judged_and_abort_stops(world: World) -> None:
    _start(world, stages="50%,100%", hold=30.0)
    ctl = world.controller("A")
    _steps(ctl, world, 3, view=lambda rev: _figures(rev - 1, cand_p99=160.0))  # stale figures: never judged
    plan, _ = read_plan(world.stores[0], "us")
    assert plan.running and plan.stage.name == "50%"
    store = world.stores[0]
    change_plan(store, Journal(store), "us", lambda p: abort(p, now=time.time(), reason="operator"),
                actor="regionctl:t", action=Action.ROLLOUT_ABORT, now=time.time(), reason=lambda p: "abort")
    ctl.step(time.time())
    assert world.plan().candidate is None and json.loads(store.get("rollout/us").value)["state"] == "aborted"
