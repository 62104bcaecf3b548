"""Game days of the control plane on etcd, with the Chaos Toolkit actions (chaos.actions).

One rig for the module: a 3-member etcd cluster, the two controller processes and the edge process,
started by regions.stack exactly as `regionctl up --control-store etcd` starts them (PIDs in
stack.json), in front of STAND-IN cells (tests/failover/standin_cell.py: threads that answer the
controller's probes and the edge's HTTP calls; the edge uses REGIONCTL_EDGE_TRANSPORT=http). A
sampler thread watches, every 50 ms, who holds the controller lease (from etcd), which table the
edge routes by and whether homepages through the edge answer.

    leader member killed    the controllers keep a leader (or hand over within the lease); an
                            operator change made right after the kill reaches the edge
    controller killed       kill -9 of the leading controller: takeover time on etcd
    leader paused           SIGSTOP past its lease: the standby takes over; on SIGCONT the old
                            leader writes nothing (one writer per term, from the journal)
    quorum lost             2 of 3 members killed: the controller stops writing and says so (log
                            and status), the edge keeps serving its last table, the cells serve;
                            restored: writing resumes with no manual step, no acknowledged update lost

Figures are printed (run with -s); the asserts check behaviour, with generous time bounds only
where a wait must end.
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from chaos import actions, expectations
from contracts.store_keys import TABLE_KEY
from failover.etcd_store import EtcdStore
from regionctl.stack_specs import stack_specs
from regions import stack
from regions.errors import ShopNowError
from regions.processes import wait_until
from regions.stack_etcd import choose_store
from tests.failover.controller_helpers import Rig, make_rig, write_toml

pytestmark = pytest.mark.slow
SAMPLE_TIMEOUT_S = 5.0
"""The sampler's limit per request: generous, because other test runs may load the 2-core machine."""


@dataclass
class Sample:
    at: float
    holder: str | None
    """The controller lease's holder; "?" when etcd could not say."""
    edge_version: int | None
    """The table version the edge's /readyz named (None: it did not answer within the sampler's timeout)."""
    homepage: str
    """"ok" (200 with items), "bad" (any other answer) or "slow" (no answer within SAMPLE_TIMEOUT_S:
    the sampler's own limit on a loaded machine, reported apart from wrong answers)."""


