"""What the leader writes after a round, decided as values (pure; the controller applies them).

    plan_take_over(...)   -> Plan   the control/leader document and the LEADER_CHANGE entry
    plan_effects(...)     -> Plan   from the round's snapshot, steering, safety problems and what the
                                    store held: health/<region> documents that changed, the
                                    refusal note (once per distinct set of problems), the
                                    overrides with expired ones dropped, failback progress, and
                                    the routing table with its fail-static / weight-change entries

A Plan is an ordered tuple of Writes plus the controller's memory after it (which health states
were written, which problems were last journaled). A Write is a fenced put (with compare-and-set
when `cas` is set); its `then` entries are journaled, and its log lines printed, only when the
write went through. A Plan's `entries` are journaled unconditionally after its writes.
`failover.controller.apply_plan` is the one function that turns a Plan into store writes.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Mapping

from contracts.store_keys import FAILBACK_KEY, HEALTH_PREFIX, LEADER_KEY, OVERRIDES_KEY, TABLE_KEY
from failover.health import RegionHealth
from failover.journal import Action
from failover.overrides import Overrides
from failover.settings import ControllerSettings
from failover.steering import Steering


def dump(value: Any) -> str:
    """The one text form of a control-store document (sorted keys, no spaces)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True)
class Entry:
    """A journal entry to append (actor, time and fence are the applier's)."""

    action: Action
    reason: str
    inputs: Mapping[str, Any]


@dataclass(frozen=True)
class Write:
    key: str
    value: str
    cas: int | None = None
    then: tuple[Entry, ...] = ()
    logs: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class Plan:
    writes: tuple[Write, ...] = ()
    entries: tuple[Entry, ...] = ()
    logs: tuple[str, ...] = ()
    health_marks: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """health/<region> key -> the (state, probed, outlier ejection) it records: remembered once written."""
    last_problems: tuple[str, ...] = ()


# -- journal inputs -------------------------------------------------------------------------------

def health_votes(health: Mapping[str, RegionHealth]) -> dict[str, Any]:
    """Journal inputs: what the probes said about each region."""
    return {r: {"state": h.state.value, "probed": h.probed.value, "failures": h.failures, "successes": h.successes,
                "last_error": h.last_probe.error if h.last_probe else "no probe",
                "outlier": {"ejected": h.outlier.ejected, "window_p99_ms": _rounded(h.outlier.last_p99_ms),
                            "bad_windows": h.outlier.bad_windows, "good_windows": h.outlier.good_windows}}
            for r, h in sorted(health.items())}


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def thresholds(settings: ControllerSettings) -> dict[str, Any]:
    return {"failures_down": settings.failures_down, "successes_up": settings.successes_up,
            "slo_error_rate": settings.slo_error_rate, "slo_p99_ms": settings.slo_p99_ms,
            "fail_static_threshold": settings.fail_static_threshold, "probe_timeout_s": settings.probe_timeout_s,
            "outlier": {"enabled": settings.outlier_enabled, "p99_ms": settings.outlier_p99_ms,
                        "window_probes": settings.outlier_window_probes, "bad_windows": settings.outlier_bad_windows,
                        "good_windows": settings.outlier_good_windows}}


def health_document(h: RegionHealth, settings: ControllerSettings) -> dict[str, Any]:
    probe = h.last_probe
    return {"region": h.region, "state": h.state.value, "probed": h.probed.value, "since": h.since,
            "reason": h.reason, "failures": h.failures, "successes": h.successes,
            "outlier": h.outlier.to_dict(settings),
            "last_probe": None if probe is None else {
                "ok": probe.ok, "at": probe.at, "latency_ms": round(probe.latency_ms, 3), "error": probe.error,
                "tier_served": probe.tier_served, "bundle_version": probe.bundle_version,
                "p99_ms": probe.p99_ms, "error_rate": probe.error_rate}}


