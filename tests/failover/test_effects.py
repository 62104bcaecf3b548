"""failover.effects: what the leader writes and journals after a round, as values (no store)."""
from __future__ import annotations

import json
from dataclasses import replace

from contracts.store_keys import FAILBACK_KEY, LEADER_KEY, OVERRIDES_KEY, TABLE_KEY
from failover.effects import Plan, Write, dump, plan_effects, plan_take_over, table_content
from failover.health import HealthState
from failover.journal import Action
from failover.overrides import DrainOverride, Overrides
from failover.steering import Snapshot, decide
from tests.failover.pure_builders import DEFAULT, NOW, SETTINGS, health, healthy_all

EVEN = {"us": {"us-east": 50, "us-west": 50}, "eu": {"eu-west": 100}}


def _plan(health_by_region=None, *, table=None, overrides=Overrides(), problems=(), took_over=False,
          written=None, last_problems=(), failback_raw=None) -> tuple[Plan, object]:
    hs = health_by_region or healthy_all()
    snapshot = Snapshot(topology=DEFAULT, health=hs, now=NOW, current_weights=EVEN, overrides=overrides)
    steering = decide(snapshot)
    if failback_raw is None:
        failback_raw = {r: p.to_dict() for r, p in steering.failback.items()}
    plan = plan_effects(holder="A", now=NOW, health=hs, steering=steering, problems=tuple(problems), settings=SETTINGS,
                        table=table, table_version=7, overrides=overrides, overrides_version=3,
                        failback_raw=failback_raw, took_over=took_over, written_health=written or {},
                        last_problems=tuple(last_problems))
    return plan, steering


def _keys(plan: Plan) -> list[str]:
    return [w.key for w in plan.writes]


def _marks(plan: Plan) -> dict:
    return dict(plan.health_marks)


def test_first_round_writes_every_health_document_and_the_table() -> None:
    plan, _ = _plan()
    assert _keys(plan) == ["health/eu-west", "health/us-east", "health/us-west", TABLE_KEY]
    table_write = plan.writes[-1]
    assert table_write.cas == 7  # compare-and-set against the version read this round
    assert json.loads(table_write.value)["version"] == 1
    assert [e.action for e in table_write.then] == [Action.WEIGHT_CHANGE]
    assert table_write.logs and table_write.logs[0].startswith("TABLE id=A version=1")


def test_unchanged_round_writes_nothing() -> None:
    first, _ = _plan()
    table = json.loads(first.writes[-1].value)
    again, _ = _plan(table=table, written=_marks(first))
    assert again.writes == () and again.entries == ()


def test_taking_over_rewrites_an_unchanged_table_without_journaling_a_change() -> None:
    first, _ = _plan()
    table = json.loads(first.writes[-1].value)
    plan, _ = _plan(table=table, written=_marks(first), took_over=True)
    assert _keys(plan) == [TABLE_KEY]
    assert json.loads(plan.writes[0].value)["version"] == table["version"] + 1
    assert plan.writes[0].then == ()  # same routes: no weight change to journal


def test_only_the_changed_region_health_is_written() -> None:
    first, _ = _plan()
    table = json.loads(first.writes[-1].value)
    hs = {**healthy_all(), "us-east": health("us-east", HealthState.UNHEALTHY)}
    plan, _ = _plan(hs, table=table, written=_marks(first))
    assert _keys(plan)[0] == "health/us-east" and "health/us-west" not in _keys(plan)
    assert _marks(plan) == {"health/us-east": ("unhealthy", "unhealthy", "")}
    table_write = plan.writes[-1]
    assert table_write.key == TABLE_KEY
    before_after = table_write.then[0].inputs
    assert before_after["before"]["geos"] != before_after["after"]["geos"]


def test_refused_steering_keeps_the_table_and_notes_each_new_set_of_problems_once() -> None:
    plan, _ = _plan(problems=["eu would lose all capacity"])
    assert TABLE_KEY not in _keys(plan)
    assert [e.action for e in plan.entries] == [Action.NOTE] and plan.last_problems == ("eu would lose all capacity",)
    assert plan.logs == ("REFUSED id=A problems=eu would lose all capacity",)
    same, _ = _plan(problems=["eu would lose all capacity"], written=_marks(plan), last_problems=plan.last_problems)
    assert same.entries == () and same.writes == () and same.last_problems == plan.last_problems


def test_an_expired_drain_is_dropped_with_cas_and_journaled_only_with_its_write() -> None:
    gone = DrainOverride(region="us-west", created_at=NOW - 120, expires_at=NOW - 1, reason="patching")
    plan, _ = _plan(overrides=Overrides(drains={"us-west": gone}))
    write = next(w for w in plan.writes if w.key == OVERRIDES_KEY)
    assert write.cas == 3 and json.loads(write.value) == {"drains": {}, "steer": {}}
    assert [(e.action, e.inputs["subject"], e.inputs["kind"]) for e in write.then] == \
        [(Action.OVERRIDE_CLEARED, "us-west", "drain")]
    assert plan.entries == ()  # nothing journaled unless the write goes through


def test_failback_progress_is_written_when_it_differs_from_the_store() -> None:
    plan, steering = _plan(failback_raw={"us-east": {"stage": 9}})
    write = next(w for w in plan.writes if w.key == FAILBACK_KEY)
    assert json.loads(write.value) == {r: p.to_dict() for r, p in steering.failback.items()}


def test_take_over_plan_names_the_leader_and_journals_the_change() -> None:
    plan = plan_take_over(holder="B", term=4, api_url="http://127.0.0.1:9", ttl_s=3.0, now=NOW)
    assert plan.writes == (Write(LEADER_KEY, dump({"holder": "B", "term": 4, "api_url": "http://127.0.0.1:9",
                                                   "since": NOW})),)
    assert [(e.action, e.inputs["term"]) for e in plan.entries] == [(Action.LEADER_CHANGE, 4)]
    assert plan.logs == ("LEADER id=B term=4",)


def test_table_content_ignores_version_and_time() -> None:
    assert table_content({"version": 1, "updated_at": 2.0, "geos": {}}) == table_content({"version": 9, "geos": {}})
    assert table_content(None) is None
    assert replace(Plan(), last_problems=("x",)).last_problems == ("x",)
