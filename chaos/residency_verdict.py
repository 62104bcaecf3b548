"""Every game day ends with the residency audit (chaos.probes.residency_audit); its result is a
requirement verdict of the report: 0 findings passes, any finding or an incomplete audit fails."""
from __future__ import annotations

from dataclasses import asdict
from typing import Any, Mapping

from chaos.report import FAIL, PASS, Verdict, overall


def residency_verdict(audit: Mapping[str, Any]) -> Verdict:
    """Pure. The verdict of an audit document (`AuditReport.to_json()`, or {"error": ...})."""
    if "error" in audit:
        return Verdict("residency audit", "requirement", "0 findings", None, FAIL)
    return Verdict("residency audit", "requirement", "0 findings", float(audit["total_findings"]),
                   PASS if audit["clean"] else FAIL)


def with_residency(report: dict[str, Any], audit: Mapping[str, Any]) -> dict[str, Any]:
    """The report with `residency` (the audit) and its verdict added; the overall verdict redone."""
    verdicts = [*report["verdicts"], asdict(residency_verdict(audit))]
    return {**report, "residency": dict(audit), "verdicts": verdicts, "verdict": overall([Verdict(**v) for v in verdicts])}


__all__ = ["residency_verdict", "with_residency"]
