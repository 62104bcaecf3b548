"""The edge's passive outlier ejection (edge.ejection), pure: a fake clock, no network."""
from __future__ import annotations

from dataclasses import replace

import pytest

from contracts.routing_table import default_table
from edge.ejection import CellView, EjectionPolicy, Ejector, demote, ejection_time_s, may_eject
from edge.routing import plan_events, plan_request, rendezvous_order
from edge.settings import EdgeSettings, ejection_policy, settings_from_env
from regions.errors import InputError
from tests.contracts.topologies import make_topology

GEOS = {"us": ("us-east", "us-west"), "eu": ("eu-west",)}
POLICY = ejection_policy(EdgeSettings(ejection_consecutive_failures=3, ejection_window=10, ejection_base_s=5.0,
                                     ejection_max_s=12.0))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def ejector(policy: EjectionPolicy = POLICY, geos: dict[str, tuple[str, ...]] = GEOS) -> tuple[Ejector, Clock, list]:
    clock, events = Clock(), []
    return Ejector(geos, policy, clock=clock, on_event=lambda r, e: events.append((r, e))), clock, events


def fail(e: Ejector, region: str, times: int = 1) -> list[str]:
    out = []
    for _ in range(times):
        e.started(region)
        out.append(e.finished(region, failed=True))
    return out


def test_consecutive_failures_eject_a_cell_and_a_success_resets_the_count() -> None:
    e, _, events = ejector()
    assert fail(e, "us-east", 2) == ["", ""]
    assert e.finished("us-east", failed=False) == ""  # the run of failures is broken
    assert fail(e, "us-east", 2) == ["", ""] and e.demoted() == frozenset()
    assert fail(e, "us-east") == ["ejected"]
    assert e.demoted() == {"us-east"} and e.ejected() == ("us-east",) and events == [("us-east", "ejected")]
    assert e.status()["ejected"]["us-east"] == {"for_s": 5.0, "ejections": 1, "probing": False}


def test_a_failure_rate_over_the_window_ejects_a_cell_between_successes() -> None:
    e, _, _ = ejector()
    for _ in range(4):  # fail, fail, ok: never three in a row, two thirds of the attempts failed
        fail(e, "us-west", 2)
        e.finished("us-west", failed=False)
    assert e.ejected() == ("us-west",), e.views["us-west"]


def test_after_the_ejection_time_one_probe_readmits_the_cell() -> None:
    e, clock, events = ejector()
    fail(e, "us-east", 3)
    clock.now += 4.9
    assert e.demoted() == {"us-east"}
    clock.now += 0.2  # the ejection time has passed: the cell is due for its probe (by a read)
    assert e.demoted() == frozenset() and e.demoted(probe=False) == {"us-east"}
    e.started("us-east")  # the probe is in flight: every other request still demotes the cell
    assert e.demoted() == {"us-east"} and e.status()["ejected"]["us-east"]["probing"] is True
    assert e.finished("us-east", failed=False) == "readmitted"
    assert e.demoted() == frozenset() and e.ejected() == () and events[-1] == ("us-east", "readmitted")


def test_a_failed_probe_ejects_again_for_longer_up_to_the_maximum() -> None:
    e, clock, events = ejector()
    fail(e, "us-east", 3)
    lasted = []
    for _ in range(3):
        lasted.append(e.status()["ejected"]["us-east"]["for_s"])
        clock.now += lasted[-1]
        assert e.demoted() == frozenset()
        assert fail(e, "us-east") == ["re-ejected"]
    assert lasted == [5.0, 10.0, 12.0]  # base x n, capped at max_s
    assert [ev for _, ev in events] == ["ejected", "re-ejected", "re-ejected", "re-ejected"]


