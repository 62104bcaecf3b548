"""Edge overhead: homepage latency through the edge vs calling the same cell directly (p50/p99).

    .venv/bin/python benchmarks/edge_bench.py                       # against a STAND-IN cell it starts
    .venv/bin/python benchmarks/edge_bench.py --topology topology.toml --region us-east
                                                               # against a running real cell

Both paths are measured in one run against the same cell, sequentially from one client:
  direct: gRPC Recommend to the cell (what the edge itself sends);
  edge:   HTTP GET /v1/recommendations/homepage to a `regionctl edge` process on loopback,
          routed to that cell (a topology naming only that region is written for the edge).
Prints figures; asserts nothing about time. The stand-in cell answers from memory, so its numbers
measure the edge's own cost (HTTP + JSON + routing + one gRPC hop), not ranking.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent import futures
from pathlib import Path

import grpc
import httpx

from regions.processes import LOOPBACK, free_port, port_open, wait_until
from regions.topology import REPO_ROOT, load_topology
from contracts.proto import recommend_pb2 as pb
from contracts.proto import recommend_pb2_grpc as pb_grpc


class _StandIn(pb_grpc.RecommenderServicer):
    """A stand-in cell: answers `count` fixed items from memory (not the project's cell)."""

    def Recommend(self, request: pb.RecommendRequest, context: grpc.ServicerContext) -> pb.RecommendResponse:
        items = [pb.Item(item_id=f"sku-{n:06d}", score=1.0 / (n + 1)) for n in range(request.count or 20)]
        return pb.RecommendResponse(items=items, tier="full", region="bench", bundle_version="stand-in", latency_ms=0.0)


def serve_stand_in(port: int) -> None:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    pb_grpc.add_RecommenderServicer_to_server(_StandIn(), server)
    server.add_insecure_port(f"{LOOPBACK}:{port}")
    server.start()
    server.wait_for_termination()


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100.0 * (len(ordered) - 1))))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--count", type=int, default=20)
    ap.add_argument("--topology", type=Path, help="use the running cell of --region from this topology")
    ap.add_argument("--region", default="us-east")
    ap.add_argument("--serve-stand-in", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve_stand_in:
        serve_stand_in(args.serve_stand_in)
        return

    children: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory(prefix="bench-edge-") as tmp:
        try:
            if args.topology:
                region = load_topology(args.topology).region(args.region)
                grpc_port, geo, cell = region.grpc_port, region.geography, f"real cell {region.name}"
            else:
                grpc_port, geo, cell = free_port(), "us", "stand-in cell (in-memory answers)"
                children.append(subprocess.Popen([sys.executable, "-m", "benchmarks.edge_bench", "--serve-stand-in", str(grpc_port)]))
            wait_until(lambda: port_open(grpc_port), timeout=30, what=f"cell gRPC port {grpc_port}")
            edge_port = free_port()
            topo = Path(tmp) / "topology.toml"
            topo.write_text(
                f"[settings]\nedge_port = {edge_port}\ncontroller_port = {free_port()}\n"
                f"[geographies.{geo}]\npeak_share = 1.0\n"
                f'[regions.{args.region}]\ngeography = "{geo}"\ncapacity_qps = 400\n'
                f"http_port = {free_port()}\ngrpc_port = {grpc_port}\nredis_port = {free_port()}\n")
            code = ("import typer; from regionctl.edge_cmds import register; app = typer.Typer(); register(app); "
                    "app.command('noop')(lambda: None); app()")
            children.append(subprocess.Popen(
                [sys.executable, "-c", code, "edge", "--store", f"sqlite:///{tmp}/control.db", "--port", str(edge_port),
                 "--topology", str(topo)], cwd=REPO_ROOT, stderr=subprocess.DEVNULL))
            wait_until(lambda: port_open(edge_port), timeout=60, what="the edge")

            channel = grpc.insecure_channel(f"{LOOPBACK}:{grpc_port}", options=(("grpc.enable_http_proxy", 0),))
            stub = pb_grpc.RecommenderStub(channel)
            http = httpx.Client(base_url=f"http://{LOOPBACK}:{edge_port}", trust_env=False, timeout=5)
            user = f"{geo}-1"
            request = pb.RecommendRequest(user_id=user, count=args.count, deadline_ms=150.0)

            def direct() -> None:
                stub.Recommend(request, timeout=1.0)

            edge_ms: list[float] = []
            tiers: dict[str, int] = {}

            def via_edge() -> None:
                answer = http.get("/v1/recommendations/homepage", params={"user_id": user, "count": args.count}).json()
                edge_ms.append(answer["edge_ms"])
                tiers[answer["tier"]] = tiers.get(answer["tier"], 0) + 1

            results: dict[str, list[float]] = {"direct": [], "edge": []}
            for _ in range(args.warmup):
                direct()
                via_edge()
            edge_ms.clear()
            tiers.clear()
            for _ in range(args.requests):  # interleaved: both paths see the same machine noise
                for name, fn in (("direct", direct), ("edge", via_edge)):
                    t0 = time.perf_counter()
                    fn()
                    results[name].append((time.perf_counter() - t0) * 1000.0)
            http.close()
            channel.close()
        finally:
            for child in children:
                child.terminate()
                child.wait(timeout=10)

    rows = {name: {"p50_ms": pct(v, 50), "p99_ms": pct(v, 99), "mean_ms": statistics.fmean(v)}
            for name, v in results.items()}
    rows["edge_internal"] = {"p50_ms": pct(edge_ms, 50), "p99_ms": pct(edge_ms, 99), "mean_ms": statistics.fmean(edge_ms)}
    overhead = {f"overhead_{k}": rows["edge"][k] - rows["direct"][k] for k in ("p50_ms", "p99_ms")}
    print(f"edge vs direct gRPC, {args.requests} sequential homepage requests each, count={args.count}, cell: {cell}")
    print(f"{'path':<14}{'p50 ms':>10}{'p99 ms':>10}{'mean ms':>10}")
    for name, row in rows.items():
        print(f"{name:<14}{row['p50_ms']:>10.3f}{row['p99_ms']:>10.3f}{row['mean_ms']:>10.3f}")
    print(f"edge overhead: p50 {overhead['overhead_p50_ms']:.3f} ms, p99 {overhead['overhead_p99_ms']:.3f} ms "
          f"(edge_internal = the edge's own edge_ms, its server-side time incl. the gRPC hop); tiers {tiers}")
    print(json.dumps({"cell": cell, "requests": args.requests, **rows, **overhead}, default=float))


if __name__ == "__main__":
    main()
