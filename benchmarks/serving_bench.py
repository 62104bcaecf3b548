"""Serving benchmark: one cell on ONE core, the demo bundle, every tier over HTTP and gRPC, against the
in-process floor of the same work; writes var/bench/serving.json and the capacity calibration.

    .venv/bin/python -m regionctl.main bench serving [--requests N] [--json]      (make bench)
    .venv/bin/python benchmarks/serving_bench.py [--requests N] [--json]

What it does (everything on loopback, everything it starts is stopped at the end):
  1. the demo bundle (var/bench/bundle-demo-seed7, trained once, ~20 s) and the same synthetic data's
     user states (replayed with serving.user_state.apply_event), written to a fresh redis-server;
  2. a real cell process (`regionctl cell`) pinned to one core (taskset + sched_setaffinity of every
     thread); this process (the load client) and redis-server are pinned to another core;
  3. one full request per user (warms the cached tier), then for each transport and each tier
     (max_tier=) `requests` closed-loop sequential requests: client latency p50/p99, requests/s, and
     the cell's CPU per request from /proc/<pid>/stat (utime + stime, all threads) before/after;
  4. the floor: the same users' candidates (FAISS + rule retrievers), features and LightGBM predict
     in this process, with the cell idle; the ratio end-to-end / floor;
  5. var/bench/serving.json and var/calibration.json (cpu_ms and p99 per tier, "measured on ...").
Prints figures; asserts nothing about time.
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterator


from capacity.calibration import MEASURED_CALIBRATION_PATH, calibration_to_dict, write_calibration
from capacity.model import Calibration
from contracts.tiers import TIER_NAMES
from regions.errors import InputError, TemporaryError
from regions.processes import ManagedProcess, free_port, spawn, start_redis, wait_until
from benchmarks.printing import print_report
from regions.topology import REPO_ROOT, load_topology
from benchmarks.serving_peers import haproxy_binary, rss_mb, start_edge, start_haproxy
from serving.benchmarking import (
    LatencyStats, MeasuredCost, calibration_from, core_ticks_of_stat, cpu_ms_per_request, cpu_ns_of_schedstat,
    others_share, overhead_ms, percentile, ratio, summarize,
)

TRANSPORTS = ("http", "grpc")


@dataclass(frozen=True)
class ServingBenchSettings:
    requests: int = 1000
    """Per tier and transport: p99 rests on the 10 slowest, and the whole run stays near a minute."""
    users: int = 200
    """Distinct users cycled through: enough that caches and candidate sets vary like real traffic."""
    count: int = 8
    """Slate size: the cell's default and the controller probe's."""
    size: str = "demo"
    """The demo marketplace (3000 items, 2000 users): what `make demo` serves."""
    seed: int = 7
    """`regionctl train`'s default seed: the bench serves the same bundle the demo trains."""
    region: str = "us-east"
    """A region of the us geography: its users are resident, so user state and cache apply."""
    cache_dir: Path = REPO_ROOT / "var" / "bench"
    """Where the trained bundle is kept between runs and serving.json is written."""
    calibration_path: Path = MEASURED_CALIBRATION_PATH
    """The capacity planner reads var/calibration.json once it exists."""
    calibrate_from: str = "http"
    """HTTP: the dearer transport (conservative for the planner) and the one the saturation benchmark drives."""
    timeout_s: float = 2.0
    """A request slower than 2 s is an error, not a latency sample."""
    with_edge: bool = True
    """The edge in front of the cell (HTTP in, gRPC to the cell): its overhead and CPU per request."""
    with_haproxy: bool = True
    """HAProxy in front of the same cell's HTTP port: the production-proxy peer row (skipped with a
    note when haproxy is not installed)."""
    rss_sizes: tuple[str, ...] = ("demo", "bench")
    """The cell's RSS is read with a bundle of each size; "bench" (50k items) is trained once (minutes)."""

    def __post_init__(self) -> None:
        if self.requests < 10:
            raise InputError("requests", f"must be >= 10 so a p99 means something, got {self.requests}")
        from serving.marketplace import SIZES

        for size in self.rss_sizes:
            if size not in SIZES:
                raise InputError("rss_sizes", f"unknown size {size!r}; allowed: {', '.join(SIZES)}")
        if self.calibrate_from not in TRANSPORTS:
            raise InputError("calibrate_from", f"must be one of {', '.join(TRANSPORTS)}, got {self.calibrate_from!r}")


