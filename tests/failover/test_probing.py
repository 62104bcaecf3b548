"""Probing: the pure translation of cell answers into probes, and real probes of STAND-IN cells.

The cells here are stand-ins (tests/failover/standin_cell.py) serving /readyz and the homepage in
the shapes of docs/interfaces.md; the lead's end-to-end tests probe the real cells.
"""
from __future__ import annotations

from typing import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from failover.health import ProbeOutcome, classify
from failover.probing import HttpResult, Prober, cell_urls, parse_readyz, to_probe
from failover.settings import ControllerSettings
from tests.failover.controller_helpers import Rig, make_rig

SETTINGS = ControllerSettings()
READY = {"ready": True, "region": "us-east", "bundle_version": "v7", "redis_ok": True,
         "freshness": {"stale": False}, "error_rate": 0.0, "p99_ms": 10.0, "qps": 5.0,
         "tier_mix": {"full": 1.0}, "replication": [{"source": "us-east", "destination": "us-west",
                                                     "lag_s": 0.4, "lag_events": 7}]}
HOME = {"items": [{"item_id": "a", "score": 1.0}], "tier": "full", "region": "us-east"}


@pytest.fixture
def rig() -> Iterator[Rig]:
    yield from make_rig()


@pytest.mark.parametrize(("readyz", "homepage", "outcome", "error_part"), [
    (HttpResult(status=200, body=READY), HttpResult(status=200, body=HOME), ProbeOutcome.GOOD, ""),
    (HttpResult(error="ConnectError: refused"), HttpResult(error="ConnectError: refused"), ProbeOutcome.FAILED,
     "readyz: ConnectError"),
    (HttpResult(status=503, body={**READY, "ready": False}), HttpResult(status=200, body=HOME),
     ProbeOutcome.FAILED, "HTTP 503"),
    (HttpResult(status=200, body=READY), HttpResult(status=500, body={"detail": "x"}), ProbeOutcome.FAILED,
     "homepage: HTTP 500"),
    (HttpResult(status=200, body=READY), HttpResult(status=200, body={**HOME, "items": []}), ProbeOutcome.FAILED, ""),
    (HttpResult(status=200, body="not json object"), HttpResult(status=200, body=HOME), ProbeOutcome.FAILED,
     "not a JSON object"),
    (HttpResult(status=200, body={**READY, "redis_ok": False}), HttpResult(status=200, body=HOME),
     ProbeOutcome.DEGRADED, ""),
    (HttpResult(status=200, body=READY), HttpResult(status=200, body={**HOME, "tier": "popularity"}),
     ProbeOutcome.DEGRADED, ""),
    (HttpResult(status=200, body={**READY, "p99_ms": 999.0}), HttpResult(status=200, body=HOME),
     ProbeOutcome.DEGRADED, ""),
])
def test_cell_answers_become_probes(readyz: HttpResult, homepage: HttpResult, outcome: ProbeOutcome,
                                    error_part: str) -> None:
    report = to_probe(region="us-east", readyz=readyz, homepage=homepage, at=5.0)
    assert classify(report.probe, SETTINGS)[0] is outcome
    assert error_part in report.probe.error
    assert report.probe.at == 5.0


def test_readyz_fields_reach_the_report() -> None:
    info = parse_readyz(READY, region="us-east")
    assert (info.bundle_version, info.qps, info.p99_ms) == ("v7", 5.0, 10.0)
    assert [(r.source, r.destination, r.lag_s, r.lag_events) for r in info.replication] == [
        ("us-east", "us-west", 0.4, 7)]


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                                       max_size=4), max_leaves=10)


@given(st.dictionaries(st.sampled_from(sorted(READY) + ["other"]), json_values, max_size=8))
def test_any_json_object_parses_without_raising(body: dict) -> None:
    info = parse_readyz(body, region="r")
    assert info.qps >= 0 and isinstance(info.redis_ok, bool)


@pytest.mark.parametrize(("mode", "outcome", "error_part"), [
    ("ok", ProbeOutcome.GOOD, ""),
    ("unready", ProbeOutcome.FAILED, "HTTP 503"),
    ("empty", ProbeOutcome.FAILED, ""),
    ("degraded", ProbeOutcome.DEGRADED, ""),
    ("slo", ProbeOutcome.DEGRADED, ""),
    ("slow", ProbeOutcome.FAILED, "timeout"),
])
def test_probing_standin_cells(rig: Rig, mode: str, outcome: ProbeOutcome, error_part: str) -> None:
    rig.cells["us-west"].mode = mode
    prober = Prober(topology=rig.topology, timeout_s=0.5)
    rig.probers.append(prober)
    reports = prober.probe_all(at=1.0)
    assert sorted(reports) == ["eu-west", "us-east", "us-west"]
    assert classify(reports["us-west"].probe, SETTINGS)[0] is outcome
    assert error_part in reports["us-west"].probe.error
    # the other cells are unaffected by the misbehaving one
    assert all(classify(reports[r].probe, SETTINGS)[0] is ProbeOutcome.GOOD for r in ("us-east", "eu-west"))


def test_a_stopped_cell_is_a_failed_probe(rig: Rig) -> None:
    rig.cells["eu-west"].stop()
    prober = Prober(topology=rig.topology, timeout_s=0.5)
    rig.probers.append(prober)
    report = prober.probe_all(at=1.0)["eu-west"]
    assert not report.probe.ok and report.readyz is None and "readyz" in report.probe.error


def test_probes_use_the_geography_probe_user_and_loopback(rig: Rig) -> None:
    assert all(url.startswith("http://127.0.0.1:") for url in cell_urls(rig.topology).values())
    prober = Prober(topology=rig.topology, timeout_s=0.5)
    rig.probers.append(prober)
    before = rig.cells["us-east"].requests
    prober.probe_all()
    assert rig.cells["us-east"].requests == before + 2
