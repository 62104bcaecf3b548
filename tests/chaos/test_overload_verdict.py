"""chaos.overload on synthetic load records: the whole-run verdict passes and fails as it must."""
from __future__ import annotations

from chaos.overload import held, overload_verdicts, shares, whole_run


def _records(latencies: list[float], *, ok_every: int = 0, tier: str = "segment") -> list[dict]:
    out = []
    for n, lat in enumerate(latencies):
        ok = not (ok_every and n % ok_every == 0)
        out.append({"t": 100.0 + n * 0.01, "done": 100.0 + n * 0.01 + lat / 1000, "latency_ms": lat, "kind": "homepage",
                    "ok": ok, "tier": tier if ok else None, "region": "us-west", "slate_len": 8 if ok else 0})
    return out


def test_a_run_within_the_slo_holds() -> None:
    summary = whole_run(_records([20.0] * 2000), region="us-west")
    assert held(summary) and summary["requests"] == 2000
    assert summary["homepage_mix"] == {"segment": 1.0} and summary["region_mix"] == {"segment": 1.0}


def test_a_slow_tail_fails_the_p99() -> None:
    summary = whole_run(_records([20.0] * 980 + [400.0] * 20))
    verdicts = {v.name: v.status for v in overload_verdicts(summary)}
    assert verdicts == {"whole-run p99": "fail", "whole-run success": "pass"} and not held(summary)


def test_one_failure_in_500_fails_the_success_target() -> None:
    summary = whole_run(_records([20.0] * 1000, ok_every=500))   # 2 of 1000 failed: 99.8 %
    verdicts = {v.name: v.status for v in overload_verdicts(summary)}
    assert verdicts == {"whole-run p99": "pass", "whole-run success": "fail"}


def test_no_records_is_not_measured() -> None:
    assert {v.status for v in overload_verdicts(whole_run([]))} == {"not measured"}
    assert not held(whole_run([]))


def test_shares() -> None:
    assert shares(["full", "segment", "segment", "full"]) == {"full": 0.5, "segment": 0.5}
    assert shares([]) == {}
