"""A small stand-in stack for the chaos tests: real processes recorded in a StackState, a topology
on free ports, a tiny bundle in a LocalArtifactStore, and a fake HTTP cell/edge.

The fake HTTP server stands in for the cell and the edge, which are being written elsewhere; it
answers only the routes the actions and probes call, and records what it was sent.
"""
from __future__ import annotations

import json
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from regions import stack
from regions.processes import free_port, redis_server_binary, wait_until
from replication.artifact_store import LocalArtifactStore
from replication.manifest import build_manifest, write_manifest

REGIONS = {"us-east": "us", "us-west": "us", "eu-west": "eu"}


@dataclass
class Ports:
    edge: int = field(default_factory=free_port)
    controller: int = field(default_factory=free_port)
    http: dict[str, int] = field(default_factory=lambda: {r: free_port() for r in REGIONS})
    redis: dict[str, int] = field(default_factory=lambda: {r: free_port() for r in REGIONS})


def write_topology(path: Path, ports: Ports) -> Path:
    lines = ["[settings]", 'host = "127.0.0.1"', f"controller_port = {ports.controller}", f"edge_port = {ports.edge}", "",
             "[geographies.us]", "peak_share = 0.7", "[geographies.eu]", "peak_share = 0.3", ""]
    for region, geo in REGIONS.items():
        lines += [f"[regions.{region}]", f'geography = "{geo}"', "capacity_qps = 100", f"http_port = {ports.http[region]}",
                  f"grpc_port = {free_port()}", f"redis_port = {ports.redis[region]}", ""]
    path.write_text("\n".join(lines))
    return path


def sleeper(name: str, kind: str, region: str = "") -> stack.ProcessSpec:
    """A real process that does nothing for a long time (`sleep 1000`)."""
    return stack.ProcessSpec(name=name, kind=kind, region=region, argv=("sleep", "1000"))


def redis_sleeper(region: str, state_dir: Path) -> stack.ProcessSpec:
    """A stand-in for a region's redis-server (see test_kill_region_and_restore_with_a_real_redis for why):
    a real process whose argv carries `--dir` as the stack expects of kind redis."""
    return stack.ProcessSpec(name=f"redis-{region}", kind="redis", region=region,
                             argv=(sys.executable, "-c", "import time; time.sleep(1000)", "--dir", str(state_dir / "redis" / region)))


def redis_spec(region: str, port: int, state_dir: Path) -> stack.ProcessSpec:
    return stack.ProcessSpec(
        name=f"redis-{region}", kind="redis", region=region, port=port,
        argv=(redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(state_dir / "redis" / region),
              "--appendonly", "yes", "--appendfsync", "always", "--save", "", "--daemonize", "no"),
    )


def start_stack(state_dir: Path, specs: list[stack.ProcessSpec]) -> stack.StackState:
    state = stack.StackState.load(state_dir)
    for spec in specs:
        proc = stack.start_process(spec, state_dir=state_dir)
        state.processes[spec.name] = proc
        stack.wait_ready(proc, timeout=15)
        wait_until(lambda: stack.is_running(proc), timeout=10, what=f"{spec.name} to exec")
    state.save(state_dir)
    return state


def tiny_bundle(root: Path, version: str) -> Path:
    bundle = root / version
    bundle.mkdir(parents=True)
    (bundle / "ranker.txt").write_text("tree\nversion=v4\n" + "leaf=0.5\n" * 50)
    (bundle / "users.json").write_text(json.dumps([{"user_id": "us-1", "segment": "a"}, {"user_id": "eu-2", "segment": "b"}]))
    (bundle / "items.json").write_text(json.dumps([{"item_id": "i1"}, {"item_id": "i2"}]))
    write_manifest(bundle, build_manifest(bundle, bundle_version=version, created_at=time.time(), schema_version=1,
                                          data_watermark=time.time(), metrics={}))
    return bundle


def store_with_bundle(state_dir: Path, tmp: Path, version: str = "20260101T000000Z-good0001",
                      geography: str = "us") -> LocalArtifactStore:
    """The geography's store inside the stack's artifact store (replication.geo_artifacts), with a bundle current."""
    store = LocalArtifactStore(state_dir / "artifacts" / "geo" / geography)
    store.publish(tiny_bundle(tmp / "build", version))
    store.promote(version)
    return store


class FakeHttp:
    """One loopback HTTP server: homepage, readyz, admin/faults. `requests` records what came in."""

    def __init__(self, port: int, *, items: int = 3, readyz: dict[str, Any] | None = None, token: str = "chaos-token") -> None:
        self.items, self.readyz, self.token = items, readyz or {"ready": True}, token
        self.tier = "full"
        """The tier every homepage answer names (tests of the expectations change it)."""
        self.status: dict[str, Any] | None = None
        """When set, GET /v1/status answers {"regions": status} (a controller's status API)."""
        self.requests: list[tuple[str, str, dict[str, Any] | None, str]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args: Any) -> None:
                pass

            def _send(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _record(self, method: str) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                fake.requests.append((method, self.path, body, self.headers.get("authorization", "")))

            def do_GET(self) -> None:
                self._record("GET")
                if self.path.startswith("/v1/recommendations/homepage"):
                    self._send(200, {"items": [{"item_id": f"i{i}", "score": 1.0} for i in range(fake.items)], "tier": fake.tier})
                elif self.path == "/readyz":
                    self._send(200, fake.readyz)
                elif self.path == "/v1/status" and fake.status is not None:
                    self._send(200, {"regions": fake.status})
                else:
                    self._send(404, {"detail": "not found"})

            def _faults(self, method: str) -> None:
                self._record(method)
                if self.path != "/admin/faults":
                    return self._send(404, {"detail": "not found"})
                if fake.requests[-1][3] != f"Bearer {fake.token}":
                    return self._send(403, {"detail": "chaos token required"})
                self._send(200, fake.requests[-1][2] or {"ranking_latency_ms": 0.0, "freeze_index": False})

            def do_POST(self) -> None:
                self._faults("POST")

            def do_DELETE(self) -> None:
                self._faults("DELETE")

        class Server(ThreadingHTTPServer):
            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a load client that went away mid-answer (cancelled load) is expected

        self.server = Server(("127.0.0.1", port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "FakeHttp":
        self.thread.start()
        return self

    def __exit__(self, *_exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()
