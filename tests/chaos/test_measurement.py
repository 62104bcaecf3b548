"""RTO/RPO arithmetic on hand-made load records."""
from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from chaos.measurement import AckedEvent, Request, compute_rpo, compute_rto, window_verdict


def _load(start: float, end: float, *, rate: float = 10, bad: tuple[float, float] | None = None, slow: tuple[float, float] | None = None) -> list[Request]:
    out = []
    n = int((end - start) * rate)
    for i in range(n):
        t = start + i / rate
        failing = bad is not None and bad[0] <= t < bad[1]
        slow_now = slow is not None and slow[0] <= t < slow[1]
        out.append(Request(t=t, ok=not failing, latency_ms=500.0 if slow_now else 20.0, slate_len=8))
    return out


def test_no_impact_means_rto_zero() -> None:
    rto = compute_rto(_load(0, 100), fault_at=10)
    assert rto.measured and rto.seconds == 0.0


def test_rto_is_start_of_first_good_window_after_failures() -> None:
    rto = compute_rto(_load(0, 100, bad=(10, 14)), fault_at=10)
    assert rto.measured
    assert rto.seconds == pytest.approx(4.0, abs=0.26)


def test_slow_requests_break_the_slo_too() -> None:
    rto = compute_rto(_load(0, 100, slow=(10, 20)), fault_at=10)
    assert rto.seconds is not None and rto.seconds >= 9.5


def test_empty_slate_breaks_the_slo() -> None:
    reqs = _load(0, 100)
    reqs[150] = Request(t=reqs[150].t, ok=True, latency_ms=5, slate_len=0)
    assert not window_verdict(reqs, start=10).holds
    rto = compute_rto(reqs, fault_at=10)
    assert rto.seconds is not None and rto.seconds > 4.9


def test_rto_not_measured_when_load_too_short() -> None:
    rto = compute_rto(_load(0, 40, bad=(10, 20)), fault_at=10)
    assert not rto.measured and rto.seconds is None
    assert "run the load longer" in rto.reason


def test_rpo_zero_when_everything_survived() -> None:
    acked = [AckedEvent(seq=i, acked_at=float(i), region="us-east") for i in range(10)]
    rpo = compute_rpo(acked, lost_region="us-east", fault_at=10.0, durable_seqs=set(range(10)))
    assert (rpo.seconds, rpo.lost, rpo.acknowledged) == (0.0, 0, 10)


def test_rpo_counts_lost_tail() -> None:
    acked = [AckedEvent(seq=i, acked_at=float(i), region="us-east") for i in range(10)]
    rpo = compute_rpo(acked, lost_region="us-east", fault_at=10.0, durable_seqs=set(range(7)))
    assert rpo.lost == 3
    assert rpo.seconds == pytest.approx(10.0 - 6.0)


def test_rpo_ignores_other_regions_and_events_after_fault() -> None:
    acked = [AckedEvent(seq=1, acked_at=1, region="us-west"), AckedEvent(seq=2, acked_at=11, region="us-east")]
    rpo = compute_rpo(acked, lost_region="us-east", fault_at=10.0, durable_seqs=set())
    assert rpo.acknowledged == 0 and rpo.lost == 0


@given(st.lists(st.booleans(), min_size=1, max_size=50))
def test_rpo_lost_count_matches_missing(durable_flags: list[bool]) -> None:
    acked = [AckedEvent(seq=i, acked_at=float(i), region="r") for i in range(len(durable_flags))]
    durable = {i for i, d in enumerate(durable_flags) if d}
    rpo = compute_rpo(acked, lost_region="r", fault_at=float(len(durable_flags)), durable_seqs=durable)
    assert rpo.lost == len(durable_flags) - len(durable)
    assert (rpo.seconds == 0.0) == (rpo.lost == 0)
    assert rpo.seconds >= 0.0
