"""A real local stack for game-day tests, shared by a test module (its fixture starts one with
`running_stack`), and the helpers those tests use: experiment variants, actions, verdicts."""
from __future__ import annotations

import contextlib
import copy
import json
import signal
import sqlite3
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import httpx
import pytest

from chaos import gameday
from chaos.load import read_records
from chaos.sampling import weights_of
from contracts.store_keys import TABLE_KEY
from failover.control_api import ControlClient
from failover.control_stores import store_from_url
from regionctl.stack_specs import stack_specs
from regions import stack
from regions.processes import wait_until
from regions.topology import Topology
from tests.stack_helpers import prepared_stack_dir

QUIET = lambda _m: None  # noqa: E731
FAILBACK_HOLD_S = "2,2"
"""Each failback stage below 100 % is held 2 s (the product's default is 60 + 120 s): a returning
region still goes 10 -> 50 -> 100 % with its SLO gates checked at each stage, and the wait for full
weights between two game days takes about 3 s of good probes and 4 s of holds."""


class Stack:
    def __init__(self, root: Path, topology_file: Path, topology: Topology, state: Path) -> None:
        self.root, self.topology_file, self.topology, self.state = root, topology_file, topology, state

    def out(self, name: str) -> Path:
        """A game day's out dir: <state>/../gamedays/<name>, where the dashboard lists reports."""
        return self.root / "gamedays" / name

    def gameday(self, name: str, out: str, *, topology: Path | None = None, **kwargs: Any) -> dict[str, Any]:
        return gameday.run_gameday(name, state_dir=self.state, topology=topology or self.topology_file,
                                   out_dir=self.out(out), progress=QUIET, **kwargs)

    def judged_gameday(self, name: str, out: str, *, prepare: Callable[[], None] = lambda: None,
                       cleanup: Callable[[], None] = lambda: None, **kwargs: Any) -> dict[str, Any]:
        """The game day, run once more when its premise failed (`premise_failed`: the steady state
        before the fault was not met, so nothing was injected and nothing was judged; on the shared
        2-core machine a p99 probe or a region's health sometimes misses just as it starts). The
        second run's report stands whatever it says, and the first is said to have failed.
        `prepare` runs before each run (the waits for the premise), `cleanup` after each, whatever
        happened."""
        report: dict[str, Any] = {}
        for attempt in (1, 2):
            prepare()
            try:
                report = self.gameday(name, out, **kwargs)
            finally:
                cleanup()
            if not premise_failed(report):
                break
            if attempt == 1:
                print(f"\n{name}: the steady state before the fault was not met ({report['hypothesis']}); "
                      "running it again")
        return report

    def topology_with(self, name: str, **settings: float) -> Path:
        """A copy of the stack's topology (same ports) with other [settings] values: the budgets a
        game day judges by."""
        lines = self.topology_file.read_text().splitlines()
        at = lines.index("[settings]") + 1
        path = self.root / f"{name}.toml"
        path.write_text("\n".join(lines[:at] + [f"{k} = {v}" for k, v in settings.items()] + lines[at:]) + "\n")
        return path

    def proc(self, name: str) -> stack.RunningProcess:
        return stack.StackState.load(self.state).processes[name]

    def signal(self, names: tuple[str, ...], sig: int) -> None:
        for name in names:
            stack.signal_process(self.proc(name), sig)

    def freeze_between_transactions(self, names: tuple[str, ...]) -> None:
        """SIGSTOP the processes at a moment none of them holds the SQLite control store's write lock:
        a controller frozen inside a transaction would freeze the store for everyone (the edge and
        the game day's sampler included), which is another experiment than a dead control plane."""
        db = stack.stack_urls(self.state).control_store.removeprefix("sqlite://")
        for _ in range(200):
            self.signal(names, signal.SIGSTOP)
            try:
                conn = sqlite3.connect(db, timeout=0.2)
                conn.execute("BEGIN IMMEDIATE")
                conn.rollback()
                conn.close()
                return
            except sqlite3.OperationalError:
                self.signal(names, signal.SIGCONT)
                time.sleep(0.05)
        raise AssertionError(f"could not freeze {names} outside a control-store transaction")

    def weights(self) -> dict[str, dict[str, float]]:
        with store_from_url(stack.stack_urls(self.state).control_store) as store:
            current = store.get(TABLE_KEY)
        return weights_of(json.loads(current.text)) if current is not None else {}

    def wait_full_weights(self, timeout: float = 300.0) -> None:
        """Until every region of the topology has its full weight again (a failback ramps over ~1 min)."""
        def full() -> bool:
            weights = self.weights()
            return all(len(set(w.values())) == 1 and min(w.values()) > 0 for w in weights.values()) and \
                {r for w in weights.values() for r in w} == set(self.topology.regions)

        wait_until(full, timeout=timeout, what="every region back at its full weight")

    def wait_weight(self, region: str, at_least: float, timeout: float = 240.0) -> None:
        """Until `region` has at least this weight (a failback ramps 0 -> 5 -> 25 -> 50)."""
        geo = self.topology.region(region).geography
        wait_until(lambda: self.weights().get(geo, {}).get(region, 0.0) >= at_least, timeout=timeout, interval=1.0,
                   what=f"{region} at weight {at_least:g} or more")

    def wait_personalised(self, geo: str = "us", *, share: float = 0.9, timeout: float = 120.0) -> None:
        """Until 20 homepages of the geography's users through the edge are personalised (full or
        cached, answered in the geography) at `share` or more: the premise of a quality RTO."""
        from chaos.context import context_from, population
        from chaos.load_records import PERSONAL_TIERS

        users = [u for u in population(context_from({"state_dir": str(self.state), "topology": str(self.topology_file)}))[0]
                 if u.startswith(f"{geo}-")][:20]
        base = f"http://127.0.0.1:{self.topology.settings.edge_port}/v1/recommendations/homepage"

        def personalised() -> bool:
            answers = [_answer(f"{base}?user_id={u}") for u in users]
            return sum(1 for a in answers if a.get("tier") in PERSONAL_TIERS and a.get("outcome") in ("primary", "retry")) \
                >= share * len(users)

        wait_until(personalised, timeout=timeout, interval=1.0, what=f"{geo} homepages personalised again")

    def wait_edge_ready(self) -> None:
        """Until the restarted edge answers a homepage (its port is open once it has started)."""
        url = f"http://127.0.0.1:{self.topology.settings.edge_port}/v1/recommendations/homepage?user_id=us-1"
        wait_until(lambda: _status(url) == 200, timeout=90, interval=0.5, what="the edge to answer")


