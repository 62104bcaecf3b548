"""The I/O of a game day (chaos.gameday): the state file, the load population, what a dry run
would hit, the RPO evidence read from Redis, progress printing and playing rollbacks.

RPO evidence: the survivors' `log:replica:<lost>` streams are read ONCE, just before the rollbacks
restore the lost region (its replicator would otherwise ship the rest and hide the loss). Only
entries since the load started count (stream ids are milliseconds), so seqs of an earlier game day
are never mistaken for this one's.
"""
from __future__ import annotations

import json
import os
import signal
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from chaoslib.run import RunEventHandler

from chaos.context import REGION_KINDS, StackContext, default_geography, population
from chaos.redis_io import region_client
from contracts.store_keys import PARTITIONS_KEY
from chaos.measurement import AckedEvent, first_rollback_at
from regions import stack
from regions.errors import InputError
from regions.geo import replication_peers
from regions.redis_keys import EVENT_LOG, replica_log
from replication.geo_artifacts import geo_store_url

Progress = Callable[[str], None]
_KINDS_OF = {
    "kill_region": REGION_KINDS, "restore_region": REGION_KINDS,
    "stop_feature_store": ("redis",), "restore_feature_store": ("redis",),
    "stop_feature_updater": ("feature-updater",), "restore_feature_updater": ("feature-updater",),
    "freeze_index": ("cell",), "unfreeze_index": ("cell",),
    "inject_ranking_latency": ("cell",), "clear_ranking_latency": ("cell",),
}


# -- dry run -------------------------------------------------------------------------------------
def _describe(procs: Iterable[stack.RunningProcess]) -> list[str]:
    return [f"{p.name} (pid {p.pid}, {'running' if stack.is_running(p) else 'not running'})" for p in procs]


def targets_of(func: str, arguments: Mapping[str, Any], ctx: StackContext) -> list[str]:
    """What an action would hit, from the recorded stack state and the stores' URLs. Reads only."""
    state = stack.StackState.load(ctx.state_dir)
    region = str(arguments.get("region", ""))
    if func in _KINDS_OF:
        procs = stack.select(state, region=region, kinds=_KINDS_OF[func])
        found = _describe(procs) or [f"no process of region {region} in {ctx.state_dir / stack.STACK_FILE}"]
        if _KINDS_OF[func] == ("cell",):
            found.append(f"{ctx.cell_url(region)}/admin/faults")
        return found
    if func in ("kill_controller_leader", "restore_controllers"):
        who = "the holder of lease 'controller', one of: " if func == "kill_controller_leader" else ""
        return [who + ", ".join(_describe(stack.select(state, kinds=("controller",)))) or "no controller recorded"]
    if func in ("partition_region", "heal_partition"):
        return [f"control store key {PARTITIONS_KEY} in {ctx.control_store_url} (region {region or 'all'})"]
    if func in ("publish_corrupt_bundle", "restore_good_bundle"):
        geo = default_geography(ctx)
        current = None
        pointer = Path(geo_store_url(ctx.artifacts_url, geo).removeprefix("file://")) / "pointer.json"
        if ctx.artifacts_url.startswith("file://") and pointer.exists():
            current = json.loads(pointer.read_text()).get("current")
        return [f"artifact store {ctx.artifacts_url}, geography {geo}: pointer (current bundle {current or 'unknown'})"]
    return [f"unknown action {func}"]


# -- state file ----------------------------------------------------------------------------------
def _cmdline(pid: int) -> list[str] | None:
    try:
        return [p.decode(errors="replace") for p in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if p]
    except OSError:
        return None


def _alive(info: Mapping[str, Any]) -> bool:
    """The recorded pid still runs the recorded command line (a recycled pid is never signalled)."""
    return _cmdline(int(info["pid"])) == list(info.get("argv", []))


def claim_state(path: Path, *, experiment: str, out_dir: Path, topology: str) -> dict[str, Any]:
    if path.exists():
        info = read_state(path)
        if _alive(info):
            raise InputError("gameday", f"game day {info['experiment']!r} (pid {info['pid']}) is running; "
                             "wait for it or `regionctl gameday abort`")
    info = {"pid": os.getpid(), "argv": _cmdline(os.getpid()) or [], "experiment": experiment,
            "started_at": time.time(), "out_dir": str(out_dir), "topology": topology}
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as fh:
        json.dump(info, fh)
    os.replace(fh.name, path)
    return info