# -- machine and CPU -------------------------------------------------------------------------------
from benchmarks.cpu_accounting import core_ticks, cpu_ns, cpu_ticks, machine_description, pin, split_cpus  # noqa: E402


# -- bundle and user states ------------------------------------------------------------------------
def ensure_bundle(settings: ServingBenchSettings, geographies: dict[str, float], log: Callable[[str], None]) -> Path:
    """The cached demo bundle, trained once (atomically renamed into place)."""
    from replication.manifest import new_bundle_version
    from serving import geo_training, marketplace

    target = settings.cache_dir / f"bundle-{settings.size}-seed{settings.seed}-us"  # a cell loads its geography's bundle only
    if (target / "manifest.json").exists():
        return target
    log(f"training the {settings.size} bundle once into {target} (~20 s)")
    dataset = marketplace.generate_named(settings.size, seed=settings.seed, geographies=geographies)
    settings.cache_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".bundle-", dir=settings.cache_dir))
    geo_training.train_geography_bundle(dataset, "us", topology=load_topology(), out_dir=staging / "b", now=time.time(),
                                        bundle_version=new_bundle_version(time.time()))
    os.replace(staging / "b", target)
    shutil.rmtree(staging, ignore_errors=True)
    return target


def bench_users(settings: ServingBenchSettings, bundle_dir: Path, geographies: dict[str, float], geo: str) -> dict[str, Any]:
    """{user_id: UserState} for `settings.users` users of `geo` with an embedding, replayed from the data."""
    import numpy as np

    from serving import marketplace, training

    with_embedding = {u["user_id"] for u in json.loads((bundle_dir / "users.json").read_text())}
    dataset = marketplace.generate_named(settings.size, seed=settings.seed, geographies=geographies)
    chosen = [n for n, u in enumerate(dataset.users) if u.geo == geo and u.user_id in with_embedding][: settings.users]
    if not chosen:
        raise InputError("region", f"no user of geography {geo!r} has an embedding in {bundle_dir}")
    table = dataset.events.select(np.isin(dataset.events.user, np.asarray(chosen)))
    (states,) = training.replay_states(dataset, table, snapshots=(dataset.end,))
    from serving.user_state import UserState

    return {dataset.users[n].user_id: states.get(n, UserState()) for n in chosen}


# -- the stack -------------------------------------------------------------------------------------
@dataclass
class BenchStack:
    """redis-server + one cell on loopback, with the users it serves."""

    region: str
    http_port: int
    grpc_port: int
    cell: ManagedProcess
    redis: ManagedProcess
    bundle_dir: Path
    bundle_version: str
    users: dict[str, Any]
    cell_cpus: set[int]
    client_cpus: set[int]
    topology: Any
    machine: str = ""
    edge: ManagedProcess | None = None
    edge_port: int = 0
    haproxy: ManagedProcess | None = None
    haproxy_port: int = 0
    notes: list[str] = field(default_factory=list)
    restart_cell: Callable[..., tuple[ManagedProcess, str]] | None = None
    """restart_cell(bundle, env=None): a fresh cell serving `bundle`, with `env` added to its environment."""
    """Replace the cell by one serving another bundle directory (same ports and Redis): (process, version)."""

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"


def _write_topology(path: Path, *, region: str, geo: str) -> tuple[int, int, int]:
    http, grpc_port, redis_port = free_port(), free_port(), free_port()
    path.write_text("\n".join([
        "[settings]", f"controller_port = {free_port()}", f"edge_port = {free_port()}", "",
        f"[geographies.{geo}]", "peak_share = 1.0", "",
        f"[regions.{region}]", f'geography = "{geo}"', "capacity_qps = 400",
        f"http_port = {http}", f"grpc_port = {grpc_port}", f"redis_port = {redis_port}", "",
    ]))
    return http, grpc_port, redis_port