@dataclass
class Day:
    rig: Rig
    state_dir: Path
    conf: dict[str, str]
    observer: EtcdStore
    director: str
    samples: list[Sample] = field(default_factory=list)
    sampling: threading.Event = field(default_factory=threading.Event)

    @property
    def edge(self) -> str:
        return f"http://127.0.0.1:{self.rig.topology.settings.edge_port}"

    def log_of(self, name: str, *, since: int = 0) -> str:
        """The process's log from byte `since` on (what it said after a given moment)."""
        with open(self.state_dir / "logs" / f"{name}.log", "rb") as fh:
            fh.seek(since)
            return fh.read().decode(errors="replace")

    def log_sizes(self) -> dict[str, int]:
        return {n: (self.state_dir / "logs" / f"{n}.log").stat().st_size for n in ("controller-a", "controller-b")}

    def table(self) -> dict[str, Any]:
        found = self.observer.get(TABLE_KEY)
        return json.loads(found.value) if found else {}

    def leader_api(self) -> str:
        found = self.observer.get("control/leader")
        return json.loads(found.value)["api_url"] if found else ""

    def steer(self, weights: dict[str, int], *, reason: str, api: str = "") -> httpx.Response:
        """Send the change to `api`, else to whoever leads now (control/leader); the reply, or a
        599 stand-in when no controller API answered."""
        try:
            return httpx.post(f"{api or self.leader_api()}/v1/steer", timeout=3.0,
                              headers={"Authorization": f"Bearer {self.director}"},
                              json={"geography": "us", "weights": weights, "ttl": "1h", "reason": reason})
        except (httpx.HTTPError, ShopNowError, ValueError) as exc:
            return httpx.Response(599, json={"error": str(exc)})

    def steer_until_acknowledged(self, weights: dict[str, int], *, reason: str, timeout_s: float = 30) -> tuple[float, int]:
        """Retry until a controller acknowledges (200); (when, how many attempts were refused)."""
        refused, deadline = 0, time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.steer(weights, reason=reason).status_code == 200:
                return time.monotonic(), refused
            refused += 1
            time.sleep(0.1)
        raise AssertionError(f"no controller acknowledged the steer {weights} within {timeout_s} s")

    def edge_routes(self, weights: dict[str, int]) -> bool:
        """The store's table has `weights` for us AND the edge routes by that version (or newer)."""
        table = self.table()
        if table.get("geos", {}).get("us", {}).get("regions") != weights:
            return False
        try:
            return httpx.get(f"{self.edge}/readyz", timeout=1).json()["table_version"] >= table["version"]
        except (httpx.HTTPError, ValueError, KeyError):
            return False

    def sample_forever(self) -> None:
        with httpx.Client(timeout=SAMPLE_TIMEOUT_S) as client:
            while not self.sampling.is_set():
                try:
                    lease = self.observer.lease_holder("controller")
                    holder: str | None = lease.holder if lease else None
                except ShopNowError:
                    holder = "?"
                try:
                    version = client.get(f"{self.edge}/readyz").json()["table_version"]
                except (httpx.HTTPError, ValueError, KeyError):
                    version = None
                try:
                    answer = client.get(f"{self.edge}/v1/recommendations/homepage", params={"user_id": "u-1", "count": 4})
                    homepage = "ok" if answer.status_code == 200 and answer.json().get("items") else "bad"
                except httpx.TimeoutException:
                    homepage = "slow"
                except (httpx.HTTPError, ValueError):
                    homepage = "bad"
                self.samples.append(Sample(time.monotonic(), holder, version, homepage))
                time.sleep(0.05)

    @contextlib.contextmanager
    def sampled(self) -> Iterator[list[Sample]]:
        self.samples, self.sampling = [], threading.Event()
        thread = threading.Thread(target=self.sample_forever, daemon=True)
        thread.start()
        try:
            yield self.samples
        finally:
            self.sampling.set()
            thread.join(timeout=5)

    def journal(self) -> list[dict[str, Any]]:
        return [json.loads(v.value) for v in self.observer.list("journal/entries/").values()]


def homepages(samples: list[Sample]) -> tuple[int, int, str]:
    """(wrong answers, answers, text for the report)."""
    bad = sum(1 for s in samples if s.homepage == "bad")
    slow = sum(1 for s in samples if s.homepage == "slow")
    return bad, len(samples), f"{len(samples) - bad - slow}/{len(samples)} ok, {bad} wrong, {slow} slower than {SAMPLE_TIMEOUT_S:g} s"


def lost_updates(acknowledged: list[str], entries: list[dict[str, Any]]) -> list[str]:
    """The acknowledged operator changes (by their reason) that the journal does not hold."""
    journaled = {e["reason"] for e in entries if e["action"] == "override"}
    return [reason for reason in acknowledged if reason not in journaled]


def longest_gap(samples: list[Sample], *, bad: Any) -> float:
    """The longest stretch of consecutive samples for which `bad(sample)` holds, in seconds."""
    longest, start = 0.0, None
    for s in samples:
        if bad(s):
            start = s.at if start is None else start
            longest = max(longest, s.at - start + 0.05)
        else:
            start = None
    return longest


def assert_one_writer_per_term(entries: list[dict[str, Any]]) -> None:
    """Never two leaders writing: each term's entries come from one controller, and terms only
    grow along the journal (a deposed leader's late entry would carry an older term)."""
    writers: dict[int, set[str]] = {}
    last_term = 0
    for entry in entries:
        if entry["term"] is None or not entry["actor"].startswith("controller:"):
            continue
        writers.setdefault(entry["term"], set()).add(entry["actor"])
        assert entry["term"] >= last_term, f"entry {entry['index']} of term {entry['term']} after term {last_term}"
        last_term = entry["term"]
    assert all(len(w) == 1 for w in writers.values()), writers


