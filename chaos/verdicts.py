"""Game-day verdicts: is the experiment valid at all, and does each figure meet its bound. Pure.

INVALID comes first and is never a pass: the fault action failed (it raised, or no method action
reported when it injected), no fault was injected because the steady state before the method was
not met (the reason names the failing probes, and that the stack did not settle after the warm-up
when that wait gave up), the load never saw the fault (the killed region still answered), or
the load fell more than 2 % short of its rate (its figures describe another load). An invalid
game day's figures are still reported, with the reasons, and `regionctl gameday` exits non-zero.

Bounds: requirements are strict (RTO < 10 min, RPO < 5 min), our targets inclusive. A figure that
is "not met" (no window held in the run) fails a bound the run outlasted, and is "not measured"
against a longer one: a 60 s run that never recovered says nothing about a 10 min requirement.
The quality RTO has no product requirement; it is judged against our budget, topology.toml
`quality_rto_budget_s` (default 120 s), like a target: met within the budget passes, "not met" in
a run at least as long as the budget fails, and "not met" in a shorter run is "not measured".
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

from chaos.measurement import MET, NOT_MEASURED as MEASURE_NOT_MEASURED, QualityRto, Rpo, Rto
from regions.topology import Settings as StackSettings

PASS, FAIL, NOT_MEASURED, NOT_APPLICABLE, INVALID = "pass", "fail", "not measured", "not applicable", "invalid"
STILL_ANSWERING_GRACE_S = 2.0
"""Answers that the lost region sent within 2 s of the kill were in flight; later ones mean it
was not lost (a kill that missed, a stale process): the load did not observe the fault."""


@dataclass(frozen=True)
class Targets:
    requirement_rto_s: float = StackSettings.rto_budget_s
    """Product requirement: RTO < 10 min for a regional outage (topology.toml `rto_budget_s`)."""
    requirement_rpo_s: float = StackSettings.rpo_budget_s
    """Product requirement: RPO < 5 min for interaction logs (topology.toml `rpo_budget_s`)."""
    target_rto_s: float = 15.0
    """Our target: the controller steers away within seconds."""
    target_rpo_s: float = 2.0
    """Our target: replication lag of about a second."""
    target_empty_slates: int = 0
    """Promise: the homepage always returns something useful."""
    quality_rto_s: float = StackSettings.quality_rto_budget_s
    """Our budget: personalisation back within 2 min (topology.toml `quality_rto_budget_s`)."""

    @classmethod
    def of(cls, settings: StackSettings) -> Targets:
        """The bounds as the topology states them (`rto_budget_s`, `rpo_budget_s`, `quality_rto_budget_s`)."""
        return cls(requirement_rto_s=settings.rto_budget_s, requirement_rpo_s=settings.rpo_budget_s,
                   quality_rto_s=settings.quality_rto_budget_s)


@dataclass(frozen=True)
class Verdict:
    name: str
    kind: str
    """requirement | target | hypothesis"""
    limit: str
    value: float | None
    status: str
    """pass | fail | not measured | not applicable"""
    note: str = ""


def _bound(value: float | None, limit: float, *, strict: bool) -> str:
    if value is None:
        return NOT_MEASURED
    return PASS if (value < limit if strict else value <= limit) else FAIL


def _rto_status(status: str, seconds: float | None, covered_s: float, limit: float, *, strict: bool) -> str:
    if status == MET:
        return _bound(seconds, limit, strict=strict)
    if status == MEASURE_NOT_MEASURED:
        return NOT_MEASURED
    return FAIL if covered_s >= limit else NOT_MEASURED  # not met: failed a bound the run outlasted


def verdicts(*, rto: Rto, quality: QualityRto | None, rpo: Rpo | None, region_lost: bool, empty_slates: int,
             targets: Targets = Targets()) -> list[Verdict]:
    """Both RTOs, the RPO and empty slates against the requirements and our targets."""
    out = [
        Verdict("availability RTO", "requirement", f"< {targets.requirement_rto_s:g} s", rto.seconds,
                _rto_status(rto.status, rto.seconds, rto.covered_s, targets.requirement_rto_s, strict=True), rto.status),
        Verdict("availability RTO", "target", f"<= {targets.target_rto_s:g} s", rto.seconds,
                _rto_status(rto.status, rto.seconds, rto.covered_s, targets.target_rto_s, strict=False), rto.status),
    ]
    if quality is not None:  # our budget, not a product requirement: a target
        out.append(Verdict("quality RTO", "target", f"<= {targets.quality_rto_s:g} s", quality.seconds,
                           _rto_status(quality.status, quality.seconds, quality.covered_s, targets.quality_rto_s, strict=False),
                           quality.reason))
    if not region_lost:
        out += [Verdict("RPO", kind, limit, None, NOT_APPLICABLE, "no region lost")
                for kind, limit in (("requirement", f"< {targets.requirement_rpo_s:g} s"), ("target", f"<= {targets.target_rpo_s:g} s"))]
    else:
        seconds = rpo.seconds if rpo is not None and rpo.status != MEASURE_NOT_MEASURED else None
        note = "not measured: no acknowledged event" if seconds is None else f"{rpo.lost} of {rpo.acknowledged} acknowledged events lost"  # type: ignore[union-attr]
        out += [Verdict("RPO", "requirement", f"< {targets.requirement_rpo_s:g} s", seconds,
                        _bound(seconds, targets.requirement_rpo_s, strict=True), note),
                Verdict("RPO", "target", f"<= {targets.target_rpo_s:g} s", seconds,
                        _bound(seconds, targets.target_rpo_s, strict=False), note)]
    out.append(Verdict("empty homepage slates", "target", f"<= {targets.target_empty_slates}", float(empty_slates),
                       _bound(float(empty_slates), targets.target_empty_slates, strict=False)))
    return out


def hypothesis_verdicts(hypothesis: Mapping[str, Any] | None) -> list[Verdict]:
    """The steady-state hypothesis before the fault and after it (with the fault still in place)
    as verdicts; `hypothesis` is chaos.report.hypothesis_of(journal). None: no experiment."""
    if hypothesis is None:
        return []
    out = []
    for when in ("before", "after"):
        met = hypothesis.get(when)
        status = NOT_MEASURED if met is None else (PASS if met else FAIL)
        out.append(Verdict(f"steady state {when}", "hypothesis", "met", None if met is None else float(bool(met)), status))
    return out


FIGURE_PROBES = ("drift_detected",)
"""Method probes that measure a figure of their own (chaos.expectations.drift_detected: time to
detection); a game day that runs one is judged on it."""


def figure_verdicts(method_runs: Sequence[Mapping[str, Any]]) -> list[Verdict]:
    """A target verdict per FIGURE_PROBES run of the method: pass when its `figure` was measured
    within its limit, fail when not (or when the probe itself failed)."""
    out = []
    for run in method_runs:
        activity = run.get("activity", {})
        if activity.get("type") != "probe" or activity.get("provider", {}).get("func") not in FIGURE_PROBES:
            continue
        output = run.get("output") if run.get("status") == "succeeded" else None
        figure = output.get("figure") if isinstance(output, Mapping) else None
        if not isinstance(figure, Mapping):
            error = (run.get("exception") or ["no figure in its output"])[-1].strip()
            out.append(Verdict(str(activity.get("name")), "target", "measured", None, FAIL, f"probe failed: {error}"))
            continue
        value, limit = figure.get("value_s"), float(figure["limit_s"])
        out.append(Verdict(str(figure.get("name")), "target", f"<= {limit:g} s", value,
                           _bound(value, limit, strict=False) if value is not None else FAIL,
                           str(output.get("verdict", ""))))
    return out


def still_answering(records: Iterable[Mapping[str, Any]], *, region: str, fault_at: float, until: float | None) -> int:
    """Reads answered by `region` that completed from STILL_ANSWERING_GRACE_S after the fault to `until`."""
    return sum(1 for r in records if r.get("kind") != "events" and r.get("ok") and r.get("region") == region
               and float(r.get("done", r.get("t", 0.0))) >= fault_at + STILL_ANSWERING_GRACE_S
               and (until is None or float(r.get("done", r.get("t", 0.0))) < until))


def invalid_reasons(*, method_runs: Sequence[Mapping[str, Any]], fault_at: float | None, load: Mapping[str, Any] | None,
                    load_error: str | None, lost_region: str | None, lost_region_answers: int,
                    hypothesis: Mapping[str, Any] | None = None, unsettled: str | None = None) -> list[str]:
    """Why the game day is invalid ([] when it is valid); see the module docstring. `hypothesis`:
    chaos.report.hypothesis_of the journal; `unsettled`: what the settle wait saw when it gave up."""
    reasons = []
    if hypothesis is not None and hypothesis.get("before") is False:
        failing = [v.removeprefix("before: ") for v in hypothesis.get("violations", []) if v.startswith("before: ")]
        reasons.append("the steady state before the method was not met, so no fault was injected"
                       + (f" ({'; '.join(failing)})" if failing else "")
                       + (f"; {unsettled}" if unsettled else ""))
    for run in method_runs:
        activity = run.get("activity", {})
        if activity.get("type") == "action" and run.get("status") != "succeeded":
            error = (run.get("exception") or ["?"])[-1].strip()
            reasons.append(f"fault action {activity.get('name')!r} {run.get('status')}: {error}")
    if not any(r.get("activity", {}).get("type") == "action" for r in method_runs):
        reasons.append("no fault action ran")
    elif fault_at is None:
        reasons.append("no fault action reported when it injected the fault (`at`)")
    if load_error:
        reasons.append(f"the load failed: {load_error}")
    if load is None:
        reasons.append("the load reported no figures")
    else:
        reasons += list(load.get("invalid_reasons") or [])
    if lost_region is not None and lost_region_answers:
        reasons.append(f"the load did not observe the fault: {lost_region} still answered {lost_region_answers} reads "
                       f"more than {STILL_ANSWERING_GRACE_S:g} s after it was killed")
    return reasons


def overall(found: Sequence[Verdict], *, invalid: Sequence[str] = ()) -> str:
    """invalid (never pass), else fail if a bound failed, incomplete if one was not measured, else pass."""
    if invalid:
        return INVALID
    statuses = {v.status for v in found}
    if FAIL in statuses:
        return FAIL
    return "incomplete" if NOT_MEASURED in statuses else PASS


__all__ = ["FAIL", "INVALID", "NOT_APPLICABLE", "NOT_MEASURED", "PASS", "Targets", "Verdict", "figure_verdicts", "hypothesis_verdicts",
           "invalid_reasons", "overall", "still_answering", "verdicts"]