@contextmanager
def bench_stack(settings: ServingBenchSettings, *, log: Callable[[str], None] = lambda _m: None) -> Iterator[BenchStack]:
    """Start redis + a pinned cell serving the demo bundle; stop both (and unpin this process) on exit."""
    import httpx

    from replication.geo_artifacts import open_geo_store
    from replication.promotion import promote_verified
    from serving.bundle_checks import SEMANTIC_CHECKS
    from serving.feature_store import FeatureStore
    from serving.features import SCHEMA_VERSION

    cell_cpus, client_cpus = split_cpus()
    original = os.sched_getaffinity(0)
    os.sched_setaffinity(0, client_cpus)
    procs: list[ManagedProcess] = []
    tmp = Path(tempfile.mkdtemp(prefix="bench-serving-"))
    try:
        geo = "us"
        bundle_dir = ensure_bundle(settings, {"us": 0.6, "eu": 0.4}, log)
        users = bench_users(settings, bundle_dir, {"us": 0.6, "eu": 0.4}, geo)
        topo_file = tmp / "topology.toml"
        http_port, grpc_port, redis_port = _write_topology(topo_file, region=settings.region, geo=geo)
        topology = load_topology(topo_file)
        redis = start_redis(port=redis_port, data_dir=tmp / "redis", appendfsync="no")
        procs.append(redis)
        pin(redis.pid, client_cpus)
        store = FeatureStore.from_url(topology.region(settings.region).redis_url(), region=settings.region, topology=topology)
        for user_id, state in users.items():
            store.put_user_state(user_id, state)
        store.close()
        starts = [0]

        def start_cell(bundle: Path, env: dict[str, str] | None = None) -> tuple[ManagedProcess, str]:
            starts[0] += 1
            artifacts = tmp / f"artifacts-{starts[0]}"
            geo_store = open_geo_store(artifacts.as_uri(), geo)  # the cell opens the same one
            version = geo_store.publish(bundle)
            promote_verified(geo_store, version, supported_schema_versions={SCHEMA_VERSION}, semantic_checks=SEMANTIC_CHECKS)
            taskset = shutil.which("taskset")
            prefix = [taskset, "-c", ",".join(map(str, sorted(cell_cpus)))] if taskset else []
            argv = [*prefix, sys.executable, "-m", "regionctl.main", "cell", "--region", settings.region,
                    "--artifacts", f"file://{artifacts}", "--state-dir", str(tmp / f"state-{starts[0]}")]
            cell = spawn(f"cell-{settings.region}-{starts[0]}", argv, log_dir=tmp / "logs", cwd=REPO_ROOT,
                         env={"REGIONCTL_TOPOLOGY": str(topo_file), **(env or {})})
            procs.append(cell)
            pin(cell.pid, cell_cpus)

            def ready() -> bool:
                if not cell.alive():
                    return True
                try:
                    body = httpx.get(f"http://127.0.0.1:{http_port}/readyz", timeout=1.0).json()
                except (httpx.HTTPError, ValueError):
                    return False
                return body.get("bundle_version") == version and body["freshness"]["oldest_item_age_s"] is not None

            wait_until(ready, timeout=300, interval=0.2, what=f"cell {settings.region} serving {version}")
            if not cell.alive():
                raise TemporaryError(f"the cell exited at start:\n{cell.log_tail()}")
            pin(cell.pid, cell_cpus)
            return cell, version

        cell, version = start_cell(bundle_dir)
        log(f"cell pid {cell.pid} on CPU {sorted(cell_cpus)}, client + redis on CPU {sorted(client_cpus)}")
        stack = BenchStack(region=settings.region, http_port=http_port, grpc_port=grpc_port, cell=cell, redis=redis,
                           bundle_dir=bundle_dir, bundle_version=version, users=users, cell_cpus=cell_cpus,
                           client_cpus=client_cpus, topology=topology, machine=machine_description(cell_cpus))

        def restart_cell(bundle: Path, env: dict[str, str] | None = None) -> tuple[ManagedProcess, str]:
            stack.cell.stop(timeout=5)
            stack.cell, version = start_cell(bundle, env)
            return stack.cell, version

        stack.restart_cell = restart_cell
        if settings.with_edge:
            stack.edge_port = topology.settings.edge_port
            stack.edge = start_edge(port=stack.edge_port, topology_file=topo_file, work_dir=tmp / "edge")
            procs.append(stack.edge)
            pin(stack.edge.pid, client_cpus)
            log(f"edge pid {stack.edge.pid} on CPU {sorted(client_cpus)}, port {stack.edge_port}")
        if settings.with_haproxy:
            if haproxy_binary() is None:
                stack.notes.append("haproxy is not installed (make setup installs it): no peer row")
            else:
                stack.haproxy_port = free_port()
                stack.haproxy = start_haproxy(listen_port=stack.haproxy_port, backend_port=http_port, work_dir=tmp / "haproxy")
                procs.append(stack.haproxy)
                pin(stack.haproxy.pid, client_cpus)
                log(f"haproxy pid {stack.haproxy.pid} on CPU {sorted(client_cpus)}, port {stack.haproxy_port}")
        yield stack
    finally:
        for proc in reversed(procs):
            proc.stop(timeout=5)
        os.sched_setaffinity(0, original)
        shutil.rmtree(tmp, ignore_errors=True)