def test_a_retry_on_an_ejected_cell_before_its_probe_decides_nothing() -> None:
    e, clock, _ = ejector()
    fail(e, "us-east", 3)
    clock.now += 1.0
    assert fail(e, "us-east") == [""] and e.status()["ejected"]["us-east"]["for_s"] == 4.0
    e.started("us-east")
    assert e.finished("us-east", failed=False) == "" and e.demoted() == {"us-east"}


def test_a_probe_whose_answer_never_came_lets_the_next_one_through() -> None:
    e, clock, _ = ejector()
    fail(e, "us-east", 3)
    clock.now += 5.0
    e.started("us-east")
    assert e.demoted() == {"us-east"}
    clock.now += POLICY.probe_timeout_s
    assert e.demoted() == frozenset()


def test_the_ejection_count_decays_while_the_cell_stays_admitted() -> None:
    e, clock, _ = ejector()
    fail(e, "us-east", 3)
    clock.now += 5.0
    fail(e, "us-east")  # probe failed: second ejection, 10 s
    clock.now += 10.0
    e.started("us-east")
    e.finished("us-east", failed=False)  # readmitted with two ejections on record
    clock.now += 5.0  # one base time admitted: one ejection forgotten
    fail(e, "us-east", 3)
    assert e.status()["ejected"]["us-east"] == {"for_s": 10.0, "ejections": 2, "probing": False}
    assert ejection_time_s(0, POLICY) == 5.0


def test_never_every_region_of_a_geography_and_at_most_max_percent() -> None:
    e, _, events = ejector()
    fail(e, "us-east", 3)
    assert fail(e, "us-west", 10) == [""] * 10, "the geography's last admitted region is never ejected"
    assert fail(e, "eu-west", 10) == [""] * 10, "a one-region geography never ejects its region"
    assert e.ejected() == ("us-east",) and events == [("us-east", "ejected")]
    four = {"a": ("r1", "r2", "r3", "r4")}
    views = {"r1": CellView(ejected_until=1.0)}
    assert may_eject("r2", four["a"], views, replace(POLICY, max_percent=50)) is True
    assert may_eject("r3", four["a"], {**views, "r2": CellView(ejected_until=1.0)}, replace(POLICY, max_percent=50)) is False
    assert may_eject("r2", four["a"], views, replace(POLICY, max_percent=25)) is False
    assert may_eject("r1", four["a"], {}, replace(POLICY, max_percent=0)) is False


def test_when_the_guard_lets_it_the_cell_is_ejected_at_its_next_failure() -> None:
    e, clock, _ = ejector()
    fail(e, "us-east", 3)
    fail(e, "us-west", 5)  # guarded: us-east is out
    clock.now += 5.0
    e.started("us-east")
    assert e.finished("us-east", failed=False) == "readmitted"
    assert fail(e, "us-west") == ["ejected"] and e.ejected() == ("us-west",)


def test_disabled_never_ejects() -> None:
    e, _, events = ejector(replace(POLICY, enabled=False, consecutive_failures=1))
    assert fail(e, "us-east", 20) == [""] * 20 and e.demoted() == frozenset() and events == []
    assert e.status() == {"enabled": False, "ejected": {}}


def test_demote_moves_ejected_regions_last_and_keeps_every_region() -> None:
    assert demote(("a", "b", "c"), frozenset({"a"})) == ("b", "c", "a")
    assert demote(("a", "b"), frozenset({"a", "b"})) == ("a", "b")
    assert demote(("a", "b"), frozenset({"z"})) == ("a", "b")


TOPO = make_topology({"us": ["us-east", "us-west"], "eu": ["eu-west"]})


