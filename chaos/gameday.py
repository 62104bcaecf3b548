"""Game days: one experiment under load, measured, reported.

`run_gameday(name, ...)`:
  1. bounded open-loop load through the edge (chaos.load, on a thread; users and items from the
     current bundle's users.json / items.json), and a sampler of weights and tier mixes (0.5 s);
     `target` may name a region instead: the load then goes straight to its cell, without the
     edge's retries and last resort (to game-day a cell on its own);
  2. the experiment through chaoslib (`run_experiment`, rollbacks always played);
  3. the fault time = the first method action's `at` (stamped just before it injects); wait for
     the load to end;
  4. chaos.measurement from the load records: availability and quality RTO, degradation, the
     edge's first-attempt failures and retries; for a region loss, RPO: the lost region's
     acknowledged event ids vs the ids its same-geography survivors hold in `log:replica:<lost>`
     (read just before the rollbacks restore the region, so late replication cannot hide a loss);
  5. chaos.verdicts: invalid (fault action failed, fault not observed, load short) or the bounds,
     and the figures the method's probes measured themselves (figure_verdicts: e.g. the drift
     game day's time to detection);
  6. journal.json (with "rto", "quality_rto" and "rpo"), report.json/.md/.png, a printed summary.
A state file <state_dir>/gameday.json (pid, argv, experiment) lets `abort_gameday` signal a running
game day; it then removes every fault of the stack's fault registry (chaos.fault_registry), which
also holds the faults of runs it did not start. `dry=True` only prints the plan: nothing is touched.
"""
from __future__ import annotations

import asyncio
import json
import signal
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from chaos import fault_registry, partition_rpo
from chaos import gameday_io as io
from chaos.context import StackContext, context_from
from chaos.load import LoadSpec, processes_for, read_records, run_load_async, validate
from chaos.net_gameday import pair_lags, partition_of, replica_counts, unobserved_faults, wait_drained
from chaos.overload import OVERLOAD_TAG, overload_section
from chaos.measurement import (
    NOT_MEASURED, QualityRto, Rpo, Rto, compute_quality_rto, compute_rpo, compute_rto, degradation, edge_retries,
    first_rollback_at, to_requests,
)
from chaos.report import build_report, hypothesis_of, summary_lines, write_report
from chaos.residency_verdict import with_residency
from chaos.sampling import Sampler, stack_reader
from chaos.verdicts import Targets, figure_verdicts, invalid_reasons, still_answering
from regions.errors import InputError

EXPERIMENTS_DIR = Path(__file__).resolve().parent / "experiments"
STATE_FILE = "gameday.json"
ROLLBACKS_ALWAYS = {"runtime": {"rollbacks": {"strategy": "always"}}}
"""A game day always restores the stack, also when the steady state was not met after the fault."""
Progress = Callable[[str], None]


def experiment_names() -> list[str]:
    return sorted(p.stem for p in EXPERIMENTS_DIR.glob("*.json"))


def load_experiment(name: str) -> dict[str, Any]:
    path = EXPERIMENTS_DIR / f"{name}.json"
    if name not in experiment_names():
        raise InputError("experiment", f"unknown experiment {name!r}; known: {', '.join(experiment_names())}")
    return json.loads(path.read_text())


def configured(experiment: Mapping[str, Any], ctx: StackContext, topology: Path | None) -> dict[str, Any]:
    """The experiment with explicit state_dir/topology/stores (no environment lookup by chaoslib)."""
    conf = {"state_dir": str(ctx.state_dir), "topology": str(topology) if topology else "",
            "control_store": ctx.control_store_url, "artifacts": ctx.artifacts_url}
    return {**experiment, "configuration": conf}


def first_action_at(journal: Mapping[str, Any]) -> float | None:
    """`at` of the first method action that ran (the fault injection time)."""
    for run in journal.get("run", []):
        if run.get("activity", {}).get("type") == "action" and isinstance(run.get("output"), dict):
            at = run["output"].get("at")
            if isinstance(at, (int, float)):
                return float(at)
    return None


def affected_geographies(experiment: Mapping[str, Any], ctx: StackContext) -> list[str] | None:
    """The geographies of the regions the method's actions name; None (all) when none is named."""
    regions = {str(a["provider"].get("arguments", {}).get("region")) for a in experiment.get("method", [])
               if a.get("type") == "action" and a.get("provider", {}).get("arguments", {}).get("region")}
    geos = sorted({ctx.topology.region(r).geography for r in regions if r in ctx.topology.regions})
    return geos or None