# -- clients ---------------------------------------------------------------------------------------
Call = Callable[[str, str], tuple[str, float]]
"""(user_id, max_tier) -> (tier served, latency the cell reported in ms); raises on failure."""


@contextmanager
def clients(stack: BenchStack, *, count: int, timeout_s: float) -> Iterator[dict[str, Call]]:
    import grpc
    import httpx

    from contracts.proto import recommend_pb2 as pb
    from contracts.proto import recommend_pb2_grpc as pb_grpc

    http = httpx.Client(base_url=stack.base_url, timeout=timeout_s)
    channel = grpc.insecure_channel(f"127.0.0.1:{stack.grpc_port}")
    stub = pb_grpc.RecommenderStub(channel)

    def over_http(user_id: str, tier: str) -> tuple[str, float]:
        r = http.get("/v1/recommendations/homepage", params={"user_id": user_id, "count": count, "max_tier": tier})
        r.raise_for_status()
        body = r.json()
        return str(body["tier"]), float(body["latency_ms"])

    def over_grpc(user_id: str, tier: str) -> tuple[str, float]:
        answer = stub.Recommend(pb.RecommendRequest(user_id=user_id, count=count, max_tier=tier), timeout=timeout_s)
        return answer.tier, answer.latency_ms

    calls: dict[str, Call] = {"http": over_http, "grpc": over_grpc}
    proxies: list[httpx.Client] = []

    def via(client: httpx.Client, *, tiered: bool) -> Call:
        def call(user_id: str, tier: str) -> tuple[str, float]:
            params: dict[str, Any] = {"user_id": user_id, "count": count}
            if tiered:
                params["max_tier"] = tier
            r = client.get("/v1/recommendations/homepage", params=params)
            r.raise_for_status()
            body = r.json()
            return str(body["tier"]), float(body["latency_ms"])
        return call

    if stack.edge is not None:  # the edge asks the cell for the full ladder (max_tier comes from the routing table)
        proxies.append(httpx.Client(base_url=f"http://127.0.0.1:{stack.edge_port}", timeout=timeout_s, trust_env=False))
        calls["edge"] = via(proxies[-1], tiered=False)
    if stack.haproxy is not None:
        proxies.append(httpx.Client(base_url=f"http://127.0.0.1:{stack.haproxy_port}", timeout=timeout_s, trust_env=False))
        calls["haproxy"] = via(proxies[-1], tiered=True)

    def similar_http(client: httpx.Client) -> Call:
        def call(product_id: str, _tier: str) -> tuple[str, float]:
            r = client.get("/v1/recommendations/similar", params={"product_id": product_id, "count": count})
            r.raise_for_status()
            body = r.json()
            return str(body["tier"]), float(body["latency_ms"])
        return call

    def similar_grpc(product_id: str, _tier: str) -> tuple[str, float]:
        answer = stub.Recommend(pb.RecommendRequest(surface=pb.SIMILAR, product_id=product_id, count=count), timeout=timeout_s)
        return answer.tier, answer.latency_ms

    calls["similar:grpc"], calls["similar:http"] = similar_grpc, similar_http(http)
    for name, client in zip([p for p in ("edge", "haproxy") if p in calls], proxies):
        calls[f"similar:{name}"] = similar_http(client)
    try:
        yield calls
    finally:
        http.close()
        channel.close()
        for client in proxies:
            client.close()


