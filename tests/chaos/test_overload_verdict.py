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


def test_the_report_judges_the_whole_run_and_shows_the_prediction() -> None:
    """An overload game day whose whole run broke the p99 fails, even when a recovery window held;
    its report puts the measured mix beside the capacity model's prediction."""
    from chaos.measurement import Rto
    from chaos.overload import overload_section
    from chaos.report import build_report, render_markdown
    from regions.topology import load_topology

    experiment = {"method": [{"type": "action", "provider": {"func": "limit_cell_cpu",
                                                             "arguments": {"region": "us-west", "cores": 0.5}}}]}
    rto = Rto(status="met", seconds=0.0, recovered_at=100.0, reason="test")
    for latencies, verdict in (([20.0] * 2000, "pass"), ([20.0] * 1900 + [900.0] * 100, "fail")):
        records = _records(latencies)
        section = overload_section(records, experiment=experiment, topology=load_topology(), lost="us-east",
                                   load_rate=200.0)
        report = build_report(experiment="overload-n1", title="t", records=records, fault_at=100.0, rto=rto,
                              rpo=None, status="completed", overload=section)
        assert report["verdict"] == verdict
        assert {v["name"] for v in report["verdicts"]} >= {"whole-run p99", "whole-run success"}
        prediction = report["overload"]["prediction"]
        assert prediction["survivor"] == "us-west" and prediction["survivor_qps"] == 140.0
        md = render_markdown(report)
        assert "overload, whole run" in md and "the mix that fits" in md and "us-west's homepages segment 100%" in md
