"""Overload at N-1 on a real cell: admission control bounds p99 by moving requests to cheaper
tiers; with it switched off (REGIONCTL_ADMISSION=off) the same overload fails the verdict.

A real cell process (HTTP + gRPC) over a real redis-server, serving the tiny us bundle, is the
survivor: it runs in a cgroup with half a core, capped and weighted (regions.cpu_quota), so that the
game day's load mix at 140 req/s is beyond its full-ranking capacity on this shared 2-core
machine (a full ranking costs the cell ~4-5 ms of CPU under the quota: 100-125 of them per second
on half a core) yet within what its cheaper tiers can serve. The cell's HTTP server computes at most 4
requests at once (CellSettings.request_slots): with the 40 threads of the HTTP threadpool all runnable, its event
loop starved and requests waited unseen, before their arrival stamp, until they timed out; this half
was then a known failing target (held 15 of 17 runs at best). The load is
chaos.load's (open loop, latency from the scheduled send, bounded), straight at the cell; the
verdict is chaos.overload's, the one the overload game day uses: p99 <= 180 ms and success >=
99.9 % over every request of the run. About 70 s for the module.

What is asserted is the mechanism, measured in one run of the module: with admission the cell
answers 99.9 % and its p99 is at most a third of the same overload's without it (here 54-72 ms
against ~1,000 ms; CI, a slower host, once 189 ms against ~1,000), admission's own counter moved
requests, and without admission the verdict fails. Whether the 180 ms target itself holds is a
timing figure of the host (the house rule: speed targets are benchmark figures, not timed
assertions): this test prints the verdict; the overload game day (`regionctl gameday
overload-n1`) judges it and docs/gamedays.md has its measured row.

The premise is a cell of known size: its own CPU time during the overload says whether it got its
half core (an overloaded cell has work waiting at every moment). A run where it got under 60 % of
it (chaos.overload.starved, the overload game day's rule; CPU stolen by the host: CI once saw 8 % of
requests answered, even popularity lists late) is run once more, and a second such run skips the
test saying so: it judged nothing, either way.
"""
from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from chaos.load import LoadSpec, read_records, run_load
from chaos.measurement import SLO_SUCCESS
from chaos.overload import cpu_received, held, overload_verdicts, starved, whole_run
from regions import cpu_quota
from regions.proc_stat import cpu_seconds
from regions.processes import ManagedProcess, start_redis
from regions.topology import load_topology
from tests.stack_helpers import publish_geo_bundles, start_cell, write_topology

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(cpu_quota.unavailable() is not None, reason=f"{cpu_quota.unavailable()}")]

CORES = 0.5
RATE = 140.0
SECONDS = 20.0
REDIS_GROUP = "test-overload-redis"


class Survivor:
    def __init__(self, root: Path, bundles: dict[str, Path]) -> None:
        self.root = root
        self.topo_file = write_topology(root / "topology.toml")
        self.region = load_topology(self.topo_file).region("us-west")
        publish_geo_bundles(bundles, root / "artifacts")
        self.users = [u["user_id"] for u in json.loads((bundles["us"] / "users.json").read_text())]
        self.items = [i["item_id"] if isinstance(i, dict) else str(i)
                      for i in json.loads((bundles["us"] / "items.json").read_text())][:500]
        self.redis: ManagedProcess = start_redis(port=self.region.redis_port, data_dir=root / "redis", name="redis-us-west")
        # the survivor region's Redis gets its weight too (a core at most): with the neighbours' load a
        # starved redis-server times out the cell's 50 ms reads, and that is not the overload under test
        cpu_quota.limit_cpu(REDIS_GROUP, [self.redis.pid], cores=1.0)
        self.base = f"http://127.0.0.1:{self.region.http_port}"
        self.runs: dict[str, dict[str, Any]] = {}

    def overload(self, admission: str) -> dict[str, Any]:
        """Start the cell with REGIONCTL_ADMISSION=`admission`, put it under the quota, warm it,
        send the overload, and return the whole-run summary and the cell's admission counts."""
        cell = start_cell(region="us-west", topology_file=self.topo_file, artifacts_root=self.root / "artifacts",
                          state_dir=self.root / f"state-{admission}", http_port=self.region.http_port,
                          env={"REGIONCTL_ADMISSION": admission})
        group = f"test-overload-{admission}"
        try:
            cpu_quota.limit_cpu(group, [cell.pid], cores=CORES)
            spec = LoadSpec(base_url=self.base, rate=20.0, duration_s=3.0, users=self.users, items=self.items)
            run_load(spec, self.root / f"warm-{admission}.jsonl")        # warm the caches; not judged
            path = self.root / f"load-{admission}.jsonl"
            cpu_before, started = cpu_seconds([cell.pid])[cell.pid], time.monotonic()
            with _raised_priority():
                result = run_load(LoadSpec(base_url=self.base, rate=RATE, duration_s=SECONDS, users=self.users,
                                           items=self.items, seed=11), path)
            used, seconds = cpu_seconds([cell.pid])[cell.pid] - cpu_before, time.monotonic() - started
            metrics = httpx.get(f"{self.base}/metrics", timeout=30.0).text
        finally:
            cpu_quota.release_cpu(group)
            cell.kill()
        samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
                   for f in text_string_to_metric_families(metrics) for s in f.samples}
        degraded = sum(v for (name, _), v in samples.items() if name == "shopnow_cell_admission_degraded_total")
        skips = {f"{dict(labels)['tier']}:{dict(labels)['reason']}": v for (name, labels), v in samples.items()
                 if name == "shopnow_cell_tier_skips_total" and v}
        return {"summary": whole_run(read_records(path), region="us-west"), "load": result, "degraded": degraded,
                "skips": skips, "cpu": cpu_received("us-west", quota_cores=CORES, used_s=used, seconds=seconds)}

    def judged_overload(self, admission: str) -> dict[str, Any]:
        """The overload, run once more when the cell was starved (chaos.overload.starved, the rule
        the overload game day judges its survivor by); starved twice, the test is skipped, saying
        so: a cell that did not get its half core says nothing about admission, whether the verdict
        held or not (without admission it fails all the more). Each setting runs once per module:
        both tests compare the same two runs."""
        if admission in self.runs:
            return self.runs[admission]
        run = self.overload(admission)
        if starved(run["cpu"]):
            print(f"\nadmission {admission}: {starved(run['cpu'])} ({_describe(run)}); running it again")
            run = self.overload(admission)
        reason = starved(run["cpu"])
        if reason:
            pytest.skip(f"twice: {reason}; nothing was judged ({_describe(run)})")
        self.runs[admission] = run
        return run