@dataclass(frozen=True)
class Phase:
    transport: str
    tier: str
    stats: LatencyStats
    cell_p99_ms: float
    """p99 of the time the cell itself reports (latency_ms: the recommender, without the server)."""
    cpu_ms: float
    served: dict[str, int]
    errors: int
    others_share: float
    """Share of the cell's core that other processes took during the phase (noise of a shared machine)."""

    def to_dict(self) -> dict[str, Any]:
        return {"transport": self.transport, "tier": self.tier, **self.stats.to_dict(),
                "cell_p99_ms": round(self.cell_p99_ms, 4), "cpu_ms": round(self.cpu_ms, 4), "served": self.served,
                "errors": self.errors, "others_share": round(self.others_share, 3)}


class PhaseMeter:
    """Closed-loop requests of one transport and tier, measured in one or more chunks (so that the
    floor can run between them and both see the same stretch of machine noise)."""

    def __init__(self, stack: BenchStack, call: Call, *, transport: str, tier: str) -> None:
        self.stack, self.call, self.transport, self.tier = stack, call, transport, tier
        self.users = list(stack.users)
        self.latencies: list[float] = []
        self.cell: list[float] = []
        self.served: dict[str, int] = {}
        self.errors = self.done = self.ticks = self.ns = self.busy = self.total = 0
        self.wall = 0.0

    def run(self, requests: int) -> None:
        stack = self.stack
        ticks0, (busy0, total0), ns0 = cpu_ticks(stack.cell.pid), core_ticks(stack.cell_cpus), cpu_ns(stack.cell.pid)
        began = time.perf_counter()
        for n in range(self.done, self.done + requests):
            t0 = time.perf_counter()
            try:
                got, cell_ms = self.call(self.users[n % len(self.users)], self.tier)
            except Exception:  # an error is counted, never a latency sample
                self.errors += 1
                continue
            self.latencies.append((time.perf_counter() - t0) * 1000.0)
            self.cell.append(cell_ms)
            self.served[got] = self.served.get(got, 0) + 1
        self.wall += time.perf_counter() - began
        self.done += requests
        self.ticks += cpu_ticks(stack.cell.pid) - ticks0
        self.ns += max(cpu_ns(stack.cell.pid) - ns0, 0)
        busy1, total1 = core_ticks(stack.cell_cpus)
        self.busy, self.total = self.busy + busy1 - busy0, self.total + total1 - total0

    def result(self) -> Phase:
        if not self.latencies:
            raise TemporaryError(f"every {self.transport} request of tier {self.tier} failed; see the cell log:\n"
                                 f"{self.stack.cell.log_tail()}")
        return Phase(transport=self.transport, tier=self.tier, stats=summarize(self.latencies, wall_s=self.wall),
                     cell_p99_ms=percentile(self.cell, 99),
                     cpu_ms=cpu_ms_per_request(ticks=self.ns, clock_ticks_per_s=10**9, requests=self.done),
                     served=self.served, errors=self.errors,
                     others_share=others_share(core_busy_ticks=self.busy, core_total_ticks=max(self.total, 1), own_ticks=self.ticks))


def run_phase(stack: BenchStack, call: Call, *, transport: str, tier: str, requests: int) -> Phase:
    meter = PhaseMeter(stack, call, transport=transport, tier=tier)
    meter.run(requests)
    return meter.result()


# -- the edge and its peer -------------------------------------------------------------------------
from benchmarks.serving_proxy_phase import ProxyRow, popular_items, run_proxy_phase  # noqa: E402


def cell_rss(stack: BenchStack, settings: ServingBenchSettings, calls: dict[str, Call], *,
             log: Callable[[str], None]) -> dict[str, float]:
    """RSS of the cell (MiB) after serving each bundle size of `settings.rss_sizes`: the running demo
    cell first, then a cell restarted on the bench-size bundle (same ports, same Redis) that answers
    one full request per bench user first. Runs last: it replaces the benchmark's cell."""
    out: dict[str, float] = {}
    for size in settings.rss_sizes:
        if size != settings.size:
            bundle = ensure_bundle(replace(settings, size=size), {"us": 0.6, "eu": 0.4}, log)
            assert stack.restart_cell is not None
            log(f"RSS: restarting the cell on the {size} bundle ({bundle.name})")
            stack.restart_cell(bundle)
            for user in stack.users:
                calls["grpc"](user, "full")
        out[size] = rss_mb(stack.cell.pid)
    return out


