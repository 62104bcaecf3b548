"""The edge's passive outlier ejection against REAL cells: two `regionctl cell` processes (us-east,
us-west, each over its own redis-server, serving the tiny us bundle) behind two real `regionctl
edge` processes, one with ejection on (the default) and one with REGIONCTL_EDGE_EJECTION=off.

us-east's cell is SIGSTOPped: the kernel keeps its connections open and nothing answers, as
behind an nftables drop (the edge-cut game day) or a hung host. With ejection, the edge stops
sending first attempts to it after a handful of timeouts (only its probes still go there) and
re-admits it once it answers again; without ejection every homepage of us-east's users still
tries it first and pays the first attempt's timeout. Figures are printed (latency on this shared
machine is noise; what is asserted is where the attempts went). About 40 s for the module.
"""
from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from edge.routing import rendezvous_order
from regions.processes import ManagedProcess, free_port, spawn, start_redis, wait_until
from regions.topology import REPO_ROOT, load_topology
from tests.stack_helpers import publish_geo_bundles, start_cell, write_topology

pytestmark = pytest.mark.slow

DEAD, PEER = "us-east", "us-west"
BASE_S = 3.0
"""The edges' base ejection time (REGIONCTL_EDGE_EJECTION_BASE_S), shorter than the default 5 s so
that the re-admission fits a short test."""


class Cells:
    def __init__(self, root: Path, bundles: dict[str, Path]) -> None:
        self.root = root
        self.topo_file = write_topology(root / "topology.toml", regions=((DEAD, "us"), (PEER, "us")))
        self.topology = load_topology(self.topo_file)
        publish_geo_bundles(bundles, root / "artifacts")
        users = json.loads((bundles["us"] / "users.json").read_text())
        self.users = [u["user_id"] for u in users if u["user_id"].startswith("us-")][:60]
        self.procs: dict[str, ManagedProcess] = {}
        self.edges: dict[str, str] = {}

    def start(self) -> None:
        for name in (DEAD, PEER):
            region = self.topology.region(name)
            self.procs[f"redis-{name}"] = start_redis(port=region.redis_port, data_dir=self.root / f"redis-{name}",
                                                      name=f"redis-{name}")
            self.procs[name] = start_cell(region=name, topology_file=self.topo_file, artifacts_root=self.root / "artifacts",
                                          state_dir=self.root / f"state-{name}", http_port=region.http_port)
        for mode in ("on", "off"):
            port = free_port()
            self.procs[f"edge-{mode}"] = spawn(
                f"edge-{mode}", [sys.executable, "-m", "regionctl.main", "edge", "--topology", str(self.topo_file),
                                 "--store", f"sqlite:///{self.root / 'control.db'}", "--port", str(port)],
                log_dir=self.root / "logs", cwd=REPO_ROOT,
                env={"REGIONCTL_TOPOLOGY": str(self.topo_file), "REGIONCTL_EDGE_EJECTION": mode,
                     "REGIONCTL_EDGE_EJECTION_BASE_S": str(BASE_S)})
            self.edges[mode] = f"http://127.0.0.1:{port}"
        for mode, url in self.edges.items():
            wait_until(lambda: _ready(url), timeout=60, what=f"edge (ejection {mode}) ready")

    def signal(self, name: str, sig: signal.Signals) -> None:
        self.procs[name].popen.send_signal(sig)

    def stop(self) -> None:
        if DEAD in self.procs:
            self.signal(DEAD, signal.SIGCONT)
        for proc in self.procs.values():
            proc.kill()


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture(scope="module")
def cells(tmp_path_factory: pytest.TempPathFactory, tiny_geo_bundles: dict[str, Path]) -> Iterator[Cells]:
    c = Cells(tmp_path_factory.mktemp("ejection"), tiny_geo_bundles)
    try:
        c.start()
        yield c
    finally:
        c.stop()


def _homepages(url: str, users: list[str], rounds: int = 1) -> list[dict[str, Any]]:
    """Sequential homepages (one client, no overlap): each answer with its client-side ms."""
    out = []
    with httpx.Client(base_url=url, timeout=5.0, trust_env=False) as client:
        for _ in range(rounds):
            for user in users:
                t0 = time.perf_counter()
                resp = client.get("/v1/recommendations/homepage", params={"user_id": user, "count": 8})
                assert resp.status_code == 200, resp.text
                out.append({**resp.json(), "client_ms": (time.perf_counter() - t0) * 1000.0})
    return out


def _p99(answers: list[dict[str, Any]]) -> float:
    ms = sorted(a["client_ms"] for a in answers)
    return ms[min(len(ms) - 1, int(0.99 * len(ms)))]


