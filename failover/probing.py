"""Probing the cells: `/readyz` plus one synthetic homepage request per cell, concurrently.

The pure part turns what a cell answered into values: `parse_readyz(body)` -> `Readyz`, and
`to_probe(...)` -> `failover.health.Probe` (the state machine's input). The I/O part, `Prober`,
asks every cell at once (one thread per request, both requests of a cell in parallel) with the
controller's `probe_timeout_s` and never raises for a cell that misbehaves: a refused connection,
a timeout, an error status or an unreadable body all become a failed `Probe` naming why.

The synthetic request is the one docs/interfaces.md names:
    GET /v1/recommendations/homepage?user_id=<geo>-probe&count=8   (contracts.impressions.probe_user_id:
                                                                    never recorded as an impression)
It must return a non-empty slate; the tier that served it is kept (below `full` is degraded).
The HTTP client is injected (httpx transports swap for tests, as in httpx's MockTransport).
"""
from __future__ import annotations

import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Callable, Mapping

import httpx

from contracts.impressions import probe_user_id
from failover.health import Probe
from regions.topology import Topology

HOMEPAGE_PATH = "/v1/recommendations/homepage"
PROBE_COUNT = 8
"""Slate length of the synthetic request: small, so the probe costs the cell little."""


@dataclass(frozen=True, kw_only=True)
class ReplicationLag:
    """Lag of the interaction log from `source` to `destination`, as a cell reported it."""

    source: str
    destination: str
    lag_s: float
    lag_events: int


@dataclass(frozen=True, kw_only=True)
class Readyz:
    """The parts of a cell's `/readyz` the controller uses (docs/interfaces.md)."""

    ready: bool
    region: str
    bundle_version: str | None
    redis_ok: bool
    stale: bool
    error_rate: float
    p99_ms: float
    qps: float
    tier_mix: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))
    replication: tuple[ReplicationLag, ...] = ()
    rollout: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    """The cell's view of its serving plan: revision, candidate, per-version figures, shadow (serving.cell_runtime)."""


@dataclass(frozen=True, kw_only=True)
class CellReport:
    """One probe round of one region: the health input plus what the snapshot needs besides."""

    region: str
    probe: Probe
    readyz: Readyz | None
    """None when /readyz did not answer usably."""


def _number(raw: Mapping[str, Any], key: str, default: float = 0.0) -> float:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return default
    return float(value)


def parse_readyz(body: Any, *, region: str) -> Readyz:
    """Readyz from the decoded JSON body; missing or malformed fields take safe defaults.

    A cell that leaves out `redis_ok` is taken at its word that Redis is fine; one that leaves
    out the metrics reports none. Only a body that is not an object is refused (ValueError).
    """
    if not isinstance(body, Mapping):
        raise ValueError(f"/readyz of {region} is not a JSON object")
    freshness = body.get("freshness") if isinstance(body.get("freshness"), Mapping) else {}
    mix_raw = body.get("tier_mix") if isinstance(body.get("tier_mix"), Mapping) else {}
    mix = {str(k): float(v) for k, v in mix_raw.items()
           if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}
    lags = []
    replication = body.get("replication")
    for item in replication if isinstance(replication, list) else []:
        if not isinstance(item, Mapping) or not item.get("source") or not item.get("destination"):
            continue
        lags.append(ReplicationLag(source=str(item["source"]), destination=str(item["destination"]),
                                   lag_s=_number(item, "lag_s"), lag_events=int(_number(item, "lag_events"))))
    version = body.get("bundle_version")
    return Readyz(
        ready=bool(body.get("ready", True)), region=str(body.get("region") or region),
        bundle_version=str(version) if version else None, redis_ok=bool(body.get("redis_ok", True)),
        stale=bool(freshness.get("stale", False)), error_rate=_number(body, "error_rate"),
        p99_ms=_number(body, "p99_ms"), qps=max(0.0, _number(body, "qps")),
        tier_mix=MappingProxyType(dict(sorted(mix.items()))), replication=tuple(lags),
        rollout=MappingProxyType(dict(body["rollout"])) if isinstance(body.get("rollout"), Mapping) else MappingProxyType({}),
    )


@dataclass(frozen=True, kw_only=True)
class HttpResult:
    """What one HTTP request gave: a status and decoded JSON, or an error text."""

    status: int = 0
    body: Any = None
    error: str = ""
    latency_ms: float = 0.0


