"""The serving plan of one geography: what its cells serve beside the store's current bundle.

The controller leader derives it from the rollout plan and the running experiment it finds in the
control store (failover.rollout_driver) and writes it next to the bundles, in the geography's
artifact store (`ArtifactStore.put_serving_plan`); every cell of the geography reads it on its
bundle poll (serving.bundle_holder). One render, one parse, here:

    {"revision": 7, "rollout_id": "us:v2:1764640000",
     "candidate": "v2",            the bundle loaded beside the serving one (blue-green), or null
     "canary_percent": 10.0,       users in contracts.bucketing.in_share(user, rollout_id, %) get it
     "shadow_percent": 0.0,        share of homepage requests also scored by the candidate, off path
     "experiment": {"id": "e1", "arms": [{"name": "control", "weight": 50},
                                         {"name": "weak", "weight": 50, "bundle_version": "v0",
                                          "rules": {"max_per_category": 2}, "candidate_count": 50}]}}

An arm may change the bundle version, the re-rank rules (keys of serving.reranking.RerankRules:
max_per_category, max_per_brand, pins, category_boosts, brand_boosts) and the candidate count (the
ANN candidates retrieved). No personal data: ids of bundles and experiments only.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Mapping

from contracts.bucketing import check_percent
from regions.errors import InputError

RULE_KEYS = ("max_per_category", "max_per_brand", "pins", "category_boosts", "brand_boosts")
MAX_CANDIDATE_COUNT = 2000
MAX_ARMS = 8


@dataclass(frozen=True)
class Arm:
    name: str
    weight: float = 1.0
    bundle_version: str | None = None
    rules: Mapping[str, Any] = field(default_factory=dict)
    candidate_count: int | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "weight": self.weight}
        if self.bundle_version:
            out["bundle_version"] = self.bundle_version
        if self.rules:
            out["rules"] = dict(self.rules)
        if self.candidate_count is not None:
            out["candidate_count"] = self.candidate_count
        return out


@dataclass(frozen=True)
class Experiment:
    id: str
    arms: tuple[Arm, ...]

    def weights(self) -> tuple[tuple[str, float], ...]:
        return tuple((a.name, a.weight) for a in self.arms)

    def arm(self, name: str) -> Arm:
        return next(a for a in self.arms if a.name == name)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "arms": [a.to_dict() for a in self.arms]}


@dataclass(frozen=True)
class ServingPlan:
    revision: int = 0
    rollout_id: str = ""
    candidate: str | None = None
    canary_percent: float = 0.0
    shadow_percent: float = 0.0
    experiment: Experiment | None = None

    def versions(self) -> tuple[str, ...]:
        """Bundles a cell must hold beside the serving one (candidate, arms' versions)."""
        wanted = [self.candidate] if self.candidate else []
        if self.experiment is not None:
            wanted += [a.bundle_version for a in self.experiment.arms if a.bundle_version]
        return tuple(dict.fromkeys(v for v in wanted if v))

    def to_json(self) -> str:
        return json.dumps({
            "revision": self.revision, "rollout_id": self.rollout_id, "candidate": self.candidate,
            "canary_percent": self.canary_percent, "shadow_percent": self.shadow_percent,
            "experiment": self.experiment.to_dict() if self.experiment else None,
        }, sort_keys=True)


def _name(value: Any, field_name: str) -> str:
    if not isinstance(value, str) or not value or len(value) > 64 or not all(c.isalnum() or c in "-_.:" for c in value):
        raise InputError(field_name, f"{value!r} is not allowed; use 1-64 letters, digits, '-', '_', '.', ':'")
    return value


def parse_arm(raw: Any, field_name: str = "arm") -> Arm:
    if not isinstance(raw, Mapping):
        raise InputError(field_name, "must be an object with name, weight, and optional bundle_version, rules, candidate_count")
    unknown = set(raw) - {"name", "weight", "bundle_version", "rules", "candidate_count"}
    if unknown:
        raise InputError(f"{field_name}.{sorted(unknown)[0]}", "unknown; allowed: name, weight, bundle_version, rules, candidate_count")
    weight = raw.get("weight", 1.0)
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0 < weight <= 100:
        raise InputError(f"{field_name}.weight", f"{weight!r} is not allowed; use a number in (0, 100]")
    version = raw.get("bundle_version")
    rules = raw.get("rules") or {}
    if not isinstance(rules, Mapping) or set(rules) - set(RULE_KEYS):
        raise InputError(f"{field_name}.rules", f"must be an object with keys among {', '.join(RULE_KEYS)}")
    count = raw.get("candidate_count")
    if count is not None and (isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_CANDIDATE_COUNT):
        raise InputError(f"{field_name}.candidate_count", f"{count!r} is not allowed; use an integer in 1..{MAX_CANDIDATE_COUNT}")
    return Arm(name=_name(raw.get("name"), f"{field_name}.name"), weight=float(weight),
               bundle_version=_name(version, f"{field_name}.bundle_version") if version else None,
               rules=dict(rules), candidate_count=count)


def parse_experiment(raw: Any, field_name: str = "experiment") -> Experiment:
    if not isinstance(raw, Mapping):
        raise InputError(field_name, "must be an object with id and arms")
    arms_raw = raw.get("arms")
    if not isinstance(arms_raw, list) or not 2 <= len(arms_raw) <= MAX_ARMS:
        raise InputError(f"{field_name}.arms", f"must be a list of 2..{MAX_ARMS} arms")
    arms = tuple(parse_arm(a, f"{field_name}.arms[{n}]") for n, a in enumerate(arms_raw))
    names = [a.name for a in arms]
    if len(set(names)) != len(names):
        raise InputError(f"{field_name}.arms", f"arm names must be distinct, got {names}")
    return Experiment(id=_name(raw.get("id"), f"{field_name}.id"), arms=arms)


def parse_serving_plan(text: str | bytes | None) -> ServingPlan:
    """The plan of a stored document; None/empty is the empty plan (serve the current bundle only)."""
    if not text:
        return ServingPlan()
    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise InputError("serving_plan", f"is not JSON: {exc}") from exc
    if not isinstance(raw, Mapping):
        raise InputError("serving_plan", "must be a JSON object")
    revision = raw.get("revision", 0)
    if isinstance(revision, bool) or not isinstance(revision, int) or revision < 0:
        raise InputError("serving_plan.revision", f"{revision!r} is not an integer >= 0")
    candidate = raw.get("candidate")
    return ServingPlan(
        revision=revision, rollout_id=str(raw.get("rollout_id") or ""),
        candidate=_name(candidate, "serving_plan.candidate") if candidate else None,
        canary_percent=check_percent(raw.get("canary_percent", 0.0), "serving_plan.canary_percent"),
        shadow_percent=check_percent(raw.get("shadow_percent", 0.0), "serving_plan.shadow_percent"),
        experiment=parse_experiment(raw["experiment"], "serving_plan.experiment") if raw.get("experiment") else None,
    )


__all__ = ["Arm", "Experiment", "MAX_ARMS", "RULE_KEYS", "ServingPlan", "parse_arm", "parse_experiment", "parse_serving_plan"]
