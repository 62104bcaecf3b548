"""The controller leader's rollout round: judge each running rollout, move it, publish the serving plan.

Per geography, every round (on the leader only; I/O here, decisions in failover.rollout_plan and
failover.rollout_gates):
1. read the rollout plan and the running experiment from the control store (failover.rollout_store);
2. a running plan whose stage the geography's serving plan already shows is judged: the cells'
   /readyz "rollout" views of this revision (failover.rollout_gates.figures_of), and, at canary
   stages, the online quality of candidate vs serving since the stage began (CTR and add-to-cart
   per impression, from the cells' interaction logs: `quality`); `progress` decides; a move is
   written with a fenced compare-and-set and journaled with the gates' evidence (rollout_stage,
   rollout_complete, rollout_rollback). A completed rollout promotes the candidate in the
   geography's artifact store (verified again: replication.promotion.promote_verified) and
   journals bundle_promote;
3. the serving plan the cells follow (failover.rollout_plan.serving_plan_of) is written to the
   geography's artifact store when it changed, with the next revision.
A new leader starts from what the store says, so a rollout survives a leader change.
"""
from __future__ import annotations

import json
import time
from dataclasses import replace
from typing import Any, Callable, Mapping

from contracts.serving_plan import ServingPlan, parse_serving_plan
from failover.control_store import Fence
from failover.journal import Action, Journal
from failover.probing import CellReport
from failover.rollout_gates import GatePolicy, evaluate, figures_of
from failover.rollout_plan import GateResult, RolloutPlan, progress, serving_plan_of
from failover.rollout_store import gate_key, read_plan, rollout_key, running_experiment
from online_metrics.attribution import VariantTotals
from regions.errors import ShopNowError
from regions.topology import Topology
from replication.artifact_store import ArtifactStore

QualityReader = Callable[[str, float], Mapping[str, VariantTotals] | None]
"""(geography, since_ts) -> attributed totals by bundle version, added over the geography's cells."""

GATE_WRITE_S = 2.0
"""The newest gate evaluation is written to rollout/<geo>/gate at most every 2 s (status reads it)."""
_ACTIONS = {"advance": Action.ROLLOUT_STAGE, "complete": Action.ROLLOUT_COMPLETE, "rollback": Action.ROLLOUT_ROLLBACK}


def _same(a: ServingPlan, b: ServingPlan) -> bool:
    return replace(a, revision=0) == replace(b, revision=0)