def _first(answers: list[dict[str, Any]], region: str) -> int:
    return sum(1 for a in answers if a["tried"][0]["region"] == region)


def _metric(url: str, line_start: str) -> float:
    for line in httpx.get(f"{url}/metrics", timeout=5.0).text.splitlines():
        if line.startswith(line_start):
            return float(line.split()[-1])
    return 0.0


def _deads_users(c: Cells) -> list[str]:
    """Users whose first region (equal weights: the default table) is the cell to be stopped."""
    return [u for u in c.users if rendezvous_order(u, {DEAD: 1, PEER: 1})[0] == DEAD]


def test_a_cell_that_stops_answering_is_ejected_and_readmitted_and_without_ejection_keeps_its_first_attempts(
        cells: Cells) -> None:
    users = _deads_users(cells)
    assert len(users) >= 15, "enough of the users rank us-east first"
    for url in cells.edges.values():  # warm: connections open, caches filled, both cells answer
        warm = _homepages(url, cells.users)
        assert {a["region"] for a in warm} == {DEAD, PEER} and all(a["items"] for a in warm)

    cells.signal(DEAD, signal.SIGSTOP)
    try:
        # must-fail: without ejection every homepage of us-east's users tries it first and times out
        off = _homepages(cells.edges["off"], users)
        off_timeouts = [a for a in off if a["tried"][0]["region"] == DEAD and a["tried"][0]["result"] == "timeout"]
        print(f"\nejection off, us-east stopped: {len(off_timeouts)} of {len(off)} first attempts timed out in "
              f"us-east, p99 {_p99(off):.0f} ms")
        assert len(off_timeouts) == len(off) and all(a["region"] == PEER for a in off)
        assert httpx.get(f"{cells.edges['off']}/readyz", timeout=5).json()["ejection"] == {"enabled": False, "ejected": {}}

        on_url = cells.edges["on"]
        started = time.monotonic()
        on = _homepages(on_url, users, rounds=2)
        elapsed = time.monotonic() - started
        timeouts = [n for n, a in enumerate(on) if any(t["region"] == DEAD and t["result"] == "timeout" for t in a["tried"])]
        after = on[timeouts[4] + 1:] if len(timeouts) >= 5 else []
        probes = _first(after, DEAD)
        print(f"ejection on, us-east stopped: {len(timeouts)} of {len(on)} reads tried us-east and timed out "
              f"(first at #{timeouts[:1]}), {probes} probes in {len(after)} reads after the ejection over "
              f"{elapsed:.1f} s; p99 after the ejection {_p99(after):.0f} ms (before, ejection off: {_p99(off):.0f} ms)")
        assert timeouts[:5] == list(range(5)), "the first five attempts found us-east stopped, then it was ejected"
        assert after and all(a["region"] == PEER and a["items"] for a in after)
        # after the ejection only probes go to us-east first: one per ejection time at most
        assert probes <= 1 + int(elapsed / BASE_S), (probes, elapsed)
        assert _first(after, PEER) >= len(after) - probes
        ready = httpx.get(f"{on_url}/readyz", timeout=5).json()["ejection"]
        assert ready["enabled"] is True and DEAD in ready["ejected"], ready
        assert _metric(on_url, "shopnow_edge_ejected_cells") == 1.0
        assert _metric(on_url, f'shopnow_edge_ejections_total{{event="ejected",region="{DEAD}"}}') == 1.0
        # the ejection time passes while us-east is still stopped: ONE read probes it, times out, and
        # the cell is ejected again (for twice as long); every other read goes to the peer
        time.sleep(BASE_S)
        again = _homepages(on_url, users)
        assert _first(again, DEAD) == 1 and again[0]["tried"][0] == {**again[0]["tried"][0], "region": DEAD,
                                                                        "result": "timeout"}, again[0]["tried"]
        assert all(a["region"] == PEER for a in again)
        assert _metric(on_url, f'shopnow_edge_ejections_total{{event="re-ejected",region="{DEAD}"}}') == 1.0
    finally:
        cells.signal(DEAD, signal.SIGCONT)

    # answering again: the next probe after the ejection time re-admits it, and its users go back to it
    def readmitted() -> bool:
        _homepages(on_url, users[:3])
        return httpx.get(f"{on_url}/readyz", timeout=5).json()["ejection"]["ejected"] == {}

    wait_until(readmitted, timeout=60, what="us-east re-admitted by the edge")
    back = _homepages(on_url, users)
    assert _first(back, DEAD) == len(back) and sum(a["region"] == DEAD for a in back) >= len(back) - 1
    assert _metric(on_url, f'shopnow_edge_ejections_total{{event="readmitted",region="{DEAD}"}}') == 1.0
    assert _metric(on_url, "shopnow_edge_ejected_cells") == 0.0