@pytest.fixture(scope="module")
def day(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Day]:
    tmp = tmp_path_factory.mktemp("etcd-gameday")
    patch = pytest.MonkeyPatch()
    patch.setenv("REGIONCTL_EDGE_TRANSPORT", "http")
    patch.delenv("REGIONCTL_CONTROL_STORE", raising=False)
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(patch.undo)
        rig = next(rigs := make_rig())
        cleanup.callback(rigs.close)
        topo_file = write_toml(rig.raw, tmp / "topology.toml")
        state_dir = tmp / "stack"
        choose_store(state_dir, "etcd")
        urls = stack.stack_urls(state_dir)
        cleanup.callback(stack.down, state_dir=state_dir)
        stack.up(stack_specs(rig.topology, state_dir=state_dir, urls=urls), topology_path=topo_file,
                 state_dir=state_dir, kinds=["etcd", "controller", "edge"])
        observer = EtcdStore(urls.control_store.removeprefix("etcd://"))
        cleanup.callback(observer.close)
        day = Day(rig=rig, state_dir=state_dir, conf={"state_dir": str(state_dir), "topology": str(topo_file)},
                  observer=observer, director=stack.token_for(state_dir, "director"))
        wait_until(lambda: day.table().get("version", 0) > 0 and bool(day.leader_api()), timeout=60,
                   what="a controller leads and wrote the table")
        wait_until(lambda: httpx.get(f"{day.edge}/readyz", timeout=1).json()["table_version"] > 0, timeout=30,
                   what="the edge routes by the controller's table")
        yield day
        assert_one_writer_per_term(day.journal())


def test_etcd_leader_member_killed(day: Day) -> None:
    before = day.observer.lease_holder("controller")
    assert before is not None
    with day.sampled() as samples:
        killed = actions.kill_etcd_leader(configuration=day.conf)
        t_kill = time.monotonic()
        acked, refused = day.steer_until_acknowledged({"us-east": 70, "us-west": 30}, reason="after etcd leader kill")
        verdict = expectations.control_store_quorum(configuration=day.conf)
        assert verdict["verdict"] == "ok" and verdict["fault"] is False, verdict  # 2 of 3: quorum holds
        wait_until(lambda: day.edge_routes({"us-east": 70, "us-west": 30}), timeout=30, interval=0.02,
                   what="the edge routes by the steer made after the kill")
        t_edge = time.monotonic()
        time.sleep(1.0)
    after = day.observer.lease_holder("controller")
    assert after is not None
    no_leader = longest_gap(samples, bad=lambda s: s.holder in (None, "?"))
    failed, _, answered = homepages(samples)
    print(f"\nETCD-LEADER-KILL: member {killed['etcd_leader']} killed; controller lease {before.holder} (term "
          f"{before.term}) -> {after.holder} (term {after.term}); longest time without a visible controller "
          f"leader {no_leader:.2f} s; steer acknowledged {acked - t_kill:.2f} s after the kill "
          f"({refused} refused attempts), at the edge {t_edge - t_kill:.2f} s after; homepages through the edge "
          f"{answered}")
    assert failed == 0
    assert after.term == before.term or after.holder != before.holder  # kept, or handed over (new term)
    actions.restore_etcd(configuration=day.conf)


def test_controller_leader_killed_takeover_on_etcd(day: Day) -> None:
    before = day.observer.lease_holder("controller")
    version = day.table()["version"]
    with day.sampled() as samples:
        actions.kill_controller_leader(configuration=day.conf)
        t_kill = time.monotonic()
        wait_until(lambda: (lease := day.observer.lease_holder("controller")) is not None
                   and lease.holder != before.holder and day.table()["version"] > version,  # type: ignore[union-attr]
                   timeout=30, interval=0.02, what="the standby leads and writes the table")
        took = time.monotonic() - t_kill
    failed, _, answered = homepages(samples)
    print(f"\nTAKEOVER (etcd): controller {before.holder} killed -> standby wrote routing table "
          f"v{day.table()['version']} in {took:.2f} s (lease TTL 3 s); homepages {answered}")
    assert failed == 0
    actions.restore_controllers(configuration=day.conf)


