"""A/B experiments of one geography: the stored document and the verdict. Pure.

    ExperimentDoc       experiments/<geo>/<id>: the experiment (contracts.serving_plan.Experiment:
                        arms with bundle version, rules, candidate count), its decision policy,
                        status running|stopped, who and when
    new_experiment(...) validated; at most one experiment runs per geography (each answer names
                        one experiment and arm)
    verdict_of(doc, totals) -> online_metrics.significance.Verdict between the first arm (the
                        control) and the best other arm, by the policy's primary metric, with the
                        minimum sample and duration before a winner is named

Experiments stay in their geography: the document holds ids of bundles and arms, no user; the
figures come from each region's own log (online_metrics) as totals, never as users.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any, Mapping

from contracts.serving_plan import Experiment, parse_experiment
from online_metrics.attribution import VariantTotals
from online_metrics.significance import METRICS, DecisionPolicy, Verdict, compare
from regions.errors import InputError

STATUSES = ("running", "stopped")
PRIMARY_METRICS = ("ctr", "add_to_cart", "conversion", "revenue_per_impression")


@dataclass(frozen=True)
class ExperimentDoc:
    geo: str
    experiment: Experiment
    policy: DecisionPolicy
    created_at: float
    actor: str
    status: str = "running"
    stopped_at: float | None = None
    reason: str = ""

    @property
    def id(self) -> str:
        return self.experiment.id

    def to_dict(self) -> dict[str, Any]:
        p = self.policy
        return {"geo": self.geo, **self.experiment.to_dict(), "created_at": self.created_at, "actor": self.actor,
                "status": self.status, "stopped_at": self.stopped_at, "reason": self.reason,
                "policy": {"alpha": p.alpha, "min_impressions": p.min_impressions, "min_users": p.min_users,
                           "min_duration_s": p.min_duration_s,
                           "looks": p.looks, "primary": p.primary}}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)


def _policy(raw: Mapping[str, Any]) -> DecisionPolicy:
    primary = raw.get("primary", "ctr")
    if primary not in PRIMARY_METRICS:
        raise InputError("primary", f"{primary!r}; allowed: {', '.join(PRIMARY_METRICS)}")
    try:
        return DecisionPolicy(alpha=float(raw.get("alpha", 0.05)), min_impressions=int(raw.get("min_impressions", 1000)),
                              min_users=int(raw.get("min_users", 100)),
                              min_duration_s=float(raw.get("min_duration_s", 3600.0)), looks=int(raw.get("looks", 1)),
                              primary=primary)
    except (TypeError, ValueError) as exc:
        if isinstance(exc, InputError):
            raise
        raise InputError("policy", str(exc)) from exc


def parse_doc(text: str | bytes) -> ExperimentDoc:
    try:
        raw = json.loads(text)
        doc = ExperimentDoc(geo=str(raw["geo"]), experiment=parse_experiment(raw), policy=_policy(raw.get("policy") or {}),
                            created_at=float(raw["created_at"]), actor=str(raw.get("actor", "")),
                            status=str(raw.get("status", "running")), stopped_at=raw.get("stopped_at"),
                            reason=str(raw.get("reason", "")))
    except (ValueError, KeyError, TypeError) as exc:
        if isinstance(exc, InputError):
            raise
        raise InputError("experiment", f"the stored experiment is malformed ({exc})") from exc
    if doc.status not in STATUSES:
        raise InputError("experiment.status", f"{doc.status!r}; allowed: {', '.join(STATUSES)}")
    return doc


def new_experiment(*, geo: str, raw: Mapping[str, Any], policy: Mapping[str, Any], now: float, actor: str,
                   existing: list[ExperimentDoc]) -> ExperimentDoc:
    """A validated experiment; InputError when one already runs in the geography or the id is taken."""
    experiment = parse_experiment(raw)
    for other in existing:
        if other.id == experiment.id:
            raise InputError("id", f"experiment {experiment.id} already exists in {geo}; choose another id")
        if other.status == "running":
            raise InputError("geo", f"experiment {other.id} is running in {geo}; stop it first "
                                    f"(`regionctl experiments stop {other.id} --geo {geo}`): one experiment per geography")
    return ExperimentDoc(geo=geo, experiment=experiment, policy=_policy(policy), created_at=now, actor=actor)


def stop(doc: ExperimentDoc, *, now: float, reason: str) -> ExperimentDoc:
    if doc.status != "running":
        raise InputError("experiment", f"experiment {doc.id} is already {doc.status}")
    return replace(doc, status="stopped", stopped_at=now, reason=reason)


def arm_key(doc: ExperimentDoc, arm: str) -> str:
    """The key online_metrics.attribution gives an arm's totals (by="arm")."""
    return f"{doc.id}/{arm}"


def verdict_of(doc: ExperimentDoc, totals: Mapping[str, VariantTotals], *, now: float) -> Verdict:
    """Control (first arm) against the best other arm by the primary metric."""
    arms = [a.name for a in doc.experiment.arms]
    empty = {a: VariantTotals(variant=arm_key(doc, a)) for a in arms}
    got = {a: totals.get(arm_key(doc, a), empty[a]) for a in arms}
    attr = {"ctr": "ctr", "add_to_cart": "add_to_cart_rate", "conversion": "conversion_rate",
            "revenue_per_impression": "revenue_per_impression"}[doc.policy.primary]
    control, others = arms[0], arms[1:]
    best = max(others, key=lambda a: (getattr(got[a], attr), -arms.index(a)))
    end = doc.stopped_at or now
    return compare(got[best], got[control], policy=doc.policy, duration_s=max(0.0, end - doc.created_at))


__all__ = ["ExperimentDoc", "METRICS", "arm_key", "new_experiment", "parse_doc", "stop", "verdict_of"]
