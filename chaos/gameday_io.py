"""The I/O of a game day (chaos.gameday): the state file, the load population, what a dry run
would hit, the RPO evidence read from Redis, progress printing and playing rollbacks.

RPO evidence: the survivors' `log:replica:<lost>` streams are read ONCE, just before the rollbacks
restore the lost region (its replicator would otherwise ship the rest and hide the loss). Events
are matched by id (uuid4, unique across runs); only entries since the load started are read.
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
from chaos.redis_io import region_client, stream_event_counts
from chaos.measurement import AckedEvent, first_rollback_at
from chaos.net_gameday import NET_FAULTS, net_targets
from regions import stack
from regions.errors import InputError
from regions.geo import replication_peers
from regions.redis_keys import replica_log
from replication.geo_artifacts import geo_store_url

Progress = Callable[[str], None]
_KINDS_OF = {
    "kill_region": REGION_KINDS, "restore_region": REGION_KINDS,
    "stop_feature_store": ("redis",), "restore_feature_store": ("redis",),
    "stop_feature_updater": ("feature-updater",), "restore_feature_updater": ("feature-updater",),
    "freeze_index": ("cell",), "unfreeze_index": ("cell",),
    "inject_ranking_latency": ("cell",), "clear_ranking_latency": ("cell",),
    "inject_homepage_errors": ("cell",), "clear_cell_faults": ("cell",),
    "hang_region": REGION_KINDS, "resume_region": REGION_KINDS,
    "hang_feature_store": ("redis",), "resume_feature_store": ("redis",),
    "inject_answer_latency": ("cell",), "clear_answer_latency": ("cell",),
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
    if func in NET_FAULTS:
        return net_targets(func, arguments, ctx)
    if func in ("publish_corrupt_bundle", "restore_good_bundle"):
        geo = default_geography(ctx)
        current = None
        pointer = Path(geo_store_url(ctx.artifacts_url, geo).removeprefix("file://")) / "pointer.json"
        if ctx.artifacts_url.startswith("file://") and pointer.exists():
            current = json.loads(pointer.read_text()).get("current")
        return [f"artifact store {ctx.artifacts_url}, geography {geo}: pointer (current bundle {current or 'unknown'})"]
    if func in ("reprice_items", "restore_item_prices"):
        port = ctx.topology.region(region).redis_port if region in ctx.topology.regions else "?"
        return [f"{region}'s item feed (Redis {ctx.topology.settings.host}:{port} stream log:items), applied by "
                + (", ".join(_describe(stack.select(state, region=region, kinds=("feature-updater",))))
                   or "no feature updater recorded")]
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
def stream_event_ids(client: Any, key: str, *, since: float) -> set[str]:
    """`event_id` fields of the stream's entries added at or after `since` (epoch seconds)."""
    return set(stream_event_counts(client, key, since=since))


class DurableSnapshot:
    """Event ids that the lost region's same-geography survivors hold in their replica streams of
    it (`log:replica:<lost>`), read once (see the module docstring). Their own logs do not count:
    an event a survivor stored itself is that survivor's, not a durable copy of the lost region's."""

    def __init__(self, ctx: StackContext, *, lost_region: str | None, since: float) -> None:
        self.ctx, self.lost, self.since = ctx, lost_region, since
        self.ids: set[str] = set()
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
                self.ids |= stream_event_ids(client, replica_log(self.lost), since=self.since)
                client.close()
                self.read_from.append(f"{peer}:{replica_log(self.lost)}")
            except Exception as exc:  # a survivor we cannot read holds nothing we can count
                self.problems.append(f"could not read {peer}'s Redis: {exc}")


def acked_events(records: Iterable[Mapping[str, Any]]) -> list[AckedEvent]:
    """Every acknowledged event of the load, with the region that stored it (the answer's
    `stored_by`) and its acknowledgement time (the record's completion)."""
    out = []
    for r in records:
        if r.get("kind") != "events":
            continue
        at = float(r.get("done", float(r["t"]) + float(r.get("latency_ms") or 0.0) / 1000.0))
        for region, ids in (r.get("stored_by") or {}).items():
            out += [AckedEvent(event_id=str(i), acked_at=at, region=str(region)) for i in ids]
    return out


# -- the table of many game days --------------------------------------------------------------------
def summarize_run(out_dir: Path) -> dict[str, Any]:
    """One row of the game-day table from a game day's out dir (report.json, journal.json, load.jsonl):
    both RTOs, first-attempt failures, RPO, lost events, empty slates, the tier mix and success while
    the fault was in place (from the fault to the first rollback), how fast the weights moved, the
    hypothesis and the verdict (with the reasons of an invalid one)."""
    from chaos.load import read_records
    from chaos.report import hypothesis_of, weights_changed_after, window_summary

    report = json.loads((out_dir / "report.json").read_text())
    journal = json.loads((out_dir / "journal.json").read_text())
    records = read_records(out_dir / "load.jsonl")
    during = window_summary(records, start=report.get("fault_at"), end=first_rollback_at(journal))
    hypothesis = hypothesis_of(journal)
    rpo = report.get("rpo") or {}
    if not rpo and report.get("replication"):  # a partition: the peak live RPO, and the events lost after healing
        rep = report["replication"]
        rpo = {"seconds": rep.get("live_rpo_peak_s"), "lost": rep.get("lost"), "acknowledged": rep.get("acknowledged")}
    quality = report.get("quality_rto") or {}
    edge = report.get("edge") or {}
    return {"experiment": report["experiment"], "dir": str(out_dir), "status": report["status"],
            "rto_s": report["rto"]["seconds"] if report["rto"]["measured"] else None,
            "rto_status": report["rto"].get("status"), "quality_rto_s": quality.get("seconds"),
            "quality_rto_status": quality.get("status"),
            "first_attempt_failure_rate": edge.get("first_attempt_failure_rate"),
            "invalid_reasons": report.get("invalid_reasons") or [],
            "rpo_s": rpo.get("seconds"), "lost": rpo.get("lost"), "acknowledged": rpo.get("acknowledged"),
            "empty_slates": report["load"]["empty_slates"], "requests": report["load"]["requests"],
            "success_rate": report["load"]["success_rate"], "p99_ms": report["load"]["p99_ms"], "during_fault": during,
            "achieved_rate": report["load"].get("achieved_rate"), "p99_schedule_lag_ms": report["load"].get("p99_schedule_lag_ms"),
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
           "read_state", "signal_gameday", "stream_event_ids", "summarize_run", "summarize_runs", "targets_of"]