class RolloutDriver:
    def __init__(self, *, topology: Topology, journal: Journal, artifacts: Callable[[str], ArtifactStore],
                 quality: QualityReader | None = None, policy: GatePolicy = GatePolicy(),
                 promote: Callable[[str, str], Any] | None = None, actor: str = "controller",
                 log: Callable[[str], None] = lambda line: print(line, flush=True)) -> None:
        self.topology, self.journal, self.policy, self.actor = topology, journal, policy, actor
        self._artifacts, self._quality, self._promote, self._log = artifacts, quality, promote, log
        self.last_gates: dict[str, dict[str, Any]] = {}
        """The newest gate result per geography (status shows it)."""
        self.errors: dict[str, str] = {}
        self._gate_written: dict[str, float] = {}
        self._failures: dict[str, tuple[tuple[str, int], int]] = {}
        """Per geography: (rollout, stage) and how many evaluations in a row failed."""

    def step(self, *, store: Any, fence: Fence, now: float, reports: Mapping[str, CellReport]) -> list[str]:
        """One round over every geography; returns what it did (for the round's log)."""
        done: list[str] = []
        for geo in sorted(self.topology.geographies):
            try:
                done += self._geo(geo, store=store, fence=fence, now=now, reports=reports)
                self.errors.pop(geo, None)
            except ShopNowError as exc:
                self.errors[geo] = str(exc)
                self._log(f"ROLLOUT-ERROR geo={geo} error={exc}")
        return done

    def _views(self, geo: str, reports: Mapping[str, CellReport]) -> list[Mapping[str, Any]]:
        regions = [r.name for r in self.topology.regions.values() if r.geography == geo]
        return [reports[r].readyz.rollout for r in regions if r in reports and reports[r].readyz is not None]

    def _geo(self, geo: str, *, store: Any, fence: Fence, now: float, reports: Mapping[str, CellReport]) -> list[str]:
        artifacts = self._artifacts(geo)
        plan, version = read_plan(store, geo)
        experiment = running_experiment(store, geo)
        published = parse_serving_plan(artifacts.serving_plan())
        done: list[str] = []
        if plan is not None and plan.running and _same(published, serving_plan_of(plan, experiment and experiment.experiment,
                                                                                  revision=0)):
            moved = self._judge(geo, plan, version, published, store=store, fence=fence, now=now, reports=reports)
            if moved is not None:
                plan = moved
                done.append(f"rollout {geo} {plan.version}: {plan.state} {plan.stage.name}")
        desired = serving_plan_of(plan, experiment.experiment if experiment else None, revision=published.revision + 1)
        if not _same(desired, published):
            artifacts.put_serving_plan(desired.to_json())
            done.append(f"serving plan {geo} r{desired.revision}")
            self._log(f"SERVING-PLAN geo={geo} revision={desired.revision} candidate={desired.candidate} "
                      f"canary={desired.canary_percent} shadow={desired.shadow_percent} "
                      f"experiment={desired.experiment.id if desired.experiment else None}")
        return done

    def _judge(self, geo: str, plan: RolloutPlan, version: int | None, published: ServingPlan, *, store: Any,
               fence: Fence, now: float, reports: Mapping[str, CellReport]) -> RolloutPlan | None:
        stage = plan.stage
        figures = figures_of(self._views(geo, reports), candidate=plan.version, baseline=plan.baseline,
                             revision=published.revision)
        quality = None
        if not stage.shadow and self._quality is not None:
            totals = self._quality(geo, plan.stage_started_at)
            if totals is not None:
                quality = (totals.get(plan.version), totals.get(plan.baseline or ""))
        looks = sum(1 for s in plan.stages if not s.shadow)
        policy = replace(self.policy, looks=max(1, looks), **dict(plan.gate))
        gate: GateResult = evaluate(stage, figures, quality, policy)
        self.last_gates[geo] = {"at": now, "rollout": plan.id, "stage": stage.name, **gate.to_dict()}
        if now - self._gate_written.get(geo, 0.0) >= GATE_WRITE_S:  # for `regionctl rollout status`
            store.fenced_put(gate_key(geo), json.dumps(self.last_gates[geo], sort_keys=True), fence=fence)
            self._gate_written[geo] = now
        key = (plan.id, plan.stage_index)
        last_key, last_count = self._failures.get(geo, (key, 0))
        count = (last_count + 1 if last_key == key else 1) if gate.verdict == "fail" else 0
        self._failures[geo] = (key, count)
        step = progress(plan, gate, now, failures=count)
        if step.kind == "hold":
            return None
        promoted: tuple[Any] | None = None
        if step.kind == "complete" and self._promote is not None:
            try:  # verified again on the way in: a candidate that no longer verifies is rolled back
                promoted = (self._promote(geo, plan.version),)
            except ShopNowError as exc:
                reason = f"stage {stage.name} passed but the promotion was refused: {exc}"
                step = replace(step, kind="rollback", reason=reason,
                               plan=replace(step.plan, state="rolled_back", reason=reason))
        if not store.fenced_put(rollout_key(geo), step.plan.to_json(), fence=fence, cas=version):
            return None  # an operator changed the plan meanwhile (abort): the next round re-reads
        self.journal.append(actor=self.actor, action=_ACTIONS[step.kind], at=now, fence=fence,
                            inputs={"rollout": plan.id, "geo": geo, "version": plan.version, "baseline": plan.baseline,
                                    "evidence": dict(step.evidence)}, reason=step.reason)
        self._log(f"ROLLOUT geo={geo} version={plan.version} step={step.kind} reason={step.reason}")
        if promoted is not None:
            self.journal.append(actor=self.actor, action=Action.BUNDLE_PROMOTE, at=time.time(), fence=fence,
                                inputs={"geo": geo, "version": plan.version, "rollout": plan.id,
                                        "manifest_version": getattr(promoted[0], "bundle_version", plan.version)},
                                reason=f"rollout {plan.id} passed every stage")
        return step.plan


__all__ = ["QualityReader", "RolloutDriver"]
