"""A game day's report carries the residency audit, and a finding fails the game day."""
from __future__ import annotations

from chaos.report import FAIL, PASS
from chaos.residency_verdict import with_residency

REPORT = {"verdict": PASS, "verdicts": [{"name": "RTO", "kind": "requirement", "limit": "< 600 s", "value": 0.0, "status": PASS}]}


def test_a_clean_audit_keeps_the_verdict_and_a_finding_fails_it() -> None:
    clean = with_residency(REPORT, {"clean": True, "total_findings": 0, "findings": []})
    assert clean["verdict"] == PASS and clean["residency"]["clean"] is True
    assert clean["verdicts"][-1]["name"] == "residency audit" and clean["verdicts"][-1]["status"] == PASS
    dirty = with_residency(REPORT, {"clean": False, "total_findings": 2, "findings": [{"user_id": "eu-1"}]})
    assert dirty["verdict"] == FAIL and dirty["verdicts"][-1]["value"] == 2.0
    broken = with_residency(REPORT, {"error": "residency audit failed: connection refused"})
    assert broken["verdict"] == FAIL