LOSING_ACTIONS = ("kill_region", "cut_region", "hang_region")
"""Faults that take a whole region away (killed, cut off from the hub by chaos.net_actions, or hung):
the game day measures the RPO (events acknowledged by the region that its peers do not hold when
the rollbacks begin: what would be lost if it never came back; a hung or cut-off region's are only
stuck, and replicate once it continues) and checks that the region stopped answering."""


def lost_region_of(experiment: Mapping[str, Any]) -> str | None:
    for activity in experiment.get("method", []):
        provider = activity.get("provider", {})
        if provider.get("func") in LOSING_ACTIONS:
            return str(provider.get("arguments", {}).get("region"))
    return None


@dataclass(frozen=True)
class PlannedAction:
    name: str
    func: str
    arguments: Mapping[str, Any]
    targets: Sequence[str]


def plan(experiment: Mapping[str, Any], ctx: StackContext) -> list[PlannedAction]:
    """What the method's actions would hit, read from the stack state (touches nothing)."""
    return [PlannedAction(name=a.get("name", "?"), func=a["provider"]["func"], arguments=dict(a["provider"].get("arguments", {})),
                          targets=io.targets_of(a["provider"]["func"], a["provider"].get("arguments", {}), ctx))
            for a in experiment.get("method", []) if a.get("type") == "action"]


class LoadRun:
    """chaos.load on its own thread and event loop; `cancel()` ends it early (abort)."""

    def __init__(self, spec: LoadSpec, path: Path, progress: Progress) -> None:
        self.spec, self.path, self.progress = spec, path, progress
        self.result: dict[str, Any] | None = None
        self.error: BaseException | None = None
        self._loop = asyncio.new_event_loop()
        self._task: asyncio.Task[dict[str, Any]] | None = None
        self._thread = threading.Thread(target=self._run, name="chaos-load", daemon=True)

    def _run(self) -> None:
        def tick(i: int, total: int) -> None:
            if i and i % max(int(self.spec.rate * 10), 1) == 0:
                self.progress(f"load: {i}/{total} requests sent")

        self._task = self._loop.create_task(run_load_async(self.spec, self.path, progress=tick))
        try:
            self.result = self._loop.run_until_complete(self._task)
        except asyncio.CancelledError:
            self.progress("load: cancelled")
        except BaseException as exc:  # reported by the game day, which still plays its rollbacks
            self.error = exc
        finally:
            self._loop.close()

    def start(self) -> LoadRun:
        self._thread.start()
        return self

    def cancel(self) -> None:
        if self._task is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._task.cancel)

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def wait(self, seconds: float) -> None:
        """Let the load run for `seconds` (returns early if it ends)."""
        self._thread.join(seconds)


def _print(message: str) -> None:
    print(message, flush=True)


WARMUP_S = 15.0
"""Steady load before the fault: caches warm, and the lost region has acknowledged enough events
for the RPO to be measured on real traffic rather than on a handful of events."""


BASELINE_SKIP_S = 3.0
"""The quality RTO's baseline (personalised share before the fault) skips the load's first 3 s:
connections are being opened and the first answers of a cold cache are not the steady state."""


def run_gameday(name: str, *, state_dir: Path, topology: Path | None, load_rate: float, duration_s: float,
                out_dir: Path, dry: bool = False, progress: Progress = _print, warmup_s: float = WARMUP_S,
                target: str = "edge") -> dict[str, Any]:
    """Run experiment `name` under load and report; see the module docstring."""
    experiment = load_experiment(name)
    ctx = context_from({"state_dir": str(state_dir), "topology": str(topology) if topology else ""})
    experiment = configured(experiment, ctx, topology)
    if dry:
        steps = plan(experiment, ctx)
        for step in steps:
            progress(f"would run {step.func}({', '.join(f'{k}={v!r}' for k, v in step.arguments.items())})")
            for target in step.targets:
                progress(f"    hits {target}")
        return {"dry": True, "experiment": name, "plan": [asdict(s) for s in steps]}
    if target != "edge" and target not in ctx.topology.regions:
        raise InputError("target", f"must be 'edge' or a region ({', '.join(sorted(ctx.topology.regions))}), got {target!r}")
    base_url = ctx.edge_url if target == "edge" else ctx.cell_url(target)
    # rate, duration and the loopback target are checked before anything is touched
    validate(LoadSpec(base_url=base_url, rate=load_rate, duration_s=duration_s, users=["-"], items=["-"]))
    io.claim_state(state_dir / STATE_FILE, experiment=name, out_dir=out_dir, topology=str(topology or ""))
    try:
        return _run(name, experiment, ctx, load_rate=load_rate, duration_s=duration_s, out_dir=out_dir, progress=progress,
                    warmup_s=warmup_s, base_url=base_url)
    finally:
        (state_dir / STATE_FILE).unlink(missing_ok=True)


