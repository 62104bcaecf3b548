"""A bounded background sampler: what the control plane and the cells said, every 0.5 s.

`Sampler(read)` calls `read()` on a thread every `interval_s` and keeps at most `max_samples`
samples (the oldest are dropped and counted). A failing read is recorded as `{"t", "error"}`,
never raised: a game day must not stop because one probe of the stack failed. The clock and the
wait are constructor arguments so that tests need no real time.

`stack_reader(ctx)` is the reader of a game day: the routing table's weights (control store key
`routing/table`) and each cell's tier mix (`/readyz`). `weights_of(table)` is pure.
"""
from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import httpx

from chaos.context import StackContext
from contracts.store_keys import TABLE_KEY

Sample = dict[str, Any]


@dataclass(frozen=True)
class SamplerSettings:
    interval_s: float = 0.5
    """Twice a second resolves a failover that the controller completes in a few seconds."""
    max_samples: int = 7200
    """One hour at 0.5 s (the longest load run); memory stays bounded whatever the run does."""
    http_timeout_s: float = 0.3
    """A cell that does not answer /readyz in 300 ms is recorded as unreachable for that sample."""


class Sampler:
    """Calls `read()` every `settings.interval_s` on a daemon thread until `stop()`."""

    def __init__(self, read: Callable[[], Mapping[str, Any]], *, settings: SamplerSettings = SamplerSettings(),
                 clock: Callable[[], float] = time.time) -> None:
        if settings.interval_s <= 0 or settings.max_samples < 1:
            raise ValueError("interval_s must be > 0 and max_samples >= 1")
        self._read = read
        self._settings = settings
        self._clock = clock
        self._samples: deque[Sample] = deque(maxlen=settings.max_samples)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.dropped = 0

    def sample_once(self) -> Sample:
        """Take one sample now (the thread calls this; tests may too)."""
        t = self._clock()
        try:
            sample: Sample = {"t": t, **self._read()}
        except Exception as exc:  # recorded, not raised: see the module docstring
            sample = {"t": t, "error": f"{type(exc).__name__}: {exc}"}
        with self._lock:
            if len(self._samples) == self._samples.maxlen:
                self.dropped += 1
            self._samples.append(sample)
        return sample

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample_once()
            self._stop.wait(self._settings.interval_s)

    def start(self) -> "Sampler":
        if self._thread is not None:
            raise RuntimeError("a sampler is started once")
        self._thread = threading.Thread(target=self._run, name="chaos-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> list[Sample]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        return self.samples()

    def samples(self) -> list[Sample]:
        with self._lock:
            return list(self._samples)


def weights_of(table: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    """{geography: {region: weight}} from a routing table document (see docs/interfaces.md)."""
    geos = table.get("geos") if isinstance(table, Mapping) else None
    if not isinstance(geos, Mapping):
        return {}
    out: dict[str, dict[str, float]] = {}
    for geo, body in geos.items():
        regions = body.get("regions", {}) if isinstance(body, Mapping) else {}
        out[str(geo)] = {str(r): float(w) for r, w in regions.items() if isinstance(w, (int, float))}
    return out


def stack_reader(ctx: StackContext, *, settings: SamplerSettings = SamplerSettings()) -> Callable[[], Sample]:
    """A reader for Sampler: routing weights and table version, and each cell's tier mix."""
    from failover.control_stores import store_from_url

    store = store_from_url(ctx.control_store_url)
    client = httpx.Client(timeout=settings.http_timeout_s, trust_env=False)

    def read() -> Sample:
        sample: Sample = {"weights": {}, "table_version": None, "cells": {}}
        current = store.get(TABLE_KEY)
        if current is not None:
            table = json.loads(current.text)
            sample["weights"] = weights_of(table)
            sample["table_version"] = table.get("version")
            sample["fail_static"] = bool(table.get("fail_static", False))
        for region in ctx.topology.regions:
            try:
                body = client.get(ctx.cell_url(region) + "/readyz").json()
                sample["cells"][region] = {"ready": body.get("ready"), "tier_mix": body.get("tier_mix"),
                                           "bundle_version": body.get("bundle_version")}
            except (httpx.HTTPError, ValueError):
                sample["cells"][region] = {"ready": False, "tier_mix": None}
        return sample

    read.close = lambda: (client.close(), store.close())  # type: ignore[attr-defined]
    return read
