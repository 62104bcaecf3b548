"""A bundle rollout as a plan in the control store, and how it moves. Pure.

    parse_stages("shadow,1%,10%,50%,100%")  -> (Stage("shadow", 0), Stage("1%", 1.0), ...)
    RolloutPlan                              the stored document (rollout/<geo>), to_json / parse_plan
    progress(plan, gate, now)                -> Step: hold, advance, complete or roll back
    serving_plan_of(plan, experiment, rev)   -> contracts.serving_plan.ServingPlan the cells follow

Stages: `shadow` (the candidate scores a sample of requests beside the serving bundle, nobody sees
it), then canary shares of users (contracts.bucketing, salted by the rollout id, so each share
keeps every user of the share before), ending at 100 %. A stage lasts at least `hold_s`; it ends
when the gates pass (advance, or complete after the last), fail FAIL_ROUNDS evaluations in a row
(roll back, with the evidence), or
when they still lack evidence after `max_hold_factor` holds (roll back: a rollout that cannot be
judged does not go on). A completed rollout promotes the candidate in the artifact store (the
controller does, replication.promotion.promote_verified); a rolled-back or aborted one leaves the
serving bundle current and the cells drop the candidate.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any, Mapping

from contracts.bucketing import check_percent
from contracts.serving_plan import Experiment, ServingPlan
from regions.errors import InputError

DEFAULT_STAGES = "shadow,1%,10%,50%,100%"
SHADOW_PERCENT = 25.0
"""Share of homepage requests the candidate shadow-scores in the shadow stage (off the request path)."""
CANARY_SHADOW_PERCENT = 0.0
MAX_HOLD_FACTOR = 5
FAIL_ROUNDS = 3
"""A gate must fail this many evaluations in a row (one per controller round) to roll back: a
one-round blip of a busy host is not a verdict; a real regression fails every round."""
STATES = ("running", "completed", "rolled_back", "aborted")


@dataclass(frozen=True)
class Stage:
    name: str
    percent: float
    """Canary share of users; 0 for shadow."""

    @property
    def shadow(self) -> bool:
        return self.name == "shadow"


def parse_stages(text: str) -> tuple[Stage, ...]:
    """'shadow,1%,10%,100%': optional shadow first, then increasing shares ending at 100 %."""
    parts = [p.strip() for p in str(text).split(",") if p.strip()]
    if not parts:
        raise InputError("stages", "give at least one stage, e.g. shadow,1%,10%,50%,100%")
    stages: list[Stage] = []
    for n, part in enumerate(parts):
        if part == "shadow":
            if n != 0:
                raise InputError("stages", "shadow can only be the first stage")
            stages.append(Stage("shadow", 0.0))
            continue
        number = part[:-1] if part.endswith("%") else part
        try:
            percent = check_percent(float(number), "stages")
        except ValueError as exc:
            raise InputError("stages", f"{part!r} is not a stage; use shadow or a share like 10%") from exc
        if percent <= 0 or (stages and not stages[-1].shadow and percent <= stages[-1].percent):
            raise InputError("stages", f"{part!r}: canary shares must be > 0 and increase")
        stages.append(Stage(part if part.endswith("%") else f"{part}%", percent))
    if stages[-1].percent != 100.0:
        raise InputError("stages", "the last stage must be 100%")
    return tuple(stages)


@dataclass(frozen=True)
class RolloutPlan:
    id: str
    geo: str
    version: str
    """The candidate bundle."""
    baseline: str | None
    """The bundle serving when the rollout started (what a rollback keeps)."""
    stages: tuple[Stage, ...]
    hold_s: float
    started_at: float
    actor: str
    stage_index: int = 0
    stage_started_at: float = 0.0
    state: str = "running"
    reason: str = ""
    ended_at: float | None = None
    evidence: tuple[Mapping[str, Any], ...] = ()
    """The gate results that moved the plan, one per stage ended (newest last)."""
    gate: Mapping[str, int] = field(default_factory=dict)
    """Overrides of the gates' minimum samples (GATE_MINIMUMS) for this rollout."""

    @property
    def stage(self) -> Stage:
        return self.stages[min(self.stage_index, len(self.stages) - 1)]

    @property
    def running(self) -> bool:
        return self.state == "running"

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "geo": self.geo, "version": self.version, "baseline": self.baseline,
                "stages": [s.name for s in self.stages], "hold_s": self.hold_s, "started_at": self.started_at,
                "actor": self.actor, "stage_index": self.stage_index, "stage": self.stage.name,
                "stage_started_at": self.stage_started_at, "state": self.state, "reason": self.reason,
                "ended_at": self.ended_at, "evidence": list(self.evidence), "gate": dict(self.gate)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)


def parse_plan(text: str | bytes) -> RolloutPlan:
    try:
        raw = json.loads(text)
        plan = RolloutPlan(
            id=str(raw["id"]), geo=str(raw["geo"]), version=str(raw["version"]), baseline=raw.get("baseline"),
            stages=parse_stages(",".join(raw["stages"])), hold_s=float(raw["hold_s"]), started_at=float(raw["started_at"]),
            actor=str(raw.get("actor", "")), stage_index=int(raw.get("stage_index", 0)),
            stage_started_at=float(raw.get("stage_started_at", raw["started_at"])), state=str(raw.get("state", "running")),
            reason=str(raw.get("reason", "")), ended_at=raw.get("ended_at"), evidence=tuple(raw.get("evidence") or ()),
            gate=check_gate(raw.get("gate") or {}))
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError("rollout", f"the stored rollout plan is malformed ({exc}); abort it with `regionctl rollout abort`") from exc
    if plan.state not in STATES:
        raise InputError("rollout.state", f"{plan.state!r}; allowed: {', '.join(STATES)}")
    return plan


