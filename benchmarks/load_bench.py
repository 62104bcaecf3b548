"""Load-generator benchmark: can chaos.load send 1,000 requests/s on this machine?

    .venv/bin/python benchmarks/load_bench.py [--rate 1000] [--seconds 20] [--processes 1 2]

A trivial stand-in server (its own process: asyncio + uvloop + httptools, one fixed homepage
answer with the edge's fields, and an acknowledgement of every event) runs on a free loopback
port, so the figures measure the generator, not a service. For each --processes value the load
runs --seconds at --rate and the script prints the achieved rate, the p99 schedule lag (how late
requests left against their scheduled time), the p99 latency and whether the run was valid (at
most 2 % short of its rate). Figures only: nothing here asserts a timing.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import tempfile
import time
from pathlib import Path

import numpy as np

from chaos.load import LoadSpec, read_records, run_load
from regions.processes import free_port, port_open, wait_until

HOMEPAGE = json.dumps({"items": [{"item_id": f"i{i}", "score": 1.0} for i in range(8)], "tier": "full",
                       "region": "us-east", "edge_ms": 0.5, "routing_version": 1,
                       "tried": [{"region": "us-east", "role": "primary", "result": "ok"}]}).encode()


def _serve(port: int) -> None:
    import httptools
    import uvloop

    class Handler(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport
            self.parser = httptools.HttpRequestParser(self)
            self.body: list[bytes] = []
            self.url = b""

        def data_received(self, data: bytes) -> None:
            self.parser.feed_data(data)

        def on_url(self, url: bytes) -> None:
            self.url += url

        def on_body(self, body: bytes) -> None:
            self.body.append(body)

        def on_message_complete(self) -> None:
            if self.url.startswith(b"/v1/events"):
                ids = [e["event_id"] for e in json.loads(b"".join(self.body))["events"]]
                payload = json.dumps({"accepted": len(ids), "stored": {"us-east": ids}, "edge_ms": 0.3}).encode()
            else:
                payload = HOMEPAGE
            self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "  # type: ignore[attr-defined]
                                 + str(len(payload)).encode() + b"\r\n\r\n" + payload)
            self.body, self.url = [], b""

    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(Handler, "127.0.0.1", port)
        await server.serve_forever()

    uvloop.run(main())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    port = free_port()
    server = multiprocessing.get_context("spawn").Process(target=_serve, args=(port,), daemon=True)
    server.start()
    try:
        wait_until(lambda: port_open(port), timeout=10, what="stand-in server")
        users = [f"us-{i}" for i in range(1000)] + [f"eu-{i}" for i in range(1000)]
        items = [f"i{i}" for i in range(500)]
        with tempfile.TemporaryDirectory(prefix="bench-load-") as tmp:
            for procs in args.processes:
                path = Path(tmp) / f"load-{procs}.jsonl"
                spec = LoadSpec(base_url=f"http://127.0.0.1:{port}", rate=args.rate, duration_s=args.seconds,
                                users=users, items=items, processes=procs)
                t0 = time.perf_counter()
                result = run_load(spec, path)
                wall = time.perf_counter() - t0
                records = read_records(path)
                lat = [r["latency_ms"] for r in records]
                ok = sum(1 for r in records if r.get("ok"))
                print(f"{procs} process(es), {args.rate:g} req/s for {args.seconds:g} s: sent {result['sent']:,} of "
                      f"{result['scheduled']:,}, achieved {result['achieved_rate']:,.1f} req/s, p99 schedule lag "
                      f"{result['p99_schedule_lag_ms']:.1f} ms, p99 latency {np.percentile(lat, 99):.1f} ms, ok {ok:,}, "
                      f"{'VALID' if result['valid'] else 'INVALID (more than 2 % short)'}; wall {wall:.1f} s")
    finally:
        server.terminate()
        server.join(5)


if __name__ == "__main__":
    main()
