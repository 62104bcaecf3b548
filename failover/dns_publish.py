"""The leader publishes every routing table to Route 53 (failover/route53.py: weighted records).

Configured from the environment (read by the runnables, never here: `dns_settings_from_env`):

    REGIONCTL_DNS_ZONE       hosted zone id (e.g. Z0123456789ABC); unset: no DNS publishing
    REGIONCTL_DNS_RECORD     the record name; one weighted set per geography: `<geo>.<record>`
    REGIONCTL_DNS_TARGETS    one endpoint per region: `us-east=192.0.2.10,us-west=192.0.2.20,...`
                             (an IP gives an A record, a name a CNAME)
    REGIONCTL_DNS_ENDPOINT   Route 53 endpoint URL (a local moto server in tests); default AWS

`DnsPublisher.offer(table)` hands the controller's current table to a worker thread, which
publishes the newest one offered. It is idempotent: a table whose weights (geos) equal those
last published makes no call at all. A temporary failure (throttling, network) is retried with
exponential backoff up to `attempts` times, and the table stays pending so the next offer tries
again; a permanent one (no such zone, invalid batch) is logged and not retried until the table
changes. Outcomes are counted in Prometheus metrics (`metrics_text`), served by the controller at
GET /metrics:

    shopnow_dns_publish_total{outcome="published"|"unchanged"|"failed"}
    shopnow_dns_publish_retries_total
    shopnow_dns_published_table_version
    shopnow_dns_last_publish_seconds     wall-clock time of the last successful publish
"""
from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge

from contracts.routing_table import parse_table
from failover.route53 import DEFAULT_TTL_S, PublishResult, publish_weights, read_weights
from regions.errors import InputError, PermanentError, TemporaryError
from regions.topology import Topology

log = logging.getLogger(__name__)

ENV_ZONE, ENV_RECORD, ENV_TARGETS, ENV_ENDPOINT = (
    "REGIONCTL_DNS_ZONE", "REGIONCTL_DNS_RECORD", "REGIONCTL_DNS_TARGETS", "REGIONCTL_DNS_ENDPOINT")


@dataclass(frozen=True, kw_only=True)
class DnsSettings:
    """Where and how to publish; each default carries its reason."""

    hosted_zone_id: str
    record_name: str
    region_targets: Mapping[str, str]
    endpoint_url: str | None = None
    ttl_s: int = DEFAULT_TTL_S
    attempts: int = 4
    """Route 53 throttles at 5 requests/s per account: four tries with backoff ride out a burst."""
    backoff_s: float = 0.25
    """0.25, 0.5, 1 s between tries: a region loss still reaches DNS within a few seconds."""
    timeout_s: float = 5.0
    """One Route 53 call; the controller's round never waits for it (the worker thread does)."""


def parse_targets(text: str, topology: Topology) -> dict[str, str]:
    """`us-east=192.0.2.10,us-west=...` -> {region: target}; every region of the topology needs one."""
    targets: dict[str, str] = {}
    for part in (p.strip() for p in text.split(",") if p.strip()):
        region, sep, target = part.partition("=")
        if not sep or not target.strip():
            raise InputError(ENV_TARGETS, f"{part!r} must be REGION=TARGET, e.g. us-east=192.0.2.10")
        if region.strip() not in topology.regions:
            raise InputError(ENV_TARGETS, f"unknown region {region.strip()!r}; known: {', '.join(sorted(topology.regions))}")
        targets[region.strip()] = target.strip()
    missing = sorted(set(topology.regions) - set(targets))
    if missing:
        raise InputError(ENV_TARGETS, f"no target for {', '.join(missing)}; give one endpoint per region")
    return targets


def dns_settings_from_env(environ: Mapping[str, str], topology: Topology) -> DnsSettings | None:
    """None when REGIONCTL_DNS_ZONE is unset (no DNS publishing); InputError naming the variable otherwise."""
    zone = environ.get(ENV_ZONE, "").strip()
    if not zone:
        return None
    record = environ.get(ENV_RECORD, "").strip()
    if not record.strip("."):
        raise InputError(ENV_RECORD, f"must name the record when {ENV_ZONE} is set, e.g. shop.example.com")
    return DnsSettings(hosted_zone_id=zone, record_name=record,
                       region_targets=parse_targets(environ.get(ENV_TARGETS, ""), topology),
                       endpoint_url=environ.get(ENV_ENDPOINT) or None)


def route53_client(settings: DnsSettings) -> Any:
    """A boto3 Route 53 client; botocore's own retries are off (ours are counted)."""
    import boto3
    from botocore.config import Config

    return boto3.client("route53", endpoint_url=settings.endpoint_url, region_name="us-east-1",
                        config=Config(retries={"max_attempts": 1}, connect_timeout=settings.timeout_s,
                                      read_timeout=settings.timeout_s))


def weights_key(table: Mapping[str, Any]) -> str:
    """What decides whether a table changes DNS: its geographies' weights, nothing else."""
    return json.dumps(table.get("geos") or {}, sort_keys=True, separators=(",", ":"))


