"""RTOs, degradation, the edge's retries and RPO on synthetic load records, the failing cases included."""
from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from chaos.measurement import (
    MET, NOT_MEASURED, NOT_MET, AckedEvent, Request, compute_quality_rto, compute_rpo, compute_rto, degradation,
    edge_retries, to_requests, window_verdict,
)

FAULT = 1000.0


def _load(start: float, end: float, *, rate: float = 10, bad: tuple[float, float] | None = None,
          slow: tuple[float, float] | None = None, degraded: tuple[float, float] | None = None, geo: str = "us",
          latency_ms: float = 20.0) -> list[Request]:
    """Homepages scheduled at `rate` from FAULT + start to FAULT + end (seconds relative to the fault)."""
    out = []
    for i in range(int((end - start) * rate)):
        t = FAULT + start + i / rate
        failing = bad is not None and bad[0] <= t - FAULT < bad[1]
        slow_now = slow is not None and slow[0] <= t - FAULT < slow[1]
        low = degraded is not None and degraded[0] <= t - FAULT < degraded[1]
        lat = 500.0 if slow_now else latency_ms
        out.append(Request(t=t, done=t + lat / 1000.0, ok=not failing, latency_ms=lat, geo=geo,
                           tier=None if failing else ("popularity" if low else "full"),
                           personalised=not failing and not low, first_ok=not failing, retries=1 if failing else 0))
    return out


def test_no_impact_means_rto_zero() -> None:
    rto = compute_rto(_load(-20, 60), fault_at=FAULT)
    assert rto.status == MET and rto.seconds == 0.0


def test_rto_is_the_start_of_the_first_good_window_after_failures() -> None:
    rto = compute_rto(_load(-20, 80, bad=(0, 4)), fault_at=FAULT)
    assert rto.status == MET and rto.seconds == 4.0


def test_a_window_that_never_reaches_999_is_not_met() -> None:
    reqs = _load(-20, 80)
    reqs = [Request(**{**r.__dict__, "ok": False}) if i % 100 == 7 and r.t >= FAULT else r for i, r in enumerate(reqs)]
    rto = compute_rto(reqs, fault_at=FAULT)
    assert rto.status == NOT_MET and rto.seconds is None and not rto.measured
    assert "99.00%" in rto.reason


def test_requests_in_flight_at_the_fault_count_after_it() -> None:
    """Sent before the fault, answered (failed, after the 1 s timeout) after it: in bucket 0."""
    reqs = _load(-20, 60)
    late = [Request(t=FAULT - 0.5, done=FAULT + 0.5, ok=False, latency_ms=1000.0, geo="us")]
    assert compute_rto(reqs + late, fault_at=FAULT).seconds == 1.0


def test_slow_requests_break_the_slo_too() -> None:
    rto = compute_rto(_load(-20, 80, slow=(0, 10)), fault_at=FAULT)
    assert rto.seconds is not None and rto.seconds >= 10.0


def test_an_empty_slate_breaks_the_slo() -> None:
    reqs = _load(-20, 80)
    reqs[250] = Request(t=reqs[250].t, done=reqs[250].done, ok=False, latency_ms=5, empty=True, geo="us")
    assert not window_verdict(reqs, start=FAULT).holds
    rto = compute_rto(reqs, fault_at=FAULT)
    assert rto.seconds is not None and rto.seconds >= 5.0


def test_a_silent_second_is_no_recovery() -> None:
    reqs = [r for r in _load(-20, 80) if not FAULT + 10 <= r.done < FAULT + 11]
    assert compute_rto(reqs, fault_at=FAULT).seconds == 11.0


def test_rto_not_measured_when_the_load_is_too_short() -> None:
    rto = compute_rto(_load(-20, 25), fault_at=FAULT)
    assert rto.status == NOT_MEASURED and rto.seconds is None
    assert "run it longer" in rto.reason


def test_quality_rto_waits_for_personalisation_to_come_back() -> None:
    reqs = _load(-20, 90, degraded=(0, 12))
    q = compute_quality_rto(reqs, fault_at=FAULT, geographies=["us"])
    assert q.status == MET and q.baseline_share == 1.0
    assert 8.0 <= q.seconds <= 12.0  # back within 5 points once at most 1.5 s of the 30 s window is degraded
    assert compute_rto(reqs, fault_at=FAULT).seconds == 0.0, "degraded answers are still available answers"