def table_content(table: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """What a table says, without its version and time: two tables that route alike compare equal."""
    if table is None:
        return None
    return {k: v for k, v in table.items() if k not in ("version", "updated_at")}


# -- the plans ------------------------------------------------------------------------------------

def plan_take_over(*, holder: str, term: int, api_url: str, ttl_s: float, now: float) -> Plan:
    return Plan(
        writes=(Write(LEADER_KEY, dump({"holder": holder, "term": term, "api_url": api_url, "since": now})),),
        entries=(Entry(Action.LEADER_CHANGE, f"{holder} took the controller lease",
                       {"term": term, "api_url": api_url, "ttl_s": ttl_s}),),
        logs=(f"LEADER id={holder} term={term}",))


def _health_writes(health: Mapping[str, RegionHealth], written: Mapping[str, tuple[str, ...]],
                   settings: ControllerSettings) -> tuple[list[Write], dict[str, tuple[str, ...]]]:
    writes, marks = [], {}
    for region, h in sorted(health.items()):
        key = f"{HEALTH_PREFIX}{region}"
        mark = (h.state.value, h.probed.value, "outlier" if h.outlier.ejected else "")
        if written.get(key) != mark:
            writes.append(Write(key, dump(health_document(h, settings))))
            marks[key] = mark
    return writes, marks


def _expired_entries(stored_overrides: Overrides, now: float) -> tuple[Entry, ...]:
    entries = []
    for gone in stored_overrides.expired(now):
        subject = getattr(gone, "geography", None) or getattr(gone, "region", "")
        kind = "steer" if hasattr(gone, "geography") else "drain"
        entries.append(Entry(Action.OVERRIDE_CLEARED, f"{kind} override of {subject} expired",
                             {"kind": kind, "subject": subject, "expires_at": gone.expires_at,
                              "reason_given": gone.reason}))
    return tuple(entries)


def _table_entries(*, holder: str, old: Mapping[str, Any] | None, new: Mapping[str, Any], steering: Steering,
                   votes: Mapping[str, Any], limits: Mapping[str, Any]) -> tuple[tuple[Entry, ...], tuple[str, ...]]:
    entries: list[Entry] = []
    logs: list[str] = []
    was_static, is_static = bool((old or {}).get("fail_static")), bool(new["fail_static"])
    if is_static != was_static:
        why = "; ".join(steering.alerts) or ("probes answer again: steering resumed" if was_static else "")
        entries.append(Entry(Action.FAILSTATIC if is_static else Action.FAILSTATIC_CLEARED, why,
                             {"health": votes, "thresholds": limits, "version": new["version"]}))
    old_routes = {k: (old or {}).get(k) for k in ("geos", "max_tier")}
    if old_routes != {k: new[k] for k in ("geos", "max_tier")}:
        reasons = [f"{subject}: {why}" for subject, why in steering.reasons]
        entries.append(Entry(Action.WEIGHT_CHANGE, "; ".join(reasons) or "routing table written",
                             {"before": old_routes, "after": {"geos": new["geos"], "max_tier": new["max_tier"]},
                              "version": new["version"], "health": votes, "thresholds": limits}))
        logs.append(f"TABLE id={holder} version={new['version']} geos={dump(new['geos'])}")
    return tuple(entries), tuple(logs)


def plan_effects(*, holder: str, now: float, health: Mapping[str, RegionHealth], steering: Steering, problems: tuple[str, ...],
                 settings: ControllerSettings, table: Mapping[str, Any] | None, table_version: int,
                 overrides: Overrides, overrides_version: int, failback_raw: Mapping[str, Any],
                 took_over: bool, written_health: Mapping[str, tuple[str, ...]],
                 last_problems: tuple[str, ...]) -> Plan:
    """The leader's writes for one round (see the module docstring). `table`/`overrides`/
    `failback_raw` and the versions are what the round read from the store; `written_health` and
    `last_problems` are the controller's memory of what it already wrote and journaled."""
    votes, limits = health_votes(health), thresholds(settings)
    writes, marks = _health_writes(health, written_health, settings)
    if problems:
        if problems == last_problems:
            return Plan(writes=tuple(writes), health_marks=marks, last_problems=problems)
        note = Entry(Action.NOTE, "steering result refused by the safety checks; routing table kept",
                     {"problems": list(problems), "health": votes, "thresholds": limits})
        return Plan(writes=tuple(writes), entries=(note,), logs=(f"REFUSED id={holder} problems={'; '.join(problems)}",),
                    health_marks=marks, last_problems=problems)
    new_overrides = dump(steering.overrides.to_dict())
    if new_overrides != dump(overrides.to_dict()):
        writes.append(Write(OVERRIDES_KEY, new_overrides, cas=overrides_version,
                            then=_expired_entries(overrides, now)))
    failback = dump({r: p.to_dict() for r, p in sorted(steering.failback.items())})
    if failback != dump(dict(failback_raw)):
        writes.append(Write(FAILBACK_KEY, failback))
    new = steering.routing_table(version=int((table or {}).get("version") or 0) + 1, updated_at=now)
    if took_over or table_content(new) != table_content(table):
        entries, logs = _table_entries(holder=holder, old=table, new=new, steering=steering, votes=votes, limits=limits)
        writes.append(Write(TABLE_KEY, dump(new), cas=table_version, then=entries, logs=logs))
    return Plan(writes=tuple(writes), health_marks=marks)