def to_probe(*, region: str, readyz: HttpResult, homepage: HttpResult, at: float) -> CellReport:
    """The probe of one region from its two answers. Pure."""
    latency = homepage.latency_ms
    if readyz.error:
        return CellReport(region=region, probe=Probe.failed(at=at, error=f"readyz: {readyz.error}",
                                                            latency_ms=latency), readyz=None)
    try:
        info = parse_readyz(readyz.body, region=region)
    except ValueError as exc:
        return CellReport(region=region, probe=Probe.failed(at=at, error=str(exc), latency_ms=latency), readyz=None)
    if readyz.status != 200 or not info.ready:
        why = f"readyz: HTTP {readyz.status}" + ("" if info.ready else " (not ready)")
        return CellReport(region=region, probe=Probe.failed(at=at, error=why, latency_ms=latency), readyz=info)
    if homepage.error or homepage.status != 200 or not isinstance(homepage.body, Mapping):
        why = homepage.error or (f"HTTP {homepage.status}" if homepage.status != 200 else "not a JSON object")
        return CellReport(region=region, probe=Probe.failed(at=at, error=f"homepage: {why}", latency_ms=latency),
                          readyz=info)
    items = homepage.body.get("items")
    probe = Probe(
        ok=True, at=at, latency_ms=latency,
        bundle_version=info.bundle_version or (str(homepage.body.get("bundle_version") or "") or None),
        redis_ok=info.redis_ok, freshness_ok=not info.stale, error_rate=info.error_rate, p99_ms=info.p99_ms,
        homepage_nonempty=isinstance(items, list) and len(items) > 0,
        tier_served=str(homepage.body.get("tier") or "unknown"),
    )
    return CellReport(region=region, probe=probe, readyz=info)


def cell_urls(topology: Topology) -> dict[str, str]:
    """Base URL of every region's cell (the region's host: loopback, or its namespace's address)."""
    return {name: f"http://{topology.region_host(name)}:{r.http_port}" for name, r in sorted(topology.regions.items())}


class Prober:
    """Probes every cell concurrently; `probe_all(at)` never raises for a misbehaving cell."""

    def __init__(self, *, topology: Topology, timeout_s: float, client: httpx.Client | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.urls = cell_urls(topology)
        self.geography = {name: r.geography for name, r in topology.regions.items()}
        self.timeout_s = timeout_s
        self._client = client or httpx.Client(timeout=httpx.Timeout(timeout_s), trust_env=False)
        self._clock = clock
        self._pool = ThreadPoolExecutor(max_workers=max(2, 2 * len(self.urls)), thread_name_prefix="probe")

    def _get(self, url: str, params: Mapping[str, Any] | None = None) -> HttpResult:
        started = time.perf_counter()
        try:
            response = self._client.get(url, params=params, timeout=self.timeout_s)
        except httpx.TimeoutException:
            return HttpResult(error=f"timeout after {self.timeout_s * 1000:.0f} ms",
                              latency_ms=(time.perf_counter() - started) * 1000)
        except httpx.HTTPError as exc:
            return HttpResult(error=f"{type(exc).__name__}: {exc}"[:200],
                              latency_ms=(time.perf_counter() - started) * 1000)
        latency = (time.perf_counter() - started) * 1000
        try:
            body = response.json()
        except ValueError:
            body = None
        return HttpResult(status=response.status_code, body=body, latency_ms=latency)

    def probe_all(self, at: float | None = None) -> dict[str, CellReport]:
        """One round: every region's readyz and homepage in parallel. `at`: the time to stamp."""
        futures = {}
        for region, base in self.urls.items():
            params = {"user_id": probe_user_id(self.geography[region]), "count": PROBE_COUNT}
            futures[region] = (self._pool.submit(self._get, f"{base}/readyz"),
                               self._pool.submit(self._get, f"{base}{HOMEPAGE_PATH}", params))
        results = {region: (ready.result(), home.result()) for region, (ready, home) in futures.items()}
        stamp = self._clock() if at is None else at
        return {region: to_probe(region=region, readyz=ready, homepage=home, at=stamp)
                for region, (ready, home) in sorted(results.items())}

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._client.close()