def test_quality_rto_not_met_when_the_geography_stays_degraded() -> None:
    reqs = _load(-20, 70, degraded=(0, 70)) + _load(-20, 70, geo="eu")
    q = compute_quality_rto(reqs, fault_at=FAULT, geographies=["us"])
    assert q.status == NOT_MET and q.seconds is None
    assert compute_quality_rto(reqs, fault_at=FAULT, geographies=["eu"]).status == MET


def test_quality_rto_without_a_baseline_is_not_measured() -> None:
    q = compute_quality_rto(_load(0, 60), fault_at=FAULT, geographies=["us"])
    assert q.status == NOT_MEASURED


def test_degradation_counts_tier_seconds_and_degraded_requests() -> None:
    reqs = _load(-10, 20, degraded=(0, 5))
    d = degradation(reqs, fault_at=FAULT, geographies=["us"])
    assert d.tier_seconds["popularity"] == pytest.approx(5.0, abs=0.2)
    assert d.tier_seconds["full"] == pytest.approx(15.0, abs=0.3)
    assert d.degraded_requests == 50
    assert d.degraded_request_seconds == pytest.approx(5.0, abs=0.2)


def test_first_attempt_failures_and_retries() -> None:
    reqs = _load(-10, 20, bad=(0, 2))
    got = edge_retries(reqs, start=FAULT)
    assert got.reads == 200 and got.first_attempt_failures == 20 and got.retried == 20
    assert got.first_attempt_failure_rate == pytest.approx(0.1)
    assert edge_retries([], start=FAULT).first_attempt_failure_rate is None


def test_records_become_requests() -> None:
    rec = {"t": 1.0, "done": 1.05, "ok": True, "latency_ms": 50.0, "kind": "homepage", "geo": "us", "tier": "full",
           "personalised": True, "first_ok": False, "retries": 1, "empty": False}
    (r,) = to_requests([rec])
    assert (r.done, r.personalised, r.first_ok, r.retries) == (1.05, True, False, 1)


def _acked(n: int, region: str = "us-east") -> list[AckedEvent]:
    return [AckedEvent(event_id=f"e{i}", acked_at=FAULT - n + i, region=region) for i in range(n)]


def test_rpo_zero_when_everything_survived() -> None:
    rpo = compute_rpo(_acked(10), lost_region="us-east", fault_at=FAULT, durable_ids={f"e{i}" for i in range(10)})
    assert (rpo.status, rpo.seconds, rpo.lost, rpo.acknowledged) == ("measured", 0.0, 0, 10)


def test_rpo_names_the_lost_tail() -> None:
    rpo = compute_rpo(_acked(10), lost_region="us-east", fault_at=FAULT, durable_ids={f"e{i}" for i in range(7)})
    assert rpo.lost == 3 and list(rpo.lost_ids) == ["e7", "e8", "e9"]
    assert rpo.seconds == pytest.approx(10 - 6)


def test_no_acknowledged_event_is_not_measured() -> None:
    rpo = compute_rpo([], lost_region="us-east", fault_at=FAULT, durable_ids=set())
    assert rpo.status == NOT_MEASURED and rpo.seconds is None and rpo.acknowledged == 0


def test_rpo_ignores_other_regions_and_events_after_the_fault() -> None:
    acked = [AckedEvent(event_id="a", acked_at=FAULT - 1, region="us-west"), AckedEvent(event_id="b", acked_at=FAULT + 1, region="us-east")]
    assert compute_rpo(acked, lost_region="us-east", fault_at=FAULT, durable_ids=set()).status == NOT_MEASURED


@given(st.lists(st.booleans(), min_size=1, max_size=50))
def test_rpo_lost_count_matches_missing(durable_flags: list[bool]) -> None:
    acked = _acked(len(durable_flags))
    durable = {f"e{i}" for i, d in enumerate(durable_flags) if d}
    rpo = compute_rpo(acked, lost_region="us-east", fault_at=FAULT, durable_ids=durable)
    assert rpo.lost == len(durable_flags) - len(durable)
    assert (rpo.seconds == 0.0) == (rpo.lost == 0)
    assert rpo.seconds is not None and rpo.seconds >= 0.0
