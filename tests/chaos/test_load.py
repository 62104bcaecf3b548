"""The load generator: what an answer means (pure), and a real run against a stand-in server that
answers good, empty, 404, 500 and malformed homepages and acknowledges events."""
from __future__ import annotations

import itertools
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

import pytest

from chaos.load import LoadMix, LoadSpec, cap_for, read_records, run_load, summarize
from chaos.load_records import classify_events, classify_read
from regions.errors import InputError
from regions.processes import free_port

GOOD = {"items": [{"item_id": "i1"}], "tier": "full", "region": "us-east", "edge_ms": 4.2,
        "tried": [{"region": "us-east", "role": "primary", "result": "ok"}]}


@pytest.mark.parametrize(("status", "body", "ok", "empty"), [
    (200, GOOD, True, False),
    (200, {**GOOD, "items": []}, False, True),      # an empty homepage is a failure
    (404, {"detail": "not found"}, False, False),    # 4xx is no success
    (422, {"detail": []}, False, False),
    (500, None, False, False),
    (200, None, False, False),                       # 2xx without a readable body
])
def test_ok_is_2xx_with_items(status: int, body: Any, ok: bool, empty: bool) -> None:
    rec = classify_read("homepage", status, body)
    assert (rec["ok"], rec["empty"]) == (ok, empty)


def test_the_edge_attempts_and_the_degraded_answers_are_recorded() -> None:
    retried = {**GOOD, "region": "us-west", "tried": [{"region": "us-east", "role": "primary", "result": "error"},
                                                       {"region": "us-west", "role": "retry", "result": "ok"}]}
    rec = classify_read("homepage", 200, retried)
    assert (rec["first_ok"], rec["retries"], rec["personalised"], rec["edge_ms"]) == (False, 1, True, 4.2)
    cross = {**GOOD, "tier": "popularity", "region": "eu-west",
             "tried": [{"region": "us-east", "role": "primary", "result": "timeout"},
                       {"region": "eu-west", "role": "cross-geo", "result": "ok"}]}
    rec = classify_read("homepage", 200, cross)
    assert rec["cross_geo"] and rec["degraded"] and not rec["personalised"] and not rec["last_resort"]
    last = {**GOOD, "tier": "edge-popularity", "region": "edge", "tried": [{"region": "us-east", "role": "primary", "result": "error"}]}
    rec = classify_read("homepage", 200, last)
    assert rec["last_resort"] and rec["degraded"] and rec["ok"]
    assert classify_read("homepage", 200, {**GOOD, "tier": "cached"})["personalised"]
    assert classify_read("similar", 200, GOOD)["personalised"] is None


def test_an_event_batch_is_ok_only_when_every_event_was_acknowledged() -> None:
    assert classify_events(200, {"stored": {"us-east": ["a", "b"]}}, sent_ids=["a", "b"])["ok"]
    partial = classify_events(503, {"stored": {"us-east": ["a"]}, "not_stored": ["b"]}, sent_ids=["a", "b"])
    assert not partial["ok"] and partial["acked_ids"] == []  # a 503 acknowledges nothing
    assert not classify_events(200, {"stored": {"us-east": ["a"]}}, sent_ids=["a", "b"])["ok"]
    cell = classify_events(200, {"accepted": 2, "stream_ids": ["1-0", "1-1"], "region": "us-west"}, sent_ids=["a", "b"])
    assert cell["ok"] and cell["stored_by"] == {"us-west": ["a", "b"]}


def test_a_run_short_of_its_rate_is_invalid(tmp_path: Path) -> None:
    spec = LoadSpec(base_url="http://127.0.0.1:1", rate=100, duration_s=10, users=["us-1"], items=["i"])
    full = {"sent": 1000, "overload": 0, "failed": 0, "lags_ms": [1.0] * 1000, "last_sent": 9.99}
    assert summarize(spec, [full], epoch0=0.0, path=tmp_path)["valid"]
    late = {**full, "last_sent": 10.5}  # the same requests, but the schedule took 5 % longer
    got = summarize(spec, [late], epoch0=0.0, path=tmp_path)
    assert not got["valid"] and "more than 2% below its rate" in got["invalid_reasons"][0]


