"""Drill documents: the plan as JSON, and the report of a drill as JSON and Markdown.

Pure rendering (`plan_document`, `report_markdown`) plus one writer (`write_report`) that puts
`<id>.json` and `<id>.md` under the drills directory (var/drills/ in the local stack).
The report's two measured numbers:

  time to evacuate   from the start of the first shift until the routing table gives the region
                     0 % (and, when the edge was reachable, until the edge's /readyz reports that
                     table version: the moment traffic really stops going there)
  data at risk       the replication lag of the region's interaction log to each peer, in seconds
                     and events, as the cells reported it at the moment of the drain
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

from failover.drill_plan import DrillPlan


def plan_document(plan: DrillPlan) -> dict[str, Any]:
    """JSON-ready form of a plan: the pre-check verdicts and the steps."""
    return {
        "region": plan.region, "geography": plan.geography, "ok": plan.ok,
        "checks": [{"name": c.name, "passed": c.passed, "message": c.message} for c in plan.checks],
        "steps": [{"kind": s.kind.value, "share_percent": s.share_percent, "weights": dict(s.weights),
                   "hold_s": s.hold_s, "gates": list(s.gates), "description": s.description} for s in plan.steps],
    }


def _seconds(value: Any) -> str:
    return "not measured" if value is None else f"{float(value):.2f} s"


def report_markdown(report: Mapping[str, Any]) -> str:
    """The report as Markdown, for people (the JSON is for tools)."""
    m = report.get("measurements", {})
    lines = [
        f"# Drill {report['id']}: evacuate {report['region']}",
        "",
        f"- outcome: **{report['status']}**" + (f" ({report['error']})" if report.get("error") else ""),
        f"- requested by: {report.get('actor', '?')}; reason: {report.get('reason', '')}",
        f"- started at: {report.get('started_at')}; finished at: {report.get('finished_at')}",
        "",
        "## Measured",
        "",
        "| what | value |",
        "| --- | --- |",
        f"| time to evacuate (routing table gives {report['region']} 0 %) | {_seconds(m.get('evacuate_table_s'))} |",
        f"| routing table version with 0 % | {m.get('evacuate_table_version', 'n/a')} |",
        f"| time until the edge uses that table | {_seconds(m.get('evacuate_edge_s'))} |",
        f"| time to full failback after undrain | {_seconds(m.get('failback_s'))} |",
    ]
    if m.get("edge_note"):
        lines.append(f"| edge | {m['edge_note']} |")
    lines += ["", "## Data at risk at the moment of the drain", ""]
    risk = m.get("data_at_risk") or []
    if risk:
        lines += ["| from | to | lag (s) | lag (events) |", "| --- | --- | --- | --- |"]
        lines += [f"| {r['source']} | {r['destination']} | {r['lag_s']:.3f} | {r['lag_events']} |" for r in risk]
    else:
        lines.append("No replication lag was reported by the cells (no drain happened, or no cell reported it).")
    lines += ["", "## Pre-checks", ""]
    for check in report.get("plan", {}).get("checks", []):
        lines.append(f"- {'PASS' if check['passed'] else 'FAIL'} {check['name']}: {check['message']}")
    lines += ["", "## Progress", "", "| t (s) | step | message |", "| --- | --- | --- |"]
    for event in report.get("events", []):
        lines.append(f"| {event['elapsed_s']:.2f} | {event['step']} | {event['message']} |")
    return "\n".join(lines) + "\n"


def write_report(report: Mapping[str, Any], directory: Path) -> tuple[Path, Path]:
    """Write `<id>.json` and `<id>.md` under `directory`; returns both paths."""
    directory.mkdir(parents=True, exist_ok=True)
    json_path = directory / f"{report['id']}.json"
    md_path = directory / f"{report['id']}.md"
    json_path.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    md_path.write_text(report_markdown(report))
    return json_path, md_path
