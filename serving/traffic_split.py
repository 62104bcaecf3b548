"""Which bundle, rules and candidate count answer one user, by the geography's serving plan. Pure.

    route(plan, user_id, serving_version=..., held=...) -> Route

1. A running experiment buckets every user of the geography (contracts.bucketing.arm_of on user id
   + experiment id). The arm's bundle_version (when set and held by the cell), rules and candidate
   count apply, and the answer names the experiment and the arm. An arm whose bundle the cell does
   not hold (refused, not loaded yet) is not served under that arm's name: the user gets the plain
   route and `unheld` says why, so per-arm figures never count answers the arm did not rank.
2. Otherwise, a user in the canary share (contracts.bucketing.in_share on user id + rollout id)
   gets the candidate, when the cell holds it.
3. Everyone else: the serving bundle.
Anonymous requests (no user id) always get the serving bundle, no experiment.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Collection, Mapping

from contracts.bucketing import arm_of, in_share
from contracts.serving_plan import ServingPlan


@dataclass(frozen=True)
class Route:
    version: str
    """The bundle that ranks this answer."""
    experiment: str = ""
    arm: str = ""
    rules: Mapping[str, Any] = field(default_factory=dict)
    """Overrides of serving.reranking.RerankRules (the arm's)."""
    candidate_count: int | None = None
    canary: bool = False
    unheld: str = ""
    """The version the plan asked for and the cell does not hold ("" when none)."""


def route(plan: ServingPlan, user_id: str | None, *, serving_version: str, held: Collection[str]) -> Route:
    if not user_id:
        return Route(version=serving_version)
    unheld = ""
    if plan.experiment is not None:
        arm = plan.experiment.arm(arm_of(user_id, plan.experiment.id, plan.experiment.weights()))
        version = arm.bundle_version or serving_version
        if version == serving_version or version in held:
            return Route(version=version, experiment=plan.experiment.id, arm=arm.name, rules=arm.rules,
                         candidate_count=arm.candidate_count)
        unheld = version
    if plan.candidate and plan.canary_percent > 0 and in_share(user_id, plan.rollout_id, plan.canary_percent):
        if plan.candidate in held:
            return Route(version=plan.candidate, canary=True, unheld=unheld)
        unheld = unheld or plan.candidate
    return Route(version=serving_version, unheld=unheld)


def shadow_due(plan: ServingPlan, draw: float, *, held: Collection[str], answered_by: str, tier: str) -> bool:
    """Score this answered request with the candidate too? Only fully ranked answers of another
    bundle, for `shadow_percent` % of them; `draw` is uniform in [0, 1)."""
    return (bool(plan.candidate) and plan.candidate in held and answered_by != plan.candidate and tier == "full"
            and draw * 100 < plan.shadow_percent)


__all__ = ["Route", "route", "shadow_due"]