def test_the_open_request_cap_is_sized_from_rate_times_timeout() -> None:
    # Little's law: at most rate x timeout requests are open while the timeout holds; 25 % above it
    assert cap_for(300, 1.0) == 375 and cap_for(1000, 1.0) == 1250 and cap_for(40, 1.0) == 50
    assert cap_for(300, 0.5) == 188 and cap_for(1, 1.0) == 32  # a floor for tiny rates


def test_bad_specs_are_refused_naming_the_field() -> None:
    with pytest.raises(InputError) as exc:
        run_load(LoadSpec(base_url="http://10.0.0.1:80", rate=10, duration_s=1, users=["u"], items=["i"]), Path("/nonexistent"))
    assert exc.value.field == "base_url"
    with pytest.raises(InputError) as exc:
        run_load(LoadSpec(base_url="http://127.0.0.1:80", rate=10, duration_s=1, users=["u"], items=["i"], processes=0),
                 Path("/nonexistent"))
    assert exc.value.field == "processes"
    with pytest.raises(InputError) as exc:
        run_load(LoadSpec(base_url="http://127.0.0.1:80", rate=10, duration_s=1, users=["u"], items=["i"], max_in_flight=0),
                 Path("/nonexistent"))
    assert exc.value.field == "max_in_flight"


@pytest.fixture
def stand_in() -> Iterator[int]:
    answers = itertools.cycle([(200, json.dumps(GOOD)), (200, json.dumps({**GOOD, "items": []})), (404, '{"detail": "x"}'),
                               (500, '{"detail": "x"}'), (200, '{"items": [')])
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_args: Any) -> None:
            pass

        def _send(self, status: int, text: str) -> None:
            data = text.encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            with lock:
                status, text = next(answers)
            self._send(status, text)

        def do_POST(self) -> None:
            events = json.loads(self.rfile.read(int(self.headers["content-length"])))["events"]
            self._send(200, json.dumps({"stored": {"us-east": [e["event_id"] for e in events]}}))

    port = free_port()
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield port
    server.shutdown()
    server.server_close()


def test_a_real_run_records_every_answer_and_never_aborts(tmp_path: Path, stand_in: int) -> None:
    spec = LoadSpec(base_url=f"http://127.0.0.1:{stand_in}", rate=50, duration_s=3, users=["us-1", "eu-2"], items=["i1"],
                    mix=LoadMix(homepage=0.8, similar=0.0, events=0.2))
    result = run_load(spec, tmp_path / "load.jsonl")
    records = read_records(tmp_path / "load.jsonl")
    assert len(records) == result["requests"] == 150 and result["valid"] and result["p99_schedule_lag_ms"] is not None
    pages = [r for r in records if r["kind"] == "homepage"]
    statuses = {(r["status"], r["ok"]) for r in pages}
    assert {(200, True), (404, False), (500, False)} <= statuses
    assert any(r["empty"] and not r["ok"] for r in pages)
    assert any("error" in r and r["status"] == "JSONDecodeError" for r in pages), "a malformed body is a failed record"
    events = [r for r in records if r["kind"] == "events"]
    assert events and all(r["ok"] and r["acked_ids"] == r["event_ids"] and len(set(r["event_ids"])) == 3 for r in events)
    for r in records:
        assert r["latency_ms"] == pytest.approx((r["done"] - r["t"]) * 1000)  # from the scheduled send
        assert r["sent"] >= r["t"] - 1e-3
    ids = [i for r in events for i in r["event_ids"]]
    assert len(ids) == len(set(ids))


def test_a_closed_port_gives_failed_records(tmp_path: Path) -> None:
    spec = LoadSpec(base_url=f"http://127.0.0.1:{free_port()}", rate=20, duration_s=1, users=["us-1"], items=["i1"])
    result = run_load(spec, tmp_path / "load.jsonl")
    records = read_records(tmp_path / "load.jsonl")
    assert result["failed"] == len(records) == 20 and all(not r["ok"] and r["error"] for r in records)


def test_several_processes_share_the_schedule(tmp_path: Path, stand_in: int) -> None:
    spec = LoadSpec(base_url=f"http://127.0.0.1:{stand_in}", rate=40, duration_s=2, users=["us-1"], items=["i1"], processes=2)
    result = run_load(spec, tmp_path / "load.jsonl")
    records = read_records(tmp_path / "load.jsonl")
    assert len(records) == 80 and result["processes"] == 2 and result["valid"]
    assert [r["t"] for r in records] == sorted(r["t"] for r in records)
    assert not list(tmp_path.glob("*.part*"))
