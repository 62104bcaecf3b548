"""The proxy rows of the serving benchmark: the edge and HAProxy in front of the same cell, interleaved, with per-process CPU."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks.cpu_accounting import cpu_ns
from regions.errors import TemporaryError
from serving.benchmarking import LatencyStats, cpu_ms_per_request, overhead_ms, summarize

if TYPE_CHECKING:
    from benchmarks.serving_bench import BenchStack, Call


def popular_items(bundle_dir: Path, n: int) -> list[str]:
    """The bundle's `n` most popular item ids (popularity.json): the products of the proxy phase."""
    return list(json.loads((bundle_dir / "popularity.json").read_text()))[:n]


PROXIES = {"edge": "grpc", "haproxy": "http"}
"""Each proxy, and the direct call to the cell it wraps: the edge calls the cell over gRPC, HAProxy
forwards HTTP to the cell's HTTP port."""


@dataclass(frozen=True)
class ProxyRow:
    """One proxy in front of the cell, against the direct call it wraps, interleaved in one phase."""

    proxy: str
    wraps: str
    stats: LatencyStats
    direct: LatencyStats
    cpu_ms: float
    """CPU of the proxy process (all threads) per request through it."""
    errors: int

    @property
    def overhead(self) -> tuple[float, float]:
        return overhead_ms(self.stats, self.direct)

    def to_dict(self) -> dict[str, Any]:
        p50, p99 = self.overhead
        return {"proxy": self.proxy, "wraps": self.wraps, **self.stats.to_dict(), "direct": self.direct.to_dict(),
                "overhead_p50_ms": round(p50, 4), "overhead_p99_ms": round(p99, 4), "cpu_ms": round(self.cpu_ms, 4),
                "errors": self.errors}


def run_proxy_phase(stack: BenchStack, calls: dict[str, Call], *, requests: int) -> tuple[ProxyRow, ...]:
    """`requests` rounds; each round calls every path once (direct gRPC, edge, direct HTTP, HAProxy),
    the order rotating, so that every path sees the same machine noise and the same cell state.

    The surface is "similar" (one ANN search + rules, ~0.3 ms in the cell) rather than the homepage:
    a proxy adds the same work whatever the cell computes, and a cheap, steady answer keeps the
    cell's own variance (several ms for full ranking on a shared machine) out of a sub-millisecond
    difference. The edge routes it like a homepage read (rendezvous on the key, deadline, one gRPC call)."""
    proxies = [p for p in PROXIES if p in calls]
    if not proxies:
        return ()
    paths = sorted({*proxies, *(PROXIES[p] for p in proxies)})
    procs = {"edge": stack.edge, "haproxy": stack.haproxy}
    users = popular_items(stack.bundle_dir, 200)
    tier = ""
    latencies: dict[str, list[float]] = {p: [] for p in paths}
    errors = dict.fromkeys(paths, 0)
    ns0 = {p: cpu_ns(procs[p].pid) for p in proxies}  # type: ignore[union-attr]
    began = time.perf_counter()
    for n in range(requests):
        user = users[n % len(users)]
        for k in range(len(paths)):
            path = paths[(n + k) % len(paths)]
            t0 = time.perf_counter()
            try:
                calls[f"similar:{path}"](user, tier)
            except Exception:
                errors[path] += 1
                continue
            latencies[path].append((time.perf_counter() - t0) * 1000.0)
    wall = time.perf_counter() - began
    rows = []
    for proxy in proxies:
        used_ns = cpu_ns(procs[proxy].pid) - ns0[proxy]  # type: ignore[union-attr]
        if not latencies[proxy] or not latencies[PROXIES[proxy]]:
            raise TemporaryError(f"every request through {proxy} (or its direct path) failed")
        rows.append(ProxyRow(proxy=proxy, wraps=PROXIES[proxy], stats=summarize(latencies[proxy], wall_s=wall),
                             direct=summarize(latencies[PROXIES[proxy]], wall_s=wall),
                             cpu_ms=cpu_ms_per_request(ticks=used_ns, clock_ticks_per_s=10**9, requests=requests),
                             errors=errors[proxy]))
    return tuple(rows)