@dataclass
class PublishState:
    published_key: str | None = None
    published_version: int = 0
    last_error: str = ""
    last_published_at: float | None = None
    calls: int = 0
    history: list[tuple[float, int]] = field(default_factory=list)
    """(when, table version) of each successful publish, newest last (at most 100 kept)."""


class DnsPublisher:
    """Publish the newest offered routing table (see the module docstring). Thread-safe."""

    def __init__(self, settings: DnsSettings, topology: Topology, *, client: Any = None,
                 sleep: Callable[[float], None] = time.sleep, registry: CollectorRegistry | None = None) -> None:
        self.settings, self.topology = settings, topology
        self._client = client
        self._sleep = sleep
        self.registry = registry or CollectorRegistry()
        self._outcomes = Counter("shopnow_dns_publish", "Routing tables offered to Route 53, by outcome",
                                 ["outcome"], registry=self.registry)
        self._retries = Counter("shopnow_dns_publish_retries", "Route 53 calls retried after a temporary error",
                                registry=self.registry)
        self._version = Gauge("shopnow_dns_published_table_version", "Routing table version in Route 53 now",
                              registry=self.registry)
        self._last = Gauge("shopnow_dns_last_publish_seconds", "Wall-clock time of the last successful publish",
                           registry=self.registry)
        self.state = PublishState()
        self._pending: Mapping[str, Any] | None = None
        self._refused_key: str | None = None
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = route53_client(self.settings)
        return self._client

    # -- the one publish, with retries ---------------------------------------------------------
    def publish(self, table: Mapping[str, Any], *, force: bool = False) -> str:
        """Publish `table` now: "unchanged" (no call), "published" or "failed". `force` publishes
        even an unchanged table (the operator's `regionctl dns publish`)."""
        key = weights_key(table)
        with self._lock:
            if not force and key in (self.state.published_key, self._refused_key):
                self._outcomes.labels("unchanged").inc()
                return "unchanged"
        parsed = parse_table(table, self.topology)
        delay = self.settings.backoff_s
        for attempt in range(1, self.settings.attempts + 1):
            try:
                with self._lock:
                    self.state.calls += 1
                result: PublishResult = publish_weights(
                    parsed, client=self.client, hosted_zone_id=self.settings.hosted_zone_id,
                    record_name=self.settings.record_name, region_targets=self.settings.region_targets,
                    ttl=self.settings.ttl_s)
            except TemporaryError as exc:
                self.state.last_error = str(exc)
                if attempt == self.settings.attempts:
                    break
                self._retries.inc()
                self._sleep(delay)
                delay *= 2
                continue
            except (PermanentError, InputError) as exc:
                self.state.last_error = str(exc)
                with self._lock:
                    self._refused_key = key  # not again until the table changes
                log.error("Route 53 refused routing table v%s: %s", parsed.version, exc)
                self._outcomes.labels("failed").inc()
                return "failed"
            now = time.time()
            with self._lock:
                self.state.published_key, self.state.published_version = key, parsed.version
                self.state.last_error, self.state.last_published_at = "", now
                self.state.history = [*self.state.history[-99:], (now, parsed.version)]
                self._refused_key = None
            self._version.set(parsed.version)
            self._last.set(now)
            self._outcomes.labels("published").inc()
            log.info("Route 53: published routing table v%s (change %s)", parsed.version, result.change_id)
            return "published"
        log.warning("Route 53: routing table v%s not published after %d tries: %s", parsed.version,
                    self.settings.attempts, self.state.last_error)
        self._outcomes.labels("failed").inc()
        return "failed"

    def read(self) -> dict[str, dict[str, int]]:
        """{geography: {region: weight}} in Route 53 now."""
        return read_weights(client=self.client, hosted_zone_id=self.settings.hosted_zone_id,
                            record_name=self.settings.record_name)

    # -- the worker ----------------------------------------------------------------------------
    def offer(self, table: Mapping[str, Any] | None) -> None:
        """Hand the current table to the worker (cheap; the controller calls it every round)."""
        if not table:
            return
        with self._lock:
            if weights_key(table) in (self.state.published_key, self._refused_key) and self._pending is None:
                self._outcomes.labels("unchanged").inc()
                return
            self._pending = table
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(1.0)
            self._wake.clear()
            with self._lock:
                table, self._pending = self._pending, None
            if table is None:
                continue
            try:
                outcome = self.publish(table)
            except Exception:  # a bug must not stop publishing: log and keep the table pending
                log.exception("Route 53 publishing failed")
                outcome = "failed"
            if outcome == "failed" and weights_key(table) != self._refused_key:
                with self._lock:  # temporary trouble: try again with the next offer (or this one)
                    self._pending = self._pending or table

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="dns-publisher", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=self.settings.timeout_s * 2)

    def status(self) -> dict[str, Any]:
        with self._lock:
            return {"zone": self.settings.hosted_zone_id, "record": self.settings.record_name,
                    "published_version": self.state.published_version,
                    "last_published_at": self.state.last_published_at, "last_error": self.state.last_error,
                    "pending": self._pending is not None, "calls": self.state.calls}