GATE_MINIMUMS = ("min_requests", "min_shadow", "quality_min_impressions", "quality_min_users")
"""The minimum samples a rollout may set for itself (failover.rollout_gates.GatePolicy fields)."""


def check_gate(raw: Mapping[str, Any]) -> dict[str, int]:
    out = {}
    for key, value in raw.items():
        if key not in GATE_MINIMUMS:
            raise InputError(f"gate.{key}", f"unknown; allowed: {', '.join(GATE_MINIMUMS)}")
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InputError(f"gate.{key}", f"{value!r} is not allowed; use an integer >= 1")
        out[key] = value
    return out


def new_plan(*, geo: str, version: str, baseline: str | None, stages: str, hold_s: float, now: float,
             actor: str, gate: Mapping[str, int] | None = None) -> RolloutPlan:
    if not hold_s > 0:
        raise InputError("hold", f"{hold_s!r} is not allowed; give a positive duration (e.g. 10m, 30s)")
    if version == baseline:
        raise InputError("version", f"{version} is already serving in {geo}; roll out another bundle")
    return RolloutPlan(id=f"{geo}:{version}:{int(now)}", geo=geo, version=version, baseline=baseline,
                       stages=parse_stages(stages), hold_s=float(hold_s), started_at=now, actor=actor,
                       stage_started_at=now, gate=check_gate(gate or {}))


@dataclass(frozen=True)
class GateResult:
    """What the gates said about the current stage (failover.rollout_gates.evaluate)."""

    verdict: str
    """pass | fail | insufficient"""
    checks: tuple[Mapping[str, Any], ...] = ()
    """One per gate: name, ok (True/False/None), value, limit, why."""

    def failed(self) -> list[Mapping[str, Any]]:
        return [c for c in self.checks if c.get("ok") is False]

    def to_dict(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "checks": list(self.checks)}


@dataclass(frozen=True)
class Step:
    kind: str
    """hold | advance | complete | rollback"""
    plan: RolloutPlan
    reason: str = ""
    evidence: Mapping[str, Any] = field(default_factory=dict)


def progress(plan: RolloutPlan, gate: GateResult, now: float, *, failures: int = FAIL_ROUNDS) -> Step:
    """The next move of a running plan, given the gates' verdict on its current stage and how many
    evaluations in a row (this one included) have failed."""
    if not plan.running:
        return Step("hold", plan)
    if gate.verdict == "fail" and failures < FAIL_ROUNDS:
        return Step("hold", plan, f"gate failed {failures} time(s) in a row; rolls back at {FAIL_ROUNDS}")
    held = now - plan.stage_started_at
    stage = plan.stage.name
    evidence = {"stage": stage, "held_s": round(held, 3), **gate.to_dict()}
    if gate.verdict == "fail":
        names = ", ".join(f"{c['name']} ({c.get('why', '')})" for c in gate.failed())
        reason = f"stage {stage}: gate failed: {names}"
        return Step("rollback", replace(plan, state="rolled_back", reason=reason, ended_at=now,
                                        evidence=(*plan.evidence, evidence)), reason, evidence)
    if held < plan.hold_s:
        return Step("hold", plan)
    if gate.verdict == "insufficient":
        if held < plan.hold_s * MAX_HOLD_FACTOR:
            return Step("hold", plan)
        reason = f"stage {stage}: not enough evidence after {held:.0f} s ({MAX_HOLD_FACTOR} holds)"
        return Step("rollback", replace(plan, state="rolled_back", reason=reason, ended_at=now,
                                        evidence=(*plan.evidence, evidence)), reason, evidence)
    if plan.stage_index + 1 >= len(plan.stages):
        reason = f"every stage passed; {plan.version} is now the serving bundle"
        return Step("complete", replace(plan, state="completed", reason=reason, ended_at=now,
                                        evidence=(*plan.evidence, evidence)), reason, evidence)
    nxt = plan.stages[plan.stage_index + 1]
    reason = f"stage {stage} passed after {held:.0f} s; next: {nxt.name}"
    return Step("advance", replace(plan, stage_index=plan.stage_index + 1, stage_started_at=now,
                                   evidence=(*plan.evidence, evidence)), reason, evidence)


def abort(plan: RolloutPlan, *, now: float, reason: str) -> RolloutPlan:
    if not plan.running:
        raise InputError("rollout", f"the rollout of {plan.version} in {plan.geo} is already {plan.state}")
    return replace(plan, state="aborted", reason=reason, ended_at=now)


def serving_plan_of(plan: RolloutPlan | None, experiment: Experiment | None, *, revision: int) -> ServingPlan:
    """What the cells of the geography serve now: the running stage's candidate and share, and the
    running experiment. A plan that is not running (completed, rolled back, aborted) serves nothing extra."""
    if plan is None or not plan.running:
        return ServingPlan(revision=revision, experiment=experiment)
    stage = plan.stage
    return ServingPlan(revision=revision, rollout_id=plan.id, candidate=plan.version,
                       canary_percent=stage.percent,
                       shadow_percent=SHADOW_PERCENT if stage.shadow else CANARY_SHADOW_PERCENT,
                       experiment=experiment)


__all__ = ["DEFAULT_STAGES", "GATE_MINIMUMS", "check_gate", "GateResult", "RolloutPlan", "Stage", "Step", "abort", "new_plan", "parse_plan",
           "parse_stages", "progress", "serving_plan_of"]
