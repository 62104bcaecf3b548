"""The cell's gRPC contract: committed stubs are current, fields match the shared shapes, and a
real gRPC server on loopback answers through the generated package modules."""
from __future__ import annotations

import dataclasses
import shutil
import subprocess
import sys
from concurrent import futures
from pathlib import Path
from typing import Iterator

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from contracts.events import Event
from contracts import protogen
from contracts.proto import recommend_pb2 as pb
from contracts.proto import recommend_pb2_grpc as pb_grpc

REPO = Path(__file__).resolve().parents[2]


# -- stubs are current ----------------------------------------------------------------------

def test_committed_stubs_match_a_fresh_generation() -> None:
    stale = protogen.stale_stubs()
    assert stale == (), f"stale stubs {stale}: run `python -m contracts.protogen`"


def test_check_mode_exits_zero_on_the_committed_stubs() -> None:
    proc = subprocess.run([sys.executable, "-m", "contracts.protogen", "--check"], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_an_edited_proto_makes_the_stubs_stale(tmp_path: Path) -> None:
    shutil.copy(protogen.PROTO_DIR / protogen.PROTO_FILE, tmp_path / protogen.PROTO_FILE)
    proto = tmp_path / protogen.PROTO_FILE
    proto.write_text(proto.read_text().replace("  bool anonymous = 8;\n", "  bool anonymous = 8;\n  string extra = 99;\n"))
    stale = protogen.stale_stubs(proto_dir=tmp_path, committed_dir=protogen.PROTO_DIR)
    assert "recommend_pb2.py" in stale
    assert "recommend_pb2_grpc.py" not in stale  # the service did not change


def test_check_mode_exits_nonzero_when_stubs_are_missing(tmp_path: Path) -> None:
    assert protogen.main(["--check", "--out", str(tmp_path)]) == 1
    assert list(tmp_path.iterdir()) == []  # --check writes nothing


def test_generate_writes_importable_package_stubs(tmp_path: Path) -> None:
    written = protogen.generate(tmp_path)
    assert [p.name for p in written] == list(protogen.GENERATED_FILES)
    grpc_source = (tmp_path / "recommend_pb2_grpc.py").read_text()
    assert "from . import recommend_pb2 as recommend__pb2" in grpc_source
    assert "\nimport recommend_pb2" not in grpc_source


def test_a_broken_proto_raises_protoc_error(tmp_path: Path) -> None:
    (tmp_path / "recommend.proto").write_text('syntax = "proto3";\nmessage Broken { string x = ; }\n')
    with pytest.raises(protogen.ProtocError):
        protogen.generate(tmp_path / "out", proto_dir=tmp_path)


@pytest.mark.parametrize(("source", "expected"), [
    ("import recommend_pb2 as recommend__pb2\n", "from . import recommend_pb2 as recommend__pb2\n"),
    ("import grpc\nimport other_pb2 as other__pb2\n", "import grpc\nfrom . import other_pb2 as other__pb2\n"),
    ("import grpc\nimport warnings\n", "import grpc\nimport warnings\n"),
    ("from . import recommend_pb2 as recommend__pb2\n", "from . import recommend_pb2 as recommend__pb2\n"),
    ("    import recommend_pb2 as x\n", "    import recommend_pb2 as x\n"),  # only top-level imports
])
def test_fix_grpc_import(source: str, expected: str) -> None:
    assert protogen.fix_grpc_import(source) == expected


# -- fields match the shared shapes ---------------------------------------------------------

def test_event_message_carries_every_event_field() -> None:
    proto_fields = {f.name for f in pb.Event.DESCRIPTOR.fields}
    dataclass_fields = {f.name for f in dataclasses.fields(Event)}
    assert proto_fields == dataclass_fields


def test_response_carries_the_cell_answer_fields() -> None:
    # docs/interfaces.md, "Cell answer": the HTTP JSON and gRPC answers carry the same fields.
    assert {f.name for f in pb.RecommendResponse.DESCRIPTOR.fields} == {
        "items", "tier", "region", "bundle_version", "skipped", "stale", "latency_ms", "experiment", "arm"}
    assert {f.name for f in pb.Item.DESCRIPTOR.fields} == {"item_id", "score"}
    assert {f.name for f in pb.Skip.DESCRIPTOR.fields} == {"tier", "reason"}


def test_request_fields_and_surfaces() -> None:
    assert {f.name for f in pb.RecommendRequest.DESCRIPTOR.fields} == {
        "surface", "user_id", "product_id", "cart_items", "count", "deadline_ms", "max_tier", "anonymous",
        "geography"}
    assert list(pb.Surface.keys()) == ["HOMEPAGE", "SIMILAR", "CART"]
    assert pb.RecommendRequest().surface == pb.HOMEPAGE


@pytest.mark.parametrize(("kwargs", "has_seq", "seq"), [({}, False, 0), ({"seq": 0}, True, 0), ({"seq": 41}, True, 41)])
def test_event_seq_presence_distinguishes_unset_from_zero(kwargs: dict[str, int], has_seq: bool, seq: int) -> None:
    event = pb.Event.FromString(pb.Event(event_id="e1", **kwargs).SerializeToString())
    assert event.HasField("seq") is has_seq
    assert event.seq == seq


# -- a real server on loopback ----------------------------------------------------------------

class _EchoRecommender(pb_grpc.RecommenderServicer):
    """Answers from the request itself, so the test sees every field cross the wire."""

    def Recommend(self, request: pb.RecommendRequest, context: grpc.ServicerContext) -> pb.RecommendResponse:
        items = [pb.Item(item_id=i, score=1.0 / (n + 1)) for n, i in enumerate(request.cart_items[: request.count])]
        return pb.RecommendResponse(
            items=items, tier=request.max_tier or "full", region="us-east", bundle_version="v7",
            skipped=[pb.Skip(tier="full", reason=f"deadline {request.deadline_ms:g}")], stale=request.anonymous,
            latency_ms=3.5,
        )

    def LogEvents(self, request: pb.EventBatch, context: grpc.ServicerContext) -> pb.LogAck:
        return pb.LogAck(accepted=len(request.events),
                         stream_ids=[f"{e.seq if e.HasField('seq') else -1}-{e.event_id}" for e in request.events])


@pytest.fixture
def channel() -> Iterator[grpc.Channel]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    pb_grpc.add_RecommenderServicer_to_server(_EchoRecommender(), server)
    health_servicer = health.HealthServicer()
    health_servicer.set("shopnow.v1.Recommender", health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    chan = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield chan
    finally:
        chan.close()
        server.stop(grace=None)


def test_recommend_round_trip_over_loopback(channel: grpc.Channel) -> None:
    stub = pb_grpc.RecommenderStub(channel)
    answer = stub.Recommend(pb.RecommendRequest(
        surface=pb.CART, user_id="us-1", cart_items=["a", "b", "c"], count=2, deadline_ms=120.5,
        max_tier="cached", anonymous=True), timeout=10)
    assert [(i.item_id, i.score) for i in answer.items] == [("a", 1.0), ("b", 0.5)]
    assert (answer.tier, answer.region, answer.bundle_version, answer.stale) == ("cached", "us-east", "v7", True)
    assert [(s.tier, s.reason) for s in answer.skipped] == [("full", "deadline 120.5")]
    assert answer.latency_ms == 3.5


def test_log_events_round_trip_over_loopback(channel: grpc.Channel) -> None:
    stub = pb_grpc.RecommenderStub(channel)
    ack = stub.LogEvents(pb.EventBatch(events=[
        pb.Event(event_id="e1", user_id="us-1", item_id="i1", type="view", ts=1.0, seq=5),
        pb.Event(event_id="e2", user_id="us-1", item_id="i2", type="purchase", ts=2.0, price=9.5),
    ]), timeout=10)
    assert ack.accepted == 2
    assert list(ack.stream_ids) == ["5-e1", "-1-e2"]


def test_standard_health_service_answers_next_to_the_recommender(channel: grpc.Channel) -> None:
    reply = health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(service="shopnow.v1.Recommender"), timeout=10)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