def _run(name: str, experiment: dict[str, Any], ctx: StackContext, *, load_rate: float, duration_s: float,
         out_dir: Path, progress: Progress, warmup_s: float, base_url: str) -> dict[str, Any]:
    from chaoslib.experiment import run_experiment

    out_dir.mkdir(parents=True, exist_ok=True)
    users, items = io.population(ctx)
    spec = LoadSpec(base_url=base_url, rate=load_rate, duration_s=duration_s, users=users, items=items,
                    processes=processes_for(load_rate))
    progress(f"game day {name}: load {load_rate:g} req/s for {duration_s:g} s through {base_url}, "
             f"{len(users)} users, {len(items)} items; results in {out_dir}")
    load_started = time.time()
    load = LoadRun(spec, out_dir / "load.jsonl", progress).start()
    reader = _stack_reader(ctx)
    pair = partition_of(experiment)
    sampler = Sampler(_with_live_rpo(reader, ctx, pair) if pair else reader).start()
    lost = lost_region_of(experiment)
    snapshot = io.DurableSnapshot(ctx, lost_region=lost, since=load_started)
    previous = _on_sigterm(load.cancel)
    if warmup_s > 0:
        progress(f"steady load for {warmup_s:g} s before the experiment")
        load.wait(min(warmup_s, duration_s / 3))
        unsettled = _settle(ctx, timeout_s=min(SETTLE_S, duration_s - warmup_s - SETTLE_LEAVES_S), progress=progress)
    else:
        unsettled = None
    try:
        journal = run_experiment(experiment, settings=ROLLBACKS_ALWAYS,
                                 event_handlers=[io.ProgressHandler(progress, before_rollbacks=snapshot.take)])
    except BaseException:
        load.cancel()
        sampler.stop()
        raise
    finally:
        _restore_sigterm(previous)
    if journal.get("status") in ("interrupted", "aborted"):
        load.cancel()
    progress(f"experiment {journal.get('status')}; waiting for the load to end")
    load.join()
    samples = sampler.stop()
    getattr(reader, "close", lambda: None)()
    records = read_records(out_dir / "load.jsonl") if (out_dir / "load.jsonl").exists() else []
    fault_at = first_action_at(journal)
    fault_end = first_rollback_at(journal)
    notes = []
    if load.result is not None:
        notes.append(f"load: {load.result['achieved_rate']:.1f} of {load_rate:g} req/s achieved, p99 schedule lag "
                     f"{load.result['p99_schedule_lag_ms'] or 0:.1f} ms, {load.result['processes']} generator process(es)")
        progress(notes[-1])
    requests = to_requests(records)
    anchor = fault_at if fault_at is not None else load_started
    geos = affected_geographies(experiment, ctx)
    if fault_at is None:  # no fault injected: there is nothing to recover from, hence no RTO
        rto = Rto(status=NOT_MEASURED, seconds=None, recovered_at=None, reason="no fault action reported its time")
        quality = QualityRto(status=NOT_MEASURED, seconds=None, baseline_share=None, reason="no fault was injected",
                             geographies=tuple(geos or ("all",)))
    else:
        rto = compute_rto(requests, fault_at=fault_at)
        quality = compute_quality_rto(requests, fault_at=fault_at, geographies=geos,
                                      baseline_from=load_started + BASELINE_SKIP_S)
    degraded = degradation(requests, fault_at=anchor, geographies=geos)
    retries = edge_retries(requests, start=anchor, end=fault_end)
    rpo: Rpo | None = None
    if lost is not None and fault_at is not None:
        snapshot.take()  # no-op when the rollbacks already triggered it
        rpo = compute_rpo(io.acked_events(records), lost_region=lost, fault_at=fault_at, durable_ids=snapshot.ids)
        notes.append(f"RPO: acknowledged events by the region named in each answer; durable = event ids in "
                     f"{', '.join(snapshot.read_from) or 'no survivor'}")
        notes += snapshot.problems
    invalid = invalid_reasons(
        method_runs=journal.get("run", []), fault_at=fault_at, load=load.result,
        load_error=str(load.error) if load.error else None, lost_region=lost,
        lost_region_answers=still_answering(records, region=lost, fault_at=fault_at, until=fault_end)
        if lost is not None and fault_at is not None else 0, hypothesis=hypothesis_of(journal), unsettled=unsettled)
    invalid += unobserved_faults(journal.get("rollbacks"))
    replication = None
    if pair is not None and fault_at is not None:
        replication = _partition_replication(ctx, pair, samples=samples, records=records, fault_at=fault_at,
                                             healed_at=fault_end or time.time(), load_started=load_started)
        invalid += partition_rpo.not_observed(replication)
        journal["replication"] = asdict(replication)
        notes.append(f"replication {pair[0]}<->{pair[1]}: live RPO peaked at {_s(replication.live_rpo_peak_s)} while cut "
                     f"off (before: {_s(replication.live_rpo_before_s)}); drained {_s(replication.drained_after_s)} "
                     f"after healing; {replication.lost} lost, {replication.duplicated} duplicated of "
                     f"{replication.acknowledged} acknowledged events")
    overload = (overload_section(records, experiment=experiment, topology=ctx.topology, lost=lost, load_rate=load_rate,
                                 journal=journal) if OVERLOAD_TAG in experiment.get("tags", ()) else None)
    invalid += (overload or {}).get("invalid", [])
    journal["rto"] = {**asdict(rto), "measured": rto.measured}
    journal["quality_rto"] = asdict(quality)
    journal["rpo"] = asdict(rpo) if rpo is not None else None
    journal["invalid_reasons"] = invalid
    (out_dir / "journal.json").write_text(json.dumps(journal, indent=2, default=str))
    report = build_report(experiment=name, title=experiment["title"], records=records, fault_at=fault_at, rto=rto,
                          quality=quality, degradation=degraded, retries=retries, rpo=rpo, region_lost=lost is not None,
                          status=str(journal.get("status")), samples=samples, notes=notes,
                          hypothesis=hypothesis_of(journal), fault_end=fault_end, load=load.result, invalid=invalid,
                          geographies=geos, overload=overload, figures=figure_verdicts(journal.get("run", [])),
                          targets=Targets.of(ctx.topology.settings))
    if replication is not None:
        report = partition_rpo.with_replication(report, replication)
    report = with_residency(report, _residency(ctx, progress))
    paths = write_report(report, out_dir)
    for line in summary_lines(report):
        progress(line)
    progress(f"report: {paths['md']} ({paths['png'].name}, {paths['json'].name}), journal: {out_dir / 'journal.json'}")
    return report


