"""The retention worker: retention (replication.retention) on a schedule, in the stack, by itself.

One process for the stack (`python -m regionctl.worker_main retention`, started by `regionctl up`)
runs `run_retention` over every region every `interval_s`, trimming (default) or pseudonymising
identifiable events older than 30 days, and after each run computes the 30-day erasure deadline
of every geography (replication.erasure_deadline) from the regions' tombstones and the
geography's current bundle. A region that cannot be reached is reported and retried next run.

Metrics (on its own registry, served by the worker's --metrics-port):
    shopnow_retention_last_run_timestamp_seconds        when the last run finished (with or without errors)
    shopnow_retention_last_success_timestamp_seconds    when the last run reached every region
    shopnow_retention_removed_total{region}             entries trimmed or archived
    shopnow_erasure_pending_users{geography}, shopnow_erasure_overdue_users{geography},
    shopnow_erasure_next_due_timestamp_seconds{geography}   (replication.erasure_deadline)
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge

from regions import redis_keys
from regions.errors import InputError, ShopNowError
from regions.topology import Topology
from replication.erasure_deadline import ErasureStatus, erasure_status
from replication.geo_artifacts import current_bundle, open_geo_store
from replication.redis_io import Redis, RedisError
from replication.retention import RetentionReport, RetentionSettings, run_retention
from replication.tombstones import deletion_time

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetentionWorkerSettings:
    interval_s: float = 3600.0
    """Hourly: an event stays identifiable at most 30 days + 1 hour, and each run is one XTRIM MINID
    per stream (cheap); the erasure-deadline gauges are at most an hour old, against a 30-day deadline."""

    def __post_init__(self) -> None:
        if not self.interval_s > 0:
            raise InputError("interval_s", f"must be a positive number of seconds, got {self.interval_s!r}")


class RetentionWorker:
    def __init__(self, *, topology: Topology, clients: Mapping[str, Redis], artifacts_url: str | None,
                 retention: RetentionSettings = RetentionSettings(), settings: RetentionWorkerSettings = RetentionWorkerSettings(),
                 key: bytes | None = None, registry: CollectorRegistry | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        if retention.mode == "pseudonymise" and not key:
            raise InputError("REGIONCTL_RETENTION_KEY", "pseudonymise mode needs a secret key in this environment variable")
        self.topology, self.clients, self.artifacts_url = topology, clients, artifacts_url
        self.retention, self.settings, self.key, self.clock = retention, settings, key, clock
        r = registry if registry is not None else CollectorRegistry()
        self.registry = r
        self.last_run = Gauge("shopnow_retention_last_run_timestamp_seconds", "When the last retention run finished.", registry=r)
        self.last_success = Gauge("shopnow_retention_last_success_timestamp_seconds",
                                  "When the last retention run that reached every region finished.", registry=r)
        self.removed = Counter("shopnow_retention_removed", "Entries trimmed or archived by retention.", ["region"], registry=r)
        self.pending = Gauge("shopnow_erasure_pending_users", "Deletions whose user the current bundle may still hold.",
                             ["geography"], registry=r)
        self.overdue = Gauge("shopnow_erasure_overdue_users", "Pending deletions past their 30-day deadline.",
                             ["geography"], registry=r)
        self.next_due = Gauge("shopnow_erasure_next_due_timestamp_seconds",
                              "Earliest deadline of a pending deletion (0 when none is pending).", ["geography"], registry=r)

    def _tombstones(self, geography: str) -> dict[str, float]:
        out: dict[str, float] = {}
        for region in self.topology.regions_in(geography):
            for user, when in self.clients[region.name].hscan_iter(redis_keys.TOMBSTONES, count=1000):
                name = user.decode() if isinstance(user, bytes) else str(user)
                at = deletion_time(when) or 0.0
                out[name] = min(at, out.get(name, at))
        return out

    def erasure(self, now: float) -> list[ErasureStatus]:
        statuses = []
        for geo in sorted(self.topology.geographies):
            try:
                metrics: Mapping[str, Any] | None = None
                if self.artifacts_url:
                    _, metrics = current_bundle(open_geo_store(self.artifacts_url, geo, topology=self.topology))
                status = erasure_status(geo, self._tombstones(geo), bundle_metrics=metrics, now=now)
            except (ShopNowError, RedisError) as exc:
                log.warning("erasure deadline of %s not computed: %s", geo, exc)
                continue
            self.pending.labels(geography=geo).set(status.pending)
            self.overdue.labels(geography=geo).set(status.overdue)
            self.next_due.labels(geography=geo).set(status.next_due_by or 0.0)
            statuses.append(status)
        return statuses

    def run_once(self) -> RetentionReport:
        report = run_retention(self.topology, self.clients, self.clock(), settings=self.retention, key=self.key)
        for s in report.streams:
            if s.removed:
                self.removed.labels(region=s.region).inc(s.removed)
        for error in report.errors:
            log.warning("%s", error)
        self.erasure(self.clock())
        finished = self.clock()
        self.last_run.set(finished)
        if not report.errors:
            self.last_success.set(finished)
        log.info("retention run: %d entries removed before %s, %d errors", report.removed, report.cutoff_id, len(report.errors))
        return report

    def run(self, stopped: Callable[[], bool], *, tick_s: float = 0.5) -> None:
        """Run now, then every interval_s, until `stopped()`."""
        next_run = time.monotonic()
        while not stopped():
            if time.monotonic() >= next_run:
                try:
                    self.run_once()
                except (ShopNowError, RedisError) as exc:
                    log.warning("retention run failed: %s (retried in %.0f s)", exc, self.settings.interval_s)
                next_run = time.monotonic() + self.settings.interval_s
            time.sleep(min(tick_s, self.settings.interval_s))


__all__ = ["RetentionWorker", "RetentionWorkerSettings"]