# -- the floor -------------------------------------------------------------------------------------
from benchmarks.serving_floor import Floor, FloorMeter, measure_floor  # noqa: E402  (measured beside the stack)


# -- the run ---------------------------------------------------------------------------------------
FULL_P99_TARGET_MS = 40.0
"""Issue target: full ranking of ~200 candidates, p99 <= 40 ms on one core."""
LOWER_P99_TARGET_MS = 3.0
"""Issue target: cached, segment and popularity tiers, p99 <= 3 ms."""
RATIO_TARGET = 2.0
"""Issue target: end-to-end full ranking at most twice the in-process floor."""
CPU_RATIO_TARGET = 1.5
"""Issue 17: the cell's CPU per full ranking at most 1.5x the floor's."""
P99_RATIO_TARGET = 2.0
"""Issue 17: gRPC full-ranking p99 at most 2x the floor's p99."""
EDGE_CPU_TARGET_MS = 0.3
"""Issue 17: the edge's CPU per request."""
EDGE_VS_PEER_TARGET = 2.0
"""Issue 17: the edge's p50 overhead at most twice HAProxy's in front of the same cell."""


@dataclass(frozen=True)
class ServingReport:
    machine: str
    measured_at: float
    settings: ServingBenchSettings
    bundle_version: str
    phases: tuple[Phase, ...]
    floor: Floor
    calibration: Calibration
    proxies: tuple[ProxyRow, ...] = ()
    rss_mb: dict[str, float] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    outputs: dict[str, str] = field(default_factory=dict)

    def proxy(self, name: str) -> ProxyRow | None:
        return next((p for p in self.proxies if p.proxy == name), None)

    def phase(self, transport: str, tier: str) -> Phase:
        return next(p for p in self.phases if p.transport == transport and p.tier == tier)

    def ratios(self, transport: str) -> dict[str, float]:
        full = self.phase(transport, "full")
        return {"p50": ratio(full.stats.p50_ms, self.floor.total.p50_ms), "p99": ratio(full.stats.p99_ms, self.floor.total.p99_ms),
                "cpu": ratio(full.cpu_ms, self.floor.cpu_ms)}

    def targets(self) -> list[tuple[str, float, str, bool]]:
        """(what, measured, target, met) for every issue target."""
        rows = []
        for transport in TRANSPORTS:
            for tier in TIER_NAMES:
                limit = FULL_P99_TARGET_MS if tier == "full" else LOWER_P99_TARGET_MS
                p99 = self.phase(transport, tier).stats.p99_ms
                rows.append((f"{transport} {tier} p99 ms", p99, f"<= {limit:g}", p99 <= limit))
            for which, value in self.ratios(transport).items():
                limit = CPU_RATIO_TARGET if which == "cpu" else P99_RATIO_TARGET if which == "p99" else RATIO_TARGET
                rows.append((f"{transport} full / floor ({which})", value, f"<= {limit:g}", value <= limit))
        edge, peer = self.proxy("edge"), self.proxy("haproxy")
        if edge is not None:
            rows.append(("edge CPU ms per request", edge.cpu_ms, f"<= {EDGE_CPU_TARGET_MS:g}", edge.cpu_ms <= EDGE_CPU_TARGET_MS))
        if edge is not None and peer is not None:
            limit = EDGE_VS_PEER_TARGET * max(peer.overhead[0], 0.0)
            rows.append(("edge p50 overhead ms (vs 2x haproxy's)", edge.overhead[0], f"<= {limit:.2f}", edge.overhead[0] <= limit))
        return rows

    def to_dict(self) -> dict[str, Any]:
        s = self.settings
        return {
            "machine": self.machine, "measured_at": self.measured_at, "bundle_version": self.bundle_version,
            "settings": {"requests": s.requests, "users": s.users, "count": s.count, "size": s.size, "seed": s.seed,
                         "calibrate_from": s.calibrate_from},
            "phases": [p.to_dict() for p in self.phases], "floor": self.floor.to_dict(),
            "ratios": {t: {k: round(v, 3) for k, v in self.ratios(t).items()} for t in TRANSPORTS},
            "targets": [{"what": w, "measured": round(m, 3), "target": t, "met": ok} for w, m, t, ok in self.targets()],
            "proxies": [p.to_dict() for p in self.proxies], "rss_mb": {k: round(v, 1) for k, v in self.rss_mb.items()},
            "notes": list(self.notes),
            "calibration": calibration_to_dict(self.calibration), "outputs": self.outputs,
        }