def _s(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} s"


def _with_live_rpo(reader: Any, ctx: StackContext, pair: tuple[str, str]) -> Any:
    """The sampler's reader, plus the live RPO of both directions of the partitioned pair."""
    def read() -> dict[str, Any]:
        return {**reader(), "rpo": pair_lags(ctx, pair)}

    read.close = getattr(reader, "close", lambda: None)  # type: ignore[attr-defined]
    return read


def _partition_replication(ctx: StackContext, pair: tuple[str, str], *, samples: Sequence[Mapping[str, Any]],
                           records: Sequence[Mapping[str, Any]], fault_at: float, healed_at: float,
                           load_started: float) -> partition_rpo.PartitionReplication:
    """After healing: wait for the backlog to drain, then count every acknowledged event in its peer."""
    drained = wait_drained(ctx, pair, healed_at=healed_at)
    counts = replica_counts(ctx, pair, since=load_started)
    return partition_rpo.measure(pair=pair, samples=samples, acked=io.acked_events(records), replica_counts=counts,
                                 fault_at=fault_at, healed_at=healed_at, drained_after_s=drained,
                                 load_started=load_started)


SETTLE_S = 20.0
"""After the warm-up, how long the game day waits (load running) for the controller to report every
region healthy: a cell's p99 covers its last 60 s, so the first answers of a cold cell can keep a
region degraded for a while after the warm-up. The steady-state hypothesis is still checked after
this wait; a stack that does not settle fails it and the game day is invalid."""

SETTLE_LEAVES_S = 45.0
"""The settle wait never eats into the last 45 s of load: the fault and one whole 30 s recovery
window must still fit (a shorter run does not wait at all)."""