def _answer(url: str) -> dict[str, Any]:
    try:
        return dict(httpx.get(url, timeout=2.0, trust_env=False).json())
    except (httpx.HTTPError, ValueError):
        return {}


def _status(url: str) -> int:
    try:
        return httpx.get(url, timeout=2.0, trust_env=False).status_code
    except httpx.HTTPError:
        return 0


@contextlib.contextmanager
def running_stack(root: Path, bundles: dict[str, Path], env: Mapping[str, str]) -> Iterator[Stack]:
    """`regionctl up` of the whole stack in `root` (free ports), with `env` for its processes (and
    their restarts); `regionctl down` after, whatever happened."""
    topo_file, topo, state, urls = prepared_stack_dir(root, bundles)
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        try:
            stack.up(stack_specs(topo, state_dir=state, urls=urls), topology_path=topo_file, state_dir=state)
            ControlClient(f"http://127.0.0.1:{topo.settings.controller_port}", stack.token_for(state, "viewer")).wait_until_healthy()
            yield Stack(root, topo_file, topo, state)
        finally:
            stack.down(state_dir=state)


def experiment_writer(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    """Write variants of the shipped experiments into a directory the game day reads from (the
    body of each module's `experiments` fixture)."""
    shipped = gameday.EXPERIMENTS_DIR
    target = tmp_path / "experiments"
    target.mkdir()
    for path in shipped.glob("*.json"):
        (target / path.name).write_text(path.read_text())
    monkeypatch.setattr(gameday, "EXPERIMENTS_DIR", target)

    def write(name: str, base: str, *, method: list[dict[str, Any]] | None = None, pause_after_fault: float | None = None,
              rollbacks: list[dict[str, Any]] | None = None, keep_probes: bool = True) -> str:
        exp = copy.deepcopy(json.loads((shipped / f"{base}.json").read_text()))
        if method is not None:
            exp["method"] = method
        if pause_after_fault is not None:
            exp["method"] = [exp["method"][0]]
            exp["method"][0]["pauses"] = {"after": pause_after_fault}
        if rollbacks is not None:
            exp["rollbacks"] = rollbacks
        if not keep_probes:
            exp["steady-state-hypothesis"]["probes"] = exp["steady-state-hypothesis"]["probes"][:1]
        (target / f"{name}.json").write_text(json.dumps(exp))
        return name

    return write


def premise_failed(report: Mapping[str, Any]) -> bool:
    """The steady state before the fault was not met, so no fault was injected: the game day is
    invalid and tested nothing (not a failed verdict)."""
    return report["hypothesis"]["before"] is False and "no fault action ran" in report["invalid_reasons"]


LATENCY_PROBE = "homepage-p99-within-slo"
"""The shipped experiments' user-level latency probe: the p99 (so the slowest) of 50 homepages."""


def after_held(report: Mapping[str, Any], *, but: tuple[str, ...] = ()) -> bool:
    """The hypothesis checked with the fault in place ran, and none of its probes failed but those
    named in `but`."""
    hypothesis = report["hypothesis"]
    return hypothesis["after"] is not None and not [
        v for v in hypothesis["violations"] if v.startswith("after: ") and v.split(": ", 2)[1] not in but]


def tolerated_failures(requests: int, *, success: float = 0.999, confidence: float = 0.99) -> int:
    """The most failed requests of `requests` that are still consistent with a success rate of
    `success`: the smallest k with P(more than k failures) < 1 - confidence for a binomial count.
    A short game day's window holds a few hundred requests, too few to tell 99.9 % from 99.75 % (one
    failure in 400): asserting the rate itself fails a system that meets its target one run in three
    (P(at least one failure in 400 at 0.1 %) = 33 %). At 400 requests this tolerates 2; a region whose
    calls are not cut at their deadline fails a share of the whole window, hundreds."""
    fail = 1.0 - success
    tail, k = 1.0, 0
    term = (1.0 - fail) ** requests  # P(X = 0)
    while True:
        tail -= term                     # P(X > k)
        if tail < 1.0 - confidence:
            return k
        k += 1
        term *= (requests - k + 1) / k * fail / (1.0 - fail)


def failures_beyond_bound(window: Mapping[str, Any]) -> str | None:
    """None when a window's failed requests (chaos.report.window_summary) are within
    `tolerated_failures` of its size; else how many failed against how many may."""
    failures = round(window["requests"] * (1.0 - window["success_rate"]))
    allowed = tolerated_failures(window["requests"])
    return None if failures <= allowed else (f"{failures} of {window['requests']} requests failed during the fault "
                                             f"(consistent with 99.9 %: {allowed} at most)")


SLOW_SLACK_MS = 30.0
"""How far past the deadline a typical read that tried the slow cell may end (the retry's answer)."""


def waits_on_slow_cell(edge_ms: Sequence[float], *, deadline_ms: float, slow_low_ms: float) -> list[str]:
    """What says the edge waited on a slow cell, from the edge's time of each read that tried it
    ([] when nothing does). The edge cuts the cell at its attempt budget and retries, so a typical
    read takes about the deadline; an edge that waited for the cell's answer takes its least added
    latency (`slow_low_ms`) or more on every such read, where a stall of the whole shared machine
    adds tens of ms to a few."""
    ordered = sorted(edge_ms)
    if not ordered:
        return ["no read tried the slow cell"]
    problems = []
    if ordered[len(ordered) // 2] > deadline_ms + SLOW_SLACK_MS:
        problems.append(f"the median read took {ordered[len(ordered) // 2]:.0f} ms, over the {deadline_ms:g} ms "
                        f"deadline + {SLOW_SLACK_MS:g} ms")
    if ordered[-1] >= slow_low_ms:
        problems.append(f"a read took {ordered[-1]:.0f} ms, as long as the slow cell's least added latency "
                        f"({slow_low_ms:g} ms): the edge waited for its answer")
    return problems


def failed_records(out: Path, *, start: float, end: float) -> list[dict[str, Any]]:
    """The load's failed records sent in [start, end), for a failing assertion to show what failed."""
    return [r for r in read_records(out / "load.jsonl") if not r.get("ok") and start <= float(r.get("t", 0.0)) < end]


def action(func: str, pause: float = 0.0, **arguments: Any) -> dict[str, Any]:
    act = {"type": "action", "name": func.replace("_", "-"),
           "provider": {"type": "python", "module": "chaos.actions", "func": func, "arguments": arguments}}
    if pause:
        act["pauses"] = {"after": pause}
    return act


def verdict_of(report: dict[str, Any], name: str, kind: str) -> dict[str, Any]:
    return next(v for v in report["verdicts"] if v["name"] == name and v["kind"] == kind)