def test_paused_leader_is_fenced_out(day: Day) -> None:
    lease = day.observer.lease_holder("controller")
    assert lease is not None
    paused = stack.StackState.load(day.state_dir).processes[lease.holder]
    os.kill(paused.pid, signal.SIGSTOP)
    try:
        wait_until(lambda: (now := day.observer.lease_holder("controller")) is not None and now.holder != lease.holder,
                   timeout=30, interval=0.05, what="the standby takes the lease from the paused leader")
        new = day.observer.lease_holder("controller")
        wait_until(lambda: any(e["action"] == "leader_change" and e["term"] == new.term for e in day.journal()),  # type: ignore[union-attr]
                   timeout=15, what="the new leader's leader_change entry")
    finally:
        os.kill(paused.pid, signal.SIGCONT)
    time.sleep(2.0)  # the old leader runs again: it must not write
    entries = day.journal()
    taken = next(e["index"] for e in entries if e["action"] == "leader_change" and e["term"] == new.term)  # type: ignore[union-attr]
    late = [e for e in entries[taken:] if e["actor"] == f"controller:{lease.holder}" and e["term"] == lease.term]
    assert late == []
    assert_one_writer_per_term(entries)
    assert day.observer.lease_holder("controller").holder == new.holder  # type: ignore[union-attr]
    print(f"\nFENCING: {lease.holder} (term {lease.term}) paused past its lease; {new.holder} leads in term "  # type: ignore[union-attr]
          f"{new.term}; after SIGCONT the old leader wrote 0 entries; journal: one writer per term")  # type: ignore[union-attr]


def test_quorum_lost_then_restored(day: Day) -> None:
    day.steer_until_acknowledged({"us-east": 60, "us-west": 40}, reason="before quorum loss")
    wait_until(lambda: day.edge_routes({"us-east": 60, "us-west": 40}), timeout=30, what="edge routes 60/40")
    version_before = day.table()["version"]
    leader = day.observer.lease_holder("controller").holder  # type: ignore[union-attr]
    api = day.leader_api()
    acknowledged = [("before quorum loss", {"us-east": 60, "us-west": 40})]
    with day.sampled() as samples:
        logged = day.log_sizes()  # only what the controllers say from here on counts
        killed = actions.kill_etcd_quorum(configuration=day.conf)
        t_kill = time.monotonic()
        wait_until(lambda: "STORE-UNAVAILABLE" in day.log_of(leader, since=logged[leader]), timeout=30, interval=0.05,
                   what="the leader says the store is unavailable")
        t_said = time.monotonic()
        for name in ("controller-a", "controller-b"):  # the standby says so too (the expectation asks controller-a)
            wait_until(lambda n=name: "STORE-UNAVAILABLE" in day.log_of(n, since=logged[n]), timeout=30,  # type: ignore[misc]
                       interval=0.05,
                       what=f"{name} says the store is unavailable")
        status_doc = httpx.get(f"{api}/v1/status", timeout=5, headers={"Authorization": f"Bearer {day.director}"}).json()
        verdict = expectations.control_store_quorum(configuration=day.conf)
        metrics = httpx.get(f"{api}/metrics", timeout=5).text
        during = day.steer({"us-east": 80, "us-west": 20}, reason="during quorum loss", api=api)
        time.sleep(3.5)  # longer than the 3 s lease: nobody may lead now
        direct = httpx.get(f"http://127.0.0.1:{day.rig.topology.regions['us-east'].http_port}"
                           "/v1/recommendations/homepage", params={"count": 3}, timeout=2)
        t_restore = time.monotonic()
        actions.restore_etcd(configuration=day.conf)
        t_healthy = time.monotonic()
        acked, refused = day.steer_until_acknowledged({"us-east": 50, "us-west": 50}, reason="after recovery")
        acknowledged.append(("after recovery", {"us-east": 50, "us-west": 50}))
        wait_until(lambda: day.edge_routes({"us-east": 50, "us-west": 50}), timeout=30, interval=0.02,
                   what="the edge routes by the steer made after recovery")
        t_edge = time.monotonic()
    outage = [s for s in samples if t_kill + 0.5 <= s.at <= t_restore]
    failed, _, answered = homepages(samples)
    edge_versions = {s.edge_version for s in outage if s.edge_version is not None}
    no_leader = longest_gap(samples, bad=lambda s: s.holder in (None, "?"))
    lost = lost_updates([reason for reason, _ in acknowledged], day.journal())
    print(f"\nQUORUM-LOSS: members {killed['killed']} killed; leader said STORE-UNAVAILABLE after "
          f"{t_said - t_kill:.2f} s; a steer during the loss answered {during.status_code} (not acknowledged); "
          f"edge kept table v{sorted(v for v in edge_versions if v is not None)} during the loss; homepages "
          f"{answered}; time without a controller leader {no_leader:.2f} s "
          f"(outage {t_restore - t_kill:.2f} s); members restarted and healthy in {t_healthy - t_restore:.2f} s, then "
          f"a steer was acknowledged in {acked - t_healthy:.2f} s ({refused} refused attempts) and reached the edge "
          f"{t_edge - t_healthy:.2f} s after the cluster was healthy; acknowledged routing "
          f"updates lost: {len(lost)}")
    assert during.status_code != 200
    assert verdict["verdict"] == "ok" and verdict["fault"] is True, verdict
    assert edge_versions == {version_before}, edge_versions  # the edge kept serving its last table
    assert failed == 0 and direct.status_code == 200
    assert status_doc["store"]["reachable"] is False and status_doc["store"]["writing"] is False
    assert f'shopnow_controller_store_reachable{{controller="{leader}"}} 0.0' in metrics
    assert f'shopnow_controller_writing{{controller="{leader}"}} 0.0' in metrics
    assert status_doc["table"]["version"] == version_before  # from the follower, while etcd is down
    assert lost == []
    assert "STORE-BACK" in day.log_of(leader, since=logged[leader]) or day.observer.lease_holder("controller").holder != leader  # type: ignore[union-attr]