def _settle(ctx: StackContext, *, timeout_s: float, progress: Progress) -> str | None:
    """Wait, at most `timeout_s` and while the load runs, until the controller says every region is
    healthy; say how long it took or that it did not settle (the hypothesis then decides). Returns
    what it saw when it gave up (for the invalid reason), None when settled or not waited."""
    import httpx
    from chaoslib.exceptions import ActivityFailed

    from chaos.actions import chaos_token

    if timeout_s <= 0:
        return None
    try:
        token = chaos_token(ctx.state_dir)
    except ActivityFailed as exc:  # no tokens file: nothing to ask; the hypothesis decides
        progress(f"not waiting for the stack to settle: {exc}")
        return None
    started = time.monotonic()
    deadline = started + timeout_s
    states: dict[str, str] = {}
    while time.monotonic() < deadline:
        try:
            regions = httpx.get(f"{ctx.controller_url}/v1/status", timeout=2.0,
                                headers={"Authorization": f"Bearer {token}"}).json()["regions"]
            states = {r: v.get("state", "?") for r, v in regions.items()}
        except (httpx.HTTPError, ValueError, KeyError, TypeError, AttributeError):
            states = {}
        if states and all(v == "healthy" for v in states.values()):
            if time.monotonic() - started > 1.0:
                progress(f"every region healthy {time.monotonic() - started:.1f} s after the warm-up")
            return None
        time.sleep(0.5)
    unsettled = f"the stack did not settle within {timeout_s:g} s after the warm-up: {states or 'no status'}"
    progress(unsettled)
    return unsettled


def _stack_reader(ctx: StackContext, *, tries: int = 10) -> Any:
    """The sampler's reader; a control store busy for a moment (SQLite's write lock) is retried."""
    from regions.errors import TemporaryError

    for attempt in range(tries):
        try:
            return stack_reader(ctx)
        except TemporaryError:
            if attempt == tries - 1:
                raise
            time.sleep(0.5)
    raise AssertionError("unreachable")


def _residency(ctx: StackContext, progress: Progress) -> dict[str, Any]:
    """The game day's last look: the residency audit of the whole stack."""
    from chaos.probes import audit_stack

    try:
        audit = audit_stack(ctx)
    except Exception as exc:  # the audit is reported, never the reason a report is lost
        return {"error": f"residency audit failed: {exc}"}
    progress(f"residency audit: {'clean' if audit['clean'] else str(audit['total_findings']) + ' findings'}")
    return audit


def _on_sigterm(cancel: Callable[[], None]) -> Any:
    """Outside chaoslib's own handler, SIGTERM (abort) ends the load early instead of the process."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, lambda _s, _f: cancel())


def _restore_sigterm(previous: Any) -> None:
    if previous is not None:
        signal.signal(signal.SIGTERM, previous)


def abort_gameday(*, state_dir: Path, timeout_s: float = 120.0, progress: Progress = _print) -> dict[str, Any]:
    """Signal the running game day, if any (SIGTERM: chaoslib plays its rollbacks), wait for it,
    then remove every fault left in the stack's fault registry, whichever run injected it."""
    path = state_dir / STATE_FILE
    info: dict[str, Any] | None = io.read_state(path) if path.exists() else None
    signalled = False
    if info is not None:
        signalled = io.signal_gameday(info, timeout_s=timeout_s)
        progress(f"signalled game day pid {info['pid']} ({info['experiment']})" if signalled
                 else f"game day pid {info['pid']} is not running")
    left = fault_registry.pending(state_dir)
    if info is None and not left:
        raise InputError("gameday", f"no game day is running ({path} does not exist) and no fault is registered in "
                         f"{state_dir / fault_registry.REGISTRY_FILE}")
    topology = info.get("topology", "") if info else ""
    ctx = context_from({"state_dir": str(state_dir), "topology": topology})
    configuration = {"state_dir": str(ctx.state_dir), "topology": topology, "control_store": ctx.control_store_url,
                     "artifacts": ctx.artifacts_url}
    runs = fault_registry.clear_all(state_dir, configuration=configuration, progress=progress)
    path.unlink(missing_ok=True)
    return {"experiment": info["experiment"] if info else None, "pid": info["pid"] if info else None,
            "signalled": signalled, "rollbacks": [{"name": r["key"], "status": r["status"]} for r in runs]}


def gameday_running(state_dir: Path) -> dict[str, Any] | None:
    """The state file's content when a game day is recorded as running, else None."""
    path = state_dir / STATE_FILE
    return io.read_state(path) if path.exists() else None


__all__ = ["abort_gameday", "experiment_names", "first_action_at", "gameday_running", "load_experiment", "plan",
           "run_gameday"]
