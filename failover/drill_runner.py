"""Executing a drill plan (failover.drill_plan) through the controller's overrides.

The runner never steers by itself: each step writes an override through
`Controller.change_overrides` (validated by failover.safety, journaled as `drill_step`), and the
leader's loop turns it into a routing table. Steps:

    SHIFT     steer override with the step's weights (the region keeps part of its share)
    DRAIN     drain the region (its share goes to the survivors); data at risk recorded here
    HOLD      wait with the region evacuated
    UNDRAIN   lift the drain and the drill's steer override; the controller fails the region back
    FAILBACK  wait until the controller's failback reaches the stage (it holds the stages itself)

After a step the runner waits `hold_s` while `evaluate_gates` holds on fresh snapshots; a gate
that fails for `gate_timeout_s` in a row aborts the drill and rolls back (undrain, clear the
steer). The drill's overrides carry a TTL a few times the drill's length, so a controller that
dies mid-drill does not leave the region drained for a day. While it runs, the runner watches the
routing table (and the edge's /readyz when an edge URL is known) to time the evacuation.
"""
from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

import httpx

from failover.controller import Controller
from failover.drill_plan import Check, DrillPlan, DrillStep, StepKind, evaluate_gates, plan_drill
from failover.drill_report import plan_document, write_report
from failover.journal import Action
from failover.overrides import Overrides
from failover.safety import request_drain, request_steer, request_undrain
from failover.steering import Snapshot
from regions.errors import InputError, ShopNowError


@dataclass(frozen=True, kw_only=True)
class DrillSettings:
    """How drills are run; each default carries its reason."""

    poll_s: float = 0.05
    """Watch gates, the table and the edge every 50 ms: evacuation is timed to that resolution."""
    gate_timeout_s: float = 30.0
    """A gate failing 30 s in a row aborts and rolls back: long enough for a blip, short for an outage."""
    failback_timeout_s: float = 120.0
    """Extra time, beyond the failback holds, to wait for each failback stage before reporting it incomplete."""
    edge_timeout_s: float = 10.0
    """How long to wait for the edge to report the evacuating table version after the table has it."""
    min_override_ttl_s: float = 600.0
    """The drill's overrides live at least 10 minutes, and at least three times the planned drill."""


class DrillConflict(InputError):
    """The drill cannot start now (pre-checks fail, or another drill runs): HTTP 409."""


class DrillAborted(ShopNowError):
    """A gate failed for too long; the drill rolls back."""


@dataclass
class DrillRecord:
    id: str
    region: str
    geography: str
    actor: str
    reason: str
    plan: dict[str, Any]
    started_at: float
    status: str = "running"
    finished_at: float | None = None
    error: str = ""
    events: list[dict[str, Any]] | None = None
    measurements: dict[str, Any] | None = None
    report_paths: list[str] | None = None

    def document(self) -> dict[str, Any]:
        return {"id": self.id, "region": self.region, "geography": self.geography, "actor": self.actor,
                "reason": self.reason, "status": self.status, "started_at": self.started_at,
                "finished_at": self.finished_at, "error": self.error, "plan": self.plan,
                "events": list(self.events or []), "measurements": dict(self.measurements or {}),
                "report_paths": list(self.report_paths or [])}


def data_at_risk(controller: Controller, region: str) -> list[dict[str, Any]]:
    """Replication lag of `region`'s log to each peer, the worst any cell reported in the last round."""
    pairs: dict[str, dict[str, Any]] = {}
    for report in (controller.last.reports.values() if controller.last else ()):
        for lag in report.readyz.replication if report.readyz else ():
            if lag.source == region:
                seen = pairs.get(lag.destination)
                if seen is None or (lag.lag_s, lag.lag_events) > (seen["lag_s"], seen["lag_events"]):
                    pairs[lag.destination] = {"source": region, "destination": lag.destination,
                                              "lag_s": lag.lag_s, "lag_events": lag.lag_events}
    return [pairs[d] for d in sorted(pairs)]