@contextlib.contextmanager
def _raised_priority(nice: int = -5) -> Iterator[None]:
    """The load generator (this thread) at a raised priority while it runs, so that neighbours on
    the shared machine do not make it fall short of its schedule (a short load is invalid anyway)."""
    before = os.getpriority(os.PRIO_PROCESS, 0)
    try:
        os.setpriority(os.PRIO_PROCESS, 0, nice)
    except PermissionError:
        pass
    try:
        yield
    finally:
        with contextlib.suppress(PermissionError):
            os.setpriority(os.PRIO_PROCESS, 0, before)


@pytest.fixture(scope="module")
def survivor(tmp_path_factory: pytest.TempPathFactory, tiny_geo_bundles: dict[str, Path]) -> Iterator[Survivor]:
    s = Survivor(tmp_path_factory.mktemp("overload"), tiny_geo_bundles)
    try:
        yield s
    finally:
        cpu_quota.release_cpu(REDIS_GROUP)
        s.redis.kill()


def _describe(run: dict[str, Any]) -> str:
    summary = run["summary"]
    return (f"p99 {summary['p99_ms']:.0f} ms, success {summary['success_rate']:.4f}, homepages {summary['homepage_mix']}, "
            f"achieved {run['load']['achieved_rate']:.0f} req/s, degraded by admission {run['degraded']:.0f}, "
            f"skips {run['skips']}, the cell used {run['cpu']['received_cores']:.2f} cores")


BOUNDED_BY = 3.0
"""With admission, the overload's p99 is at most this fraction's inverse of the p99 without it."""


def test_admission_bounds_p99_by_moving_requests_to_cheaper_tiers(survivor: Survivor) -> None:
    run, off = survivor.judged_overload("on"), survivor.judged_overload("off")
    summary = run["summary"]
    print(f"\nadmission on, {RATE:g} req/s: {_describe(run)}; {overload_verdicts(summary)}")  # with pytest -s
    assert run["load"]["valid"] and off["load"]["valid"], (run["load"]["invalid_reasons"], off["load"]["invalid_reasons"])
    assert summary["success_rate"] >= SLO_SUCCESS and summary["empty_slates"] == 0, _describe(run)
    without = off["summary"]["p99_ms"]
    assert summary["p99_ms"] * BOUNDED_BY <= without, f"p99 without admission {without:.0f} ms; with: {_describe(run)}"
    cheaper = sum(share for tier, share in summary["homepage_mix"].items() if tier != "full")
    # Admission itself moved requests to cheaper tiers (its own counter). How large a share depends on
    # how much CPU the half-core cell really gets on this machine (a quiet CI run: about 14 %, 68
    # requests; a loaded one: over 30 %), so no fixed share is asserted.
    assert cheaper > 0 and run["degraded"] > 0, _describe(run)


def test_without_admission_the_same_overload_fails_the_verdict(survivor: Survivor) -> None:
    run = survivor.judged_overload("off")
    summary = run["summary"]
    print(f"\nadmission off, {RATE:g} req/s: {_describe(run)}")
    assert run["load"]["valid"], run["load"]["invalid_reasons"]
    assert run["degraded"] == 0                      # the setting really switched it off
    assert not held(summary), _describe(run)