FLOOR_CHUNKS = 10
"""Each full-ranking phase runs in 10 chunks with a chunk of the floor after each."""


def _chunks(total: int, parts: int) -> list[int]:
    base, extra = divmod(total, parts)
    return [n for n in (base + (1 if k < extra else 0) for k in range(parts)) if n > 0]


def run_serving_bench(settings: ServingBenchSettings = ServingBenchSettings(), *, write: bool = True,
                      log: Callable[[str], None] = lambda _m: None) -> ServingReport:
    """Run the whole benchmark; with `write`, also var/bench/serving.json and the calibration."""
    with bench_stack(settings, log=log) as stack, clients(stack, count=settings.count, timeout_s=settings.timeout_s) as calls:
        log(f"warming: one full request per user ({len(stack.users)} users) on each transport")
        for transport in TRANSPORTS:
            for user_id in stack.users:
                calls[transport](user_id, "full")
        phases = []
        floor_meter = FloorMeter(stack)
        for transport in TRANSPORTS:
            for tier in TIER_NAMES:
                meter = PhaseMeter(stack, calls[transport], transport=transport, tier=tier)
                if tier != "full":
                    log(f"{transport} {tier}: {settings.requests} sequential requests")
                    meter.run(settings.requests)
                else:  # full ranking and the floor in alternating chunks: their ratio sees the same noise
                    log(f"{transport} {tier}: {settings.requests} sequential requests, the floor's in between")
                    for chunk in _chunks(settings.requests, FLOOR_CHUNKS):
                        meter.run(chunk)
                        floor_meter.run(chunk)
                phases.append(meter.result())
        log(f"proxies: {settings.requests} interleaved rounds (direct gRPC, edge, direct HTTP, haproxy)")
        proxies = run_proxy_phase(stack, calls, requests=settings.requests)
        floor = floor_meter.result()
        machine, version, notes = stack.machine, stack.bundle_version, tuple(stack.notes)
        rss = cell_rss(stack, settings, calls, log=log)
    costs = {p.tier: MeasuredCost(cpu_ms=p.cpu_ms, p99_ms=p.stats.p99_ms) for p in phases if p.transport == settings.calibrate_from}
    measured_at = time.time()
    calibration = calibration_from(costs, machine=machine, measured_at=measured_at, cores=1.0)
    report = ServingReport(machine=machine, measured_at=measured_at, settings=settings, bundle_version=version,
                           phases=tuple(phases), floor=floor, calibration=calibration, proxies=proxies, rss_mb=rss,
                           notes=notes)
    if write:
        json_path = settings.cache_dir / "serving.json"
        report.outputs.update({"serving_json": str(json_path), "calibration": str(settings.calibration_path)})
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(report.to_dict(), indent=2) + "\n")
        write_calibration(calibration, settings.calibration_path)
    return report


from benchmarks.serving_render import render, summary_lines  # noqa: E402,F401  (the printing)


def main(argv: list[str] | None = None) -> None:
    import argparse

    from rich.console import Console

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=ServingBenchSettings.requests, help="requests per tier and transport")
    ap.add_argument("--json", action="store_true", help="print serving.json instead of tables")
    ap.add_argument("--rss-sizes", default="demo,bench", help="bundle sizes to read the cell's RSS with")
    args = ap.parse_args(argv)
    err = Console(stderr=True)
    settings = ServingBenchSettings(requests=args.requests, rss_sizes=tuple(s for s in args.rss_sizes.split(",") if s))
    report = run_serving_bench(settings, log=lambda m: err.print(f"[dim]{m}[/dim]"))
    print_report(report, render=render, summary_lines=summary_lines, as_json=args.json)


if __name__ == "__main__":
    main()