def read_state(path: Path) -> dict[str, Any]:
    try:
        info = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise InputError("gameday", f"no game day is running ({path} does not exist)") from exc
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError("gameday", f"{path} is unreadable ({exc}); remove it") from exc
    if not isinstance(info, dict) or not {"pid", "experiment"} <= set(info):
        raise InputError("gameday", f"{path} is not a game-day state file; remove it")
    return info


def signal_gameday(info: Mapping[str, Any], *, timeout_s: float) -> bool:
    """SIGTERM the recorded game day if it is still that process; wait for it to exit."""
    if not _alive(info):
        return False
    os.kill(int(info["pid"]), signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while _alive(info) and time.monotonic() < deadline:
        time.sleep(0.1)
        try:
            os.waitpid(int(info["pid"]), os.WNOHANG)  # reap when it is our own child (tests)
        except ChildProcessError:
            pass
    return True


def play_rollbacks(experiment: Mapping[str, Any], progress: Progress) -> list[dict[str, Any]]:
    """Run every rollback activity of the experiment, in order; failures are reported, not raised."""
    from chaoslib.activity import execute_activity

    runs = []
    for activity in experiment.get("rollbacks", []):
        run = execute_activity(dict(experiment), activity, configuration=dict(experiment.get("configuration", {})),
                               secrets={}, dry=None)
        progress(f"rollback {activity.get('name')}: {run.get('status')}" + (f" ({run['exception'][-1].strip()})" if run.get("exception") else ""))
        runs.append({"name": activity.get("name"), "status": run.get("status"), "output": run.get("output")})
    return runs


# -- RPO evidence -------------------------------------------------------------------------------
def stream_seqs(client: Any, key: str, *, since: float) -> set[int]:
    """`seq` fields of the stream's entries added at or after `since` (epoch seconds)."""
    seqs: set[int] = set()
    start = f"{int(since * 1000)}-0"
    while True:
        batch = client.xrange(key, min=start, max="+", count=1000)
        for entry_id, fields in batch:
            if str(fields.get("seq", "-1")).lstrip("-").isdigit() and int(fields["seq"]) >= 0:
                seqs.add(int(fields["seq"]))
        if len(batch) < 1000:
            return seqs
        ms, _, n = batch[-1][0].partition("-")
        start = f"{ms}-{int(n) + 1}"


class DurableSnapshot:
    """Seqs that the lost region's same-geography survivors hold, read once (see module docstring)."""

    def __init__(self, ctx: StackContext, *, lost_region: str | None, since: float) -> None:
        self.ctx, self.lost, self.since = ctx, lost_region, since
        self.seqs: set[int] = set()
        self.own_log_seqs: set[int] = set()
        self.read_from: list[str] = []
        self.problems: list[str] = []
        self.taken = False

    def take(self) -> None:
        if self.taken or self.lost is None:
            return
        self.taken = True
        for peer in replication_peers(self.ctx.topology, self.lost):
            try:
                client = region_client(self.ctx, peer)
                self.seqs |= stream_seqs(client, replica_log(self.lost), since=self.since)
                self.own_log_seqs |= stream_seqs(client, EVENT_LOG, since=self.since)
                client.close()
                self.read_from.append(f"{peer}:{replica_log(self.lost)}")
            except Exception as exc:  # a survivor we cannot read holds nothing we can count
                self.problems.append(f"could not read {peer}'s Redis: {exc}")


def acked_events(records: Iterable[Mapping[str, Any]], *, ctx: StackContext, lost_region: str,
                 since: float) -> tuple[list[AckedEvent], str]:
    """The lost region's acknowledged events, and how they were attributed to it:
    1. the load record's `region` (the answer named the storing region);
    2. else the lost region's own `log:events` after the rollbacks restored it from its AOF;
    3. else the user's geography (every event of the lost region's geography)."""
    acked = [r for r in records if r.get("kind") == "events" and r.get("status") == 200 and r.get("seqs")]
    at = lambda r: float(r["t"]) + float(r.get("latency_ms") or 0.0) / 1000.0  # noqa: E731
    if any(r.get("region") for r in acked):
        return [AckedEvent(seq=int(s), acked_at=at(r), region=str(r.get("region"))) for r in acked for s in r["seqs"]], "load records"
    try:
        client = region_client(ctx, lost_region)
        own = stream_seqs(client, EVENT_LOG, since=since)
        client.close()
        return [AckedEvent(seq=int(s), acked_at=at(r), region=lost_region if int(s) in own else "elsewhere")
                for r in acked for s in r["seqs"]], f"{lost_region}'s own {EVENT_LOG} (restored)"
    except Exception:  # the lost region did not come back: fall back to the geography
        pass
    geo = ctx.topology.region(lost_region).geography
    return [AckedEvent(seq=int(s), acked_at=at(r), region=lost_region) for r in acked
            if str(r.get("user_id", "")).startswith(f"{geo}-") for s in r["seqs"]], f"geography {geo}"


# -- the table of many game days --------------------------------------------------------------------
def summarize_run(out_dir: Path) -> dict[str, Any]:
    """One row of the game-day table from a game day's out dir (report.json, journal.json, load.jsonl):
    RTO, RPO, lost events, empty slates, the tier mix and success while the fault was in place (from
    the fault to the first rollback), how fast the weights moved, the hypothesis and the verdict."""
    from chaos.load import read_records
    from chaos.report import hypothesis_of, weights_changed_after, window_summary

    report = json.loads((out_dir / "report.json").read_text())
    journal = json.loads((out_dir / "journal.json").read_text())
    records = read_records(out_dir / "load.jsonl")
    during = window_summary(records, start=report.get("fault_at"), end=first_rollback_at(journal))
    hypothesis = hypothesis_of(journal)
    rpo = report.get("rpo") or {}
    return {"experiment": report["experiment"], "dir": str(out_dir), "status": report["status"],
            "rto_s": report["rto"]["seconds"] if report["rto"]["measured"] else None,
            "rpo_s": rpo.get("seconds"), "lost": rpo.get("lost"), "acknowledged": rpo.get("acknowledged"),
            "empty_slates": report["load"]["empty_slates"], "requests": report["load"]["requests"],
            "success_rate": report["load"]["success_rate"], "p99_ms": report["load"]["p99_ms"], "during_fault": during,
            "weights_changed_after_s": weights_changed_after(report.get("samples") or [], fault_at=report.get("fault_at")),
            "hypothesis": hypothesis, "verdict": report["verdict"]}


def summarize_runs(runs_dir: Path) -> list[dict[str, Any]]:
    """summarize_run for every game-day directory directly under `runs_dir` (those with a report.json)."""
    if not runs_dir.is_dir():
        raise InputError("runs", f"{runs_dir} is not a directory; pass the parent of game-day --out-dir directories")
    return [summarize_run(d) for d in sorted(runs_dir.iterdir()) if (d / "report.json").exists() and (d / "journal.json").exists()]


class ProgressHandler(RunEventHandler):  # type: ignore[misc]
    """Prints chaoslib's progress; snapshots the RPO evidence before the rollbacks start."""

    def __init__(self, progress: Progress, *, before_rollbacks: Callable[[], None]) -> None:
        self.progress = progress
        self.before_rollbacks = before_rollbacks

    def start_activity(self, activity: Any) -> None:
        self.progress(f"{activity.get('type')}: {activity.get('name')}")

    def activity_completed(self, activity: Any, run: Any) -> None:
        output = run.get("output")
        shown = json.dumps(output, default=str)[:160] if output is not None else ""
        self.progress(f"  -> {run.get('status')} {shown}")

    def start_rollbacks(self, experiment: Any) -> None:
        self.before_rollbacks()
        self.progress("rollbacks")

    def finish(self, journal: Any) -> None:
        self.progress(f"experiment finished: {journal.get('status')}, deviated={journal.get('deviated')}")


__all__ = ["DurableSnapshot", "ProgressHandler", "acked_events", "claim_state", "play_rollbacks", "population",
           "read_state", "signal_gameday", "stream_seqs", "summarize_run", "summarize_runs", "targets_of"]
