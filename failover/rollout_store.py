"""Rollout plans and experiments in the control store: read, and write with compare-and-set.

    rollout/<geo>              failover.rollout_plan.RolloutPlan (the newest rollout of the geography)
    rollout/<geo>/gate         the leader's newest gate evaluation of the running stage (status)
    experiments/<geo>/<id>     failover.experiments.ExperimentDoc

`regionctl rollout|experiments` write here (compare-and-set, journaled with the operator as actor);
the controller leader reads here every round and moves running rollouts (failover.rollout_driver,
fenced writes). Because the plan is the store's, a new leader picks a rollout up where the old one
left it.
"""
from __future__ import annotations

import json
from typing import Any, Callable

from contracts.store_keys import EXPERIMENTS_PREFIX, ROLLOUT_PREFIX
from failover.control_store import ControlStore
from failover.experiments import ExperimentDoc, parse_doc
from failover.journal import Action, Journal
from failover.rollout_plan import RolloutPlan, parse_plan
from regions.errors import InputError, TemporaryError


def rollout_key(geo: str) -> str:
    return f"{ROLLOUT_PREFIX}{geo}"


def gate_key(geo: str) -> str:
    """The leader's newest gate evaluation of the geography's running stage (what `rollout status` shows)."""
    return f"{ROLLOUT_PREFIX}{geo}/gate"


def read_gate(store: ControlStore, geo: str) -> dict[str, Any] | None:
    got = store.get(gate_key(geo))
    return json.loads(got.value) if got is not None else None


def experiment_key(geo: str, ident: str) -> str:
    return f"{EXPERIMENTS_PREFIX}{geo}/{ident}"


def read_plan(store: ControlStore, geo: str) -> tuple[RolloutPlan | None, int | None]:
    got = store.get(rollout_key(geo))
    if got is None:
        return None, None
    return parse_plan(got.value), got.version


def list_experiments(store: ControlStore, geo: str) -> list[ExperimentDoc]:
    docs = [parse_doc(v.value) for v in store.list(f"{EXPERIMENTS_PREFIX}{geo}/").values()]
    return sorted(docs, key=lambda d: d.created_at)


def running_experiment(store: ControlStore, geo: str) -> ExperimentDoc | None:
    return next((d for d in list_experiments(store, geo) if d.status == "running"), None)


def change_plan(store: ControlStore, journal: Journal, geo: str, change: Callable[[RolloutPlan | None], RolloutPlan],
                *, actor: str, action: Action, now: float, reason: Callable[[RolloutPlan], str]) -> RolloutPlan:
    """An operator's change (start, abort): read, change, compare-and-set, journal."""
    plan, version = read_plan(store, geo)
    new = change(plan)
    if not store.put(rollout_key(geo), new.to_json(), cas=version or 0):
        raise TemporaryError(f"the rollout of {geo} changed while this command ran; run it again", delay=0.5)
    journal.append(actor=actor, action=action, at=now, inputs=new.to_dict(), reason=reason(new))
    return new


def put_experiment(store: ControlStore, journal: Journal, doc: ExperimentDoc, *, create: bool, actor: str,
                   action: Action, now: float, reason: str) -> ExperimentDoc:
    key = experiment_key(doc.geo, doc.id)
    got = store.get(key)
    if create and got is not None:
        raise InputError("id", f"experiment {doc.id} already exists in {doc.geo}; choose another id")
    if not store.put(key, doc.to_json(), cas=0 if got is None else got.version):
        raise TemporaryError(f"experiment {doc.id} changed while this command ran; run it again", delay=0.5)
    journal.append(actor=actor, action=action, at=now, inputs=doc.to_dict(), reason=reason)
    return doc


__all__ = ["change_plan", "experiment_key", "gate_key", "read_gate", "list_experiments", "put_experiment", "read_plan", "rollout_key",
           "running_experiment"]
