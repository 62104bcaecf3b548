"""A STAND-IN for a region cell, for the controller's tests (the real cells are built elsewhere).

It serves the two things the controller probes, in the shapes docs/interfaces.md gives:
`GET /readyz` and `GET /v1/recommendations/homepage`. Its behaviour can be changed while it runs
(`mode`), in a thread (`StandinCell`) or as a real subprocess
(`python -m tests.failover.standin_cell --region R --port P [--peers a,b]`, changed with
`POST /_standin {"mode": ...}` and killed with SIGKILL like a crashed cell).

Modes: ok | unready (readyz 503) | empty (homepage with no items) | degraded (Redis down, served by
the segment tier) | slow (answers after 2 s: past the probe timeout) | slo (p99 300 ms, 5 % errors).
"""
from __future__ import annotations

import argparse
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

MODES = ("ok", "unready", "empty", "degraded", "slow", "slo")


class StandinCell:
    def __init__(self, *, region: str, port: int, peers: tuple[str, ...] = (), bundle_version: str = "v1",
                 qps: float = 10.0) -> None:
        self.region, self.port, self.peers = region, port, peers
        self.mode, self.bundle_version, self.qps = "ok", bundle_version, qps
        self.lag_s, self.lag_events = 0.2, 3
        self.requests = 0
        self.rollout: dict[str, Any] = {}
        """The /readyz "rollout" view (serving.cell_runtime.rollout_view) the stand-in reports, when set."""
        self.homepage_delay_s = 0.0
        """Added to every homepage answer while the cell stays up (a slow region, a gray failure)."""
        cell = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                return

            def _send(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                cell.requests += 1
                if cell.mode == "slow":
                    time.sleep(2.0)
                parts = urlsplit(self.path)
                if parts.path == "/readyz":
                    status, body = cell.readyz()
                    self._send(status, body)
                elif parts.path == "/v1/recommendations/homepage":
                    time.sleep(cell.homepage_delay_s)
                    count = int(parse_qs(parts.query).get("count", ["8"])[0])
                    self._send(200, cell.homepage(count))
                else:
                    self._send(404, {"detail": "not found"})

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                change = json.loads(self.rfile.read(length) or b"{}")
                for key in ("mode", "bundle_version", "qps", "lag_s", "lag_events"):
                    if key in change:
                        setattr(cell, key, change[key])
                self._send(200, {"ok": True})

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    def readyz(self) -> tuple[int, dict[str, Any]]:
        degraded, slo = self.mode == "degraded", self.mode == "slo"
        body = {
            "ready": self.mode != "unready", "region": self.region, "bundle_version": self.bundle_version,
            "bundle_loaded_at": 0.0, "bundle_refused": None, "redis_ok": not degraded,
            "freshness": {"stale": degraded, "user_age_s": 1.0, "oldest_item_age_s": 10.0},
            "error_rate": 0.05 if slo else 0.0, "p99_ms": 300.0 if slo else 12.0, "qps": self.qps,
            "tier_mix": {"full": 0.0 if degraded else 1.0, "cached": 0.0, "segment": 1.0 if degraded else 0.0,
                         "popularity": 0.0},
            "replication": [{"source": self.region, "destination": p, "lag_s": self.lag_s,
                             "lag_events": self.lag_events} for p in self.peers],
        }
        if self.rollout:
            body["rollout"] = self.rollout
        return (503 if self.mode == "unready" else 200), body

    def homepage(self, count: int) -> dict[str, Any]:
        items = [] if self.mode == "empty" else [{"item_id": f"i{n}", "score": 1.0 / (n + 1)} for n in range(count)]
        return {"items": items, "tier": "segment" if self.mode == "degraded" else "full", "region": self.region,
                "bundle_version": self.bundle_version, "skipped": [], "stale": False, "latency_ms": 1.0}

    def start(self) -> StandinCell:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening: later probes get 'connection refused', as from a dead cell."""
        if not self._thread.is_alive():
            return
        self._server.shutdown()
        self._server.server_close()


def main() -> None:
    parser = argparse.ArgumentParser(description="stand-in cell for the controller's tests")
    parser.add_argument("--region", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--peers", default="")
    args = parser.parse_args()
    cell = StandinCell(region=args.region, port=args.port, peers=tuple(p for p in args.peers.split(",") if p))
    print(f"STANDIN region={args.region} port={args.port}", flush=True)
    cell._server.serve_forever()


if __name__ == "__main__":
    main()
