"""STAND-IN cells for the edge tests: real gRPC servers (and one real HTTP server) on free loopback
ports, running a tiny Recommender written here, NOT the project's cell. They record every
request they receive, so a test can see exactly what crossed the wire, and can be told to fail,
be slow or answer empty. The lead's end-to-end tests run the edge against real cells.
"""
from __future__ import annotations

import json
import threading
import time
from concurrent import futures
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator
from urllib.parse import parse_qs, urlsplit

import grpc

from regions.processes import LOOPBACK, free_port
from regions.topology import Topology, parse_topology
from contracts.proto import recommend_pb2 as pb
from contracts.proto import recommend_pb2_grpc as pb_grpc

STAND_IN_DEADLINE_MS = 1000.0
"""The stand-in stack's request deadline (see start_stand_in_stack)."""


@dataclass
class StandInCell(pb_grpc.RecommenderServicer):
    """A fake cell of `region`. `mode`: ok | fail | slow | empty | refuse (invalid input) | not_found
    (an unknown product); `events_mode`: ok | fail | refuse | hang (never answers, as behind a network cut)."""

    region: str
    mode: str = "ok"
    events_mode: str = "ok"
    requests: list[pb.RecommendRequest] = field(default_factory=list)
    batches: list[pb.EventBatch] = field(default_factory=list)
    hung: int = 0
    """Event batches received in `hang` mode (never answered)."""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def Recommend(self, request: pb.RecommendRequest, context: grpc.ServicerContext) -> pb.RecommendResponse:
        with self.lock:
            self.requests.append(request)
        if self.mode == "fail":
            context.abort(grpc.StatusCode.UNAVAILABLE, f"{self.region} is down (stand-in)")
        if self.mode == "refuse":
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "count: out of range (stand-in)")
        if self.mode == "not_found":
            context.abort(grpc.StatusCode.NOT_FOUND, f"no product {request.product_id!r} (stand-in)")
        if self.mode == "slow":
            while context.is_active():  # far past any deadline; stops when the caller gives up
                time.sleep(0.01)
            return pb.RecommendResponse()
        count = request.count or 10
        items = [] if self.mode == "empty" else [
            pb.Item(item_id=f"{self.region}-item-{n}", score=1.0 / (n + 1)) for n in range(count)]
        tier = "popularity" if request.anonymous else (request.max_tier or "full")
        return pb.RecommendResponse(items=items, tier=tier, region=self.region, bundle_version="stand-in",
                                    latency_ms=0.5)

    def LogEvents(self, request: pb.EventBatch, context: grpc.ServicerContext) -> pb.LogAck:
        if self.events_mode == "fail":
            context.abort(grpc.StatusCode.UNAVAILABLE, f"{self.region} redis is down (stand-in)")
        if self.events_mode == "refuse":
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "type: unknown event type (stand-in)")
        if self.events_mode == "hang":
            with self.lock:
                self.hung += 1
            while context.is_active():  # far past any deadline; stops when the caller gives up
                time.sleep(0.01)
            return pb.LogAck()
        with self.lock:
            self.batches.append(request)
            offset = sum(len(b.events) for b in self.batches)
        return pb.LogAck(accepted=len(request.events),
                         stream_ids=[f"{offset - len(request.events) + n + 1}-0" for n in range(len(request.events))])

    def user_ids(self) -> list[str]:
        with self.lock:
            return [r.user_id for r in self.requests]

    def event_users(self) -> list[str]:
        with self.lock:
            return [e.user_id for b in self.batches for e in b.events]


class StandInHttpCell(BaseHTTPRequestHandler):
    """A fake cell's HTTP API (the class attribute `cell` holds the shared StandInCell state)."""

    cell: StandInCell

    def log_message(self, *args: Any) -> None:
        return

    def _send(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        q = {k: v[0] for k, v in parse_qs(parts.query).items()}
        request = pb.RecommendRequest(user_id=q.get("user_id", ""), count=int(q.get("count", 10)),
                                      deadline_ms=float(self.headers.get("X-Deadline-Ms", 0)),
                                      max_tier=q.get("max_tier", ""), anonymous=q.get("anonymous") == "true")
        answer = self.cell.Recommend(request, context=None)  # type: ignore[arg-type]
        self._send(200, {"items": [{"item_id": i.item_id, "score": i.score} for i in answer.items],
                         "tier": answer.tier, "region": answer.region, "bundle_version": answer.bundle_version,
                         "skipped": [], "stale": False, "latency_ms": answer.latency_ms})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        batch = pb.EventBatch(events=[pb.Event(event_id=e["event_id"], user_id=e["user_id"], item_id=e["item_id"],
                                               type=e["type"], ts=e["ts"]) for e in body["events"]])
        ack = self.cell.LogEvents(batch, context=None)  # type: ignore[arg-type]
        self._send(200, {"accepted": ack.accepted, "stream_ids": list(ack.stream_ids)})


@dataclass
class StandInStack:
    topology: Topology
    cells: dict[str, StandInCell]
    servers: list[Any]

    def stop(self) -> None:
        for server in self.servers:
            if isinstance(server, ThreadingHTTPServer):
                server.shutdown()
                server.server_close()
            else:
                server.stop(grace=None)


def start_stand_in_stack(layout: dict[str, list[str]], *, http: bool = False) -> StandInStack:
    """One stand-in cell per region (gRPC, plus HTTP when `http`), and a topology pointing at them."""
    cells: dict[str, StandInCell] = {}
    servers: list[Any] = []
    regions: dict[str, dict[str, Any]] = {}
    for geo, names in layout.items():
        for name in names:
            cell = cells[name] = StandInCell(region=name)
            server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
            pb_grpc.add_RecommenderServicer_to_server(cell, server)
            grpc_port = server.add_insecure_port(f"{LOOPBACK}:0")
            server.start()
            servers.append(server)
            http_port = free_port()
            if http:
                handler = type(f"Http{name}", (StandInHttpCell,), {"cell": cell})
                httpd = ThreadingHTTPServer((LOOPBACK, 0), handler)
                http_port = httpd.server_address[1]
                threading.Thread(target=httpd.serve_forever, daemon=True).start()
                servers.append(httpd)
            regions[name] = {"geography": geo, "capacity_qps": 100, "http_port": http_port, "grpc_port": grpc_port,
                             "redis_port": free_port()}
    share = round(1.0 / len(layout), 6)
    geos = {g: {"peak_share": share} for g in layout}
    geos[list(layout)[-1]]["peak_share"] = 1.0 - share * (len(layout) - 1)
    # A 1 s request deadline, not the product's 150 ms: these tests are about where the edge sends a
    # read, and on the shared 2-core machine a stall of the stand-in servers past 150 ms sent an
    # anonymous read to the last resort (CI). The deadline tests read it from the topology.
    topo = parse_topology({"settings": {"edge_port": free_port(), "controller_port": free_port(),
                                        "request_deadline_ms": STAND_IN_DEADLINE_MS},
                           "geographies": geos, "regions": regions})
    return StandInStack(topology=topo, cells=cells, servers=servers)


def stack_iter(layout: dict[str, list[str]], *, http: bool = False) -> Iterator[StandInStack]:
    stack = start_stand_in_stack(layout, http=http)
    try:
        yield stack
    finally:
        stack.stop()
