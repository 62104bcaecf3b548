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


def _journal(used_after: float, *, restarted: bool = False) -> dict:
    limit = {"activity": {"provider": {"func": "limit_cell_cpu"}}, "status": "succeeded",
             "output": {"at": 100.0, "region": "us-west", "cores": 0.5, "cpu_s": {"11": 5.0}}}
    restore = {"activity": {"provider": {"func": "restore_cell_cpu"}}, "status": "succeeded",
               "output": {"at": 140.0, "region": "us-west", "cpu_s": {"12" if restarted else "11": used_after}}}
    return {"run": [limit], "rollbacks": [restore]}


def test_the_survivors_cpu_is_what_it_used_while_limited() -> None:
    from chaos.overload import starved, survivor_cpu

    cpu = survivor_cpu(*_journal(19.0).values())
    assert cpu == {"region": "us-west", "quota_cores": 0.5, "received_cores": 0.35, "seconds": 40.0, "share": 0.7}
    assert starved(cpu) is None                                   # 70 % of its half core: it got its size
    hungry = survivor_cpu(*_journal(15.0).values())               # 10 s of CPU in 40 s: 0.25 of 0.5 cores
    assert hungry is not None and hungry["received_cores"] == 0.25
    reason = starved(hungry)
    assert reason is not None and "used 0.25 of its 0.5 core(s)" in reason and "under 60%" in reason
    assert survivor_cpu(*_journal(15.0, restarted=True).values()) is None   # no process in common
    assert survivor_cpu([], []) is None and starved(None) is None


def test_a_starved_survivor_makes_the_overload_game_day_invalid() -> None:
    """The same whole run within the SLO: valid and passing when the survivor got its size; invalid
    (not passed) when it used a quarter core of its half; the report shows the CPU either way."""
    from chaos.measurement import Rto
    from chaos.overload import overload_section
    from chaos.report import build_report, render_markdown
    from regions.topology import load_topology

    experiment = {"method": [{"type": "action", "provider": {"func": "limit_cell_cpu",
                                                             "arguments": {"region": "us-west", "cores": 0.5}}}]}
    rto = Rto(status="met", seconds=0.0, recovered_at=100.0, reason="test")
    records = _records([20.0] * 2000)
    for used_after, verdict in ((19.0, "pass"), (15.0, "invalid")):
        section = overload_section(records, experiment=experiment, topology=load_topology(), lost="us-east",
                                   load_rate=200.0, journal=_journal(used_after))
        report = build_report(experiment="overload-n1", title="t", records=records, fault_at=100.0, rto=rto,
                              rpo=None, status="completed", overload=section, invalid=section["invalid"])
        assert report["verdict"] == verdict, report["invalid_reasons"]
        md = render_markdown(report)
        assert f"survivor CPU: us-west used {(used_after - 5.0) / 40:.2f} of its 0.5 core(s) over the 40 s" in md
        assert ("INVALID" in md) == (verdict == "invalid")
    section = overload_section(records, experiment=experiment, topology=load_topology(), lost="us-east", load_rate=200.0)
    assert section["survivor_cpu"] is None and section["invalid"] == []
    assert "survivor CPU: not known" in render_markdown(build_report(
        experiment="overload-n1", title="t", records=records, fault_at=100.0, rto=rto, rpo=None, status="completed",
        overload=section))