class DrillRunner:
    """Runs at most one drill at a time on the leader's controller."""

    def __init__(self, controller: Controller, *, reports_dir: Path, edge_url: str | None = None,
                 settings: DrillSettings = DrillSettings(), clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.controller, self.reports_dir, self.edge_url, self.settings = controller, reports_dir, edge_url, settings
        self._clock, self._sleep = clock, sleep
        self._lock = threading.Lock()
        self._drills: dict[str, DrillRecord] = {}
        self._running: str | None = None

    # -- planning ----------------------------------------------------------------------------------
    def plan(self, region: str, *, hold_s: float | None = None) -> DrillPlan:
        snapshot = self.controller.snapshot_now()
        if hold_s is not None:
            if hold_s < 0:
                raise InputError("hold", f"must be 0 or more seconds, got {hold_s:g}")
            snapshot = replace(snapshot, settings=replace(snapshot.settings, drill_hold_s=float(hold_s)))
        plan = plan_drill(snapshot, region=region)
        running = self._running
        alone = Check(name="no-other-drill", passed=running is None,
                      message=f"drill {running} is running; wait for it to finish" if running else "no other drill runs")
        return replace(plan, checks=(*plan.checks, alone))

    def start(self, region: str, *, hold_s: float | None, actor: str, reason: str,
              background: bool = True) -> DrillRecord:
        """Plan, refuse (DrillConflict) if a pre-check fails or a drill runs, else run the plan."""
        if not reason.strip():
            raise InputError("reason", "must say why the drill runs (it is journaled)")
        self.controller.leadership.fence()  # NotLeader on a standby, before anything else
        if self._running is not None:
            raise DrillConflict("region", f"drill {self._running} is still running; wait for it to finish")
        plan = self.plan(region, hold_s=hold_s)
        if not plan.ok:
            failed = "; ".join(f"{c.name}: {c.message}" for c in plan.failed_checks)
            raise DrillConflict("region", f"pre-checks failed for {region}: {failed}")
        with self._lock:
            if self._running is not None:
                raise DrillConflict("region", f"drill {self._running} is still running; wait for it to finish")
            record = DrillRecord(id=f"{int(self._clock())}-{region}-{uuid.uuid4().hex[:6]}", region=region,
                                 geography=plan.geography, actor=actor, reason=reason.strip(),
                                 plan=plan_document(plan), started_at=self._clock(), events=[], measurements={})
            self._drills[record.id] = record
            self._running = record.id
        if background:
            threading.Thread(target=self._execute, args=(record, plan), name=f"drill-{record.id}", daemon=True).start()
        else:
            self._execute(record, plan)
        return record

    def records(self) -> list[DrillRecord]:
        """Every drill this controller process ran or runs, oldest first."""
        return sorted(self._drills.values(), key=lambda r: r.started_at)

    def get(self, drill_id: str) -> DrillRecord:
        found = self._drills.get(drill_id)
        if found is None:
            known = ", ".join(sorted(self._drills)) or "none in this controller process"
            raise InputError("drill", f"unknown drill {drill_id!r}; known: {known}")
        return found

    # -- execution ---------------------------------------------------------------------------------
    def _event(self, rec: DrillRecord, step: str, message: str) -> None:
        now = self._clock()
        assert rec.events is not None
        rec.events.append({"at": now, "elapsed_s": round(now - rec.started_at, 3), "step": step, "message": message})

    def _change(self, rec: DrillRecord, step: DrillStep | None, what: str,
                mutate: Callable[[Snapshot], Overrides]) -> None:
        self.controller.change_overrides(
            mutate, actor=rec.actor, action=Action.DRILL_STEP, reason=f"drill {rec.id}: {what} ({rec.reason})",
            inputs={"drill": rec.id, "step": step.kind.value if step else "rollback",
                    "share_percent": step.share_percent if step else None,
                    "weights": dict(step.weights) if step else None})
        self._event(rec, step.kind.value if step else "rollback", what)

    def _observe(self, rec: DrillRecord, t_shift: float | None) -> None:
        """Time the evacuation: the table giving the region 0 %, then the edge using that table."""
        m = rec.measurements
        assert m is not None
        if t_shift is None:
            return
        if "evacuate_table_s" not in m:
            table = self.controller.read_table() or {}
            route = (table.get("geos") or {}).get(rec.geography) or {}
            if not route.get("anonymous") and (route.get("regions") or {}).get(rec.region, 0) == 0 and table:
                m["evacuate_table_s"] = round(self._clock() - t_shift, 3)
                m["evacuate_table_version"] = table.get("version")
                m["_table_at"] = self._clock()
                self._event(rec, "measure", f"routing table v{table.get('version')} gives {rec.region} 0 % "
                                            f"{m['evacuate_table_s']:.2f} s after the shift began")
        elif self.edge_url and "evacuate_edge_s" not in m and "edge_note" not in m:
            try:
                seen = httpx.get(f"{self.edge_url}/readyz", timeout=1.0, trust_env=False).json().get("table_version")
            except (httpx.HTTPError, ValueError, AttributeError) as exc:
                m["edge_note"] = f"edge at {self.edge_url} not reachable ({type(exc).__name__})"
                return
            if isinstance(seen, int) and seen >= int(m["evacuate_table_version"] or 0):
                m["evacuate_edge_s"] = round(self._clock() - t_shift, 3)
                self._event(rec, "measure", f"edge reports table v{seen} {m['evacuate_edge_s']:.2f} s after the shift")
            elif self._clock() - m["_table_at"] > self.settings.edge_timeout_s:
                m["edge_note"] = f"edge still reports table v{seen} {self.settings.edge_timeout_s:.0f} s later"

    def _gates(self, rec: DrillRecord, step: DrillStep, *, t_shift: float | None,
               until: Callable[[], bool] = lambda: True, limit_s: float | None = None) -> None:
        """Wait `hold_s` (and `until()`) with the step's gates green; abort if they fail for too long."""
        start, failing_since, last_bad = self._clock(), None, ""
        while True:
            self._observe(rec, t_shift)
            bad = [c.message for c in evaluate_gates(self.controller.snapshot_now(), step) if not c.passed]
            now = self._clock()
            if bad:
                failing_since = failing_since if failing_since is not None else now
                if "; ".join(bad) != last_bad:
                    self._event(rec, step.kind.value, "gate failing: " + "; ".join(bad))
                    last_bad = "; ".join(bad)
                if now - failing_since >= self.settings.gate_timeout_s:
                    raise DrillAborted(f"gates failed for {now - failing_since:.1f} s during {step.kind.value}: "
                                       + "; ".join(bad))
            else:
                failing_since, last_bad = None, ""
                if now - start >= step.hold_s and until():
                    return
            if limit_s is not None and now - start > limit_s:
                raise DrillAborted(f"{step.description} did not happen within {limit_s:.0f} s")
            self._sleep(self.settings.poll_s)

    def _failback_reached(self, region: str, stage: int) -> bool:
        last = self.controller.last
        if last is None:
            return False
        progress = last.steering.failback.get(region)
        if progress is not None:
            return progress.stage >= stage
        geo = self.controller.topology.regions[region].geography
        return last.steering.weight(geo, region) > 0 and not last.snapshot.drained(region)

    def _execute(self, rec: DrillRecord, plan: DrillPlan) -> None:
        m = rec.measurements
        assert m is not None
        planned = sum(s.hold_s for s in plan.steps)
        ttl = min(self.controller.settings.max_override_ttl_s, max(self.settings.min_override_ttl_s, 3 * planned))
        geo, region = plan.geography, plan.region
        t_shift: float | None = None
        touched, outcome = False, "failed"
        self._event(rec, "start", f"drill of {region} begins; overrides live {ttl:.0f} s at most")
        try:
            failback_index = 0
            for step in plan.steps:
                if step.kind is StepKind.SHIFT:
                    t_shift = t_shift if t_shift is not None else self._clock()
                    touched = True
                    self._change(rec, step, f"steer {geo} to {dict(step.weights)}", lambda s, st=step: request_steer(
                        s, geography=geo, weights=dict(st.weights), ttl_s=ttl, reason=f"drill {rec.id}"))
                elif step.kind is StepKind.DRAIN:
                    t_shift = t_shift if t_shift is not None else self._clock()
                    touched = True
                    m["data_at_risk"] = data_at_risk(self.controller, region)
                    self._change(rec, step, f"drain {region}", lambda s: request_drain(
                        s, region=region, ttl_s=ttl, reason=f"drill {rec.id}"))
                elif step.kind is StepKind.UNDRAIN:
                    self._change(rec, step, f"undrain {region} and clear the steer of {geo}", self._undo(geo, region))
                    touched = False
                    m["_undrain_at"] = self._clock()
                if step.kind is StepKind.FAILBACK:
                    index = failback_index
                    failback_index += 1
                    limit = step.hold_s + sum(self.controller.settings.failback_hold_s) + self.settings.failback_timeout_s
                    self._gates(rec, replace(step, hold_s=0.0), t_shift=t_shift, limit_s=limit,
                                until=lambda i=index: self._failback_reached(region, i))
                    self._event(rec, "failback", f"{region} reached {step.share_percent} % of its fair share")
                else:
                    self._gates(rec, step, t_shift=t_shift)
                    self._event(rec, step.kind.value, f"gates held {step.hold_s:.1f} s: {step.description}")
            m["failback_s"] = round(self._clock() - m.pop("_undrain_at"), 3) if "_undrain_at" in m else None
            outcome = "succeeded"
        except Exception as exc:  # any failure must still roll back and report
            outcome = "aborted" if isinstance(exc, DrillAborted) else "failed"
            rec.error = str(exc) if isinstance(exc, ShopNowError) else f"{type(exc).__name__}: {exc}"
            self._event(rec, "abort", str(exc))
            if touched:
                try:
                    self._change(rec, None, f"roll back: undrain {region}, clear the steer of {geo}",
                                 self._undo(geo, region))
                except ShopNowError as undo_exc:
                    rec.error += f"; rollback failed: {undo_exc} (undrain {region} by hand)"
        finally:
            m.pop("_table_at", None)
            m.pop("_undrain_at", None)
            rec.finished_at = self._clock()
            self._finish(rec, outcome)

    @staticmethod
    def _undo(geo: str, region: str) -> Callable[[Snapshot], Overrides]:
        def mutate(snapshot: Snapshot) -> Overrides:
            overrides = request_undrain(snapshot, region=region) if snapshot.drained(region) else snapshot.overrides
            return overrides.without_steer(geo)
        return mutate

    def _finish(self, rec: DrillRecord, outcome: str) -> None:
        """Journal the end, write the report; the record shows `outcome` only once all that is done."""
        try:
            self.controller.journal.append(
                actor=rec.actor, action=Action.DRILL_STEP, fence=self.controller.leadership.fence(),
                inputs={"drill": rec.id, "step": "end", "status": outcome, "measurements": rec.measurements},
                reason=f"drill {rec.id} of {rec.region} {outcome}" + (f": {rec.error}" if rec.error else ""))
        except ShopNowError as exc:
            self._event(rec, "end", f"could not journal the end of the drill: {exc}")
        json_path = self.reports_dir / f"{rec.id}.json"
        rec.report_paths = [str(json_path), str(json_path.with_suffix(".md"))]
        self._event(rec, "end", f"drill {outcome}; report: {rec.report_paths[0]} and {rec.report_paths[1]}")
        try:
            write_report({**rec.document(), "status": outcome}, self.reports_dir)
        except OSError as exc:
            rec.error += f"; report not written: {exc}"
            rec.report_paths = []
        with self._lock:
            rec.status = outcome
            self._running = None