def test_the_game_day_checks_fail_on_a_broken_run() -> None:
    """The measurements and the one-writer check above, on made-up broken runs."""
    samples = [Sample(at=t / 20, holder=h, edge_version=1, homepage="ok")
               for t, h in enumerate(["A", None, "?", None, "A", None, "B"])]
    assert longest_gap(samples, bad=lambda s: s.holder in (None, "?")) == pytest.approx(0.15)
    assert longest_gap(samples, bad=lambda s: False) == 0.0

    def entry(index: int, actor: str, term: int) -> dict[str, Any]:
        return {"index": index, "actor": f"controller:{actor}", "term": term}

    assert_one_writer_per_term([entry(0, "a", 1), entry(1, "a", 1), entry(2, "b", 5)])
    journal = [{"action": "override", "reason": "first"}, {"action": "note", "reason": "second"}]
    assert lost_updates(["first", "second"], journal) == ["second"]  # acknowledged, not journaled: lost
    with pytest.raises(AssertionError):  # two leaders wrote in one term
        assert_one_writer_per_term([entry(0, "a", 1), entry(1, "b", 1)])
    with pytest.raises(AssertionError):  # a deposed leader's late write, after its successor's
        assert_one_writer_per_term([entry(0, "a", 1), entry(1, "b", 5), entry(2, "a", 1)])


def test_the_quorum_expectation_deviates_on_a_broken_control_plane() -> None:
    healthy = {"reachable": True, "writing": True, "error": ""}
    down = {"reachable": False, "writing": False, "error": "no etcd member could serve get"}
    ok = dict(members=3, leader="controller-a", running_controllers=["controller-a", "controller-b"], edge_table_version=4)
    assert expectations.quorum_problems(running=3, store=healthy, **ok) == (False, [])
    assert expectations.quorum_problems(running=1, store=down, **ok) == (True, [])
    assert expectations.quorum_problems(running=1, store=healthy, **ok)[1]  # writing without quorum
    assert expectations.quorum_problems(running=2, store=down, **ok)[1]  # quorum, yet unreachable
    assert expectations.quorum_problems(running=3, store=healthy, **{**ok, "leader": None})[1]  # nobody leads
    assert expectations.quorum_problems(running=1, store=down, **{**ok, "edge_table_version": None})[1]  # edge lost it
    assert expectations.quorum_problems(running=3, store=None, **ok)[1]


def test_regionctl_status_says_when_the_store_is_unreachable() -> None:
    from rich.console import Console

    from regionctl.controller_cmds import status_tables

    doc = {"table": {"version": 5, "geos": {}}, "regions": {}, "leader": {"holder": None}, "controller": "controller-a",
           "store": {"reachable": False, "writing": False, "error": "no etcd member could serve get"}}
    console = Console(record=True, width=200)
    for table in status_tables(doc):
        console.print(table)
    text = console.export_text()
    assert "control store unreachable: this controller writes nothing" in text and "no etcd member" in text
    console = Console(record=True, width=200)
    for table in status_tables({**doc, "store": {"reachable": True, "writing": True, "error": ""}}):
        console.print(table)
    assert "unreachable" not in console.export_text()