def test_plans_put_the_peer_first_for_users_of_the_ejected_cell() -> None:
    table = default_table(TOPO)
    users = [u for u in (f"us-{n}" for n in range(200)) if rendezvous_order(u, {"us-east": 1, "us-west": 1})[0] == "us-east"]
    assert users
    for user in users:
        plan = plan_request(table, TOPO, key=user, home_geography="us", personal=True, settings=EdgeSettings(),
                            demoted=frozenset({"us-east"}))
        assert [(a.region, a.role) for a in plan.attempts] == [("us-west", "primary"), ("us-east", "retry"),
                                                               ("eu-west", "cross-geo")]
        assert plan_events(table, TOPO, key=user, home_geography="us", demoted=frozenset({"us-east"})) == ("us-west", "us-east")
        one_try = plan_request(table, TOPO, key=user, home_geography="us", personal=True,
                               settings=EdgeSettings(personal_tries=1), demoted=frozenset({"us-east"}))
        assert [a.region for a in one_try.attempts] == ["us-west", "eu-west"]


def test_ejection_settings_from_the_environment_and_refused_values() -> None:
    s = settings_from_env({"REGIONCTL_EDGE_EJECTION": "off", "REGIONCTL_EDGE_EJECTION_BASE_S": "2"})
    assert ejection_policy(s) == replace(ejection_policy(EdgeSettings()), enabled=False, base_s=2.0)
    assert ejection_policy(EdgeSettings()) == EjectionPolicy(enabled=True, consecutive_failures=5, window=20,
                                                             failure_rate=0.5, base_s=5.0, max_s=60.0, max_percent=50.0)
    for env, field in (({"REGIONCTL_EDGE_EJECTION": "maybe"}, "REGIONCTL_EDGE_EJECTION"),
                       ({"REGIONCTL_EDGE_EJECTION_MAX_PERCENT": "150"}, "REGIONCTL_EDGE_EJECTION_MAX_PERCENT"),
                       ({"REGIONCTL_EDGE_EJECTION_CONSECUTIVE_FAILURES": "0"}, "REGIONCTL_EDGE_EJECTION_CONSECUTIVE_FAILURES"),
                       ({"REGIONCTL_EDGE_EJECTION_MAX_S": "1"}, "REGIONCTL_EDGE_EJECTION_MAX_S"),
                       ({"REGIONCTL_EDGE_EVENTS_FIRST_ATTEMPT_SHARE": "0"}, "REGIONCTL_EDGE_EVENTS_FIRST_ATTEMPT_SHARE"),
                       ({"REGIONCTL_EDGE_CONNECT_TIMEOUT_MS": "-1"}, "REGIONCTL_EDGE_CONNECT_TIMEOUT_MS")):
        with pytest.raises(InputError) as err:
            settings_from_env(env)
        assert err.value.field == field


def test_a_cell_is_no_outlier_while_its_peer_fails_as_often() -> None:
    """Both survivors of a geography timing out (the load, not one cell): nothing is ejected; the
    same failures with a healthy peer eject the cell. Must-fail twin: a guard of 1.0 (off) ejects."""
    geo = {"us": ("us-east", "us-west")}
    failing_peer = CellView(recent=(True, False, True, False))  # 50 % of its own attempts failed
    healthy_peer = CellView(recent=(False, False, False, True))  # 25 %: at the bound, still "failing"
    clean_peer = CellView(recent=(False,) * 10)
    assert may_eject("us-east", geo["us"], {"us-west": failing_peer}, POLICY) is False
    assert may_eject("us-east", geo["us"], {"us-west": healthy_peer}, POLICY) is False
    assert may_eject("us-east", geo["us"], {"us-west": clean_peer}, POLICY) is True
    assert may_eject("us-east", geo["us"], {"us-west": CellView()}, POLICY) is True
    assert may_eject("us-east", geo["us"], {"us-west": failing_peer}, replace(POLICY, peer_failure_rate=1.0)) is True

    clock = Clock()
    ejector = Ejector(geo, POLICY, clock=clock)
    for _ in range(POLICY.consecutive_failures * 2):
        ejector.finished("us-west", failed=True)
        ejector.finished("us-east", failed=True)
    assert ejector.ejected() == ()  # each one's failures keep the other in
    with pytest.raises(InputError, match="ejection_peer_failure_rate"):
        EdgeSettings(ejection_peer_failure_rate=0.0)
