"""The cell's model bundle: load the current one through verification, watch for newer ones,
swap atomically, refuse bad ones and keep the last known good.

Blue-green: a new bundle is fetched, verified (every checksum, schema version, semantic checks)
and loaded beside the serving one; only then is the reference swapped (one attribute store, atomic
in CPython). Requests that started on the old bundle finish on it. A refused bundle changes
nothing; the refusal is remembered (so it is not fetched again and again) and reported by
/readyz and the `bundle_refusals_total` metric.

Last known good: every bundle that passed verification stays in the cell's local cache
(`<cache>/<version>`) and its version is written to `<cache>/last_good`; at start, when the
store's current bundle is refused or the store is unreachable, the cell loads that one (verified
again). With nothing usable at all the cell serves popularity from the list in the package.
"""
from __future__ import annotations

import logging
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from contracts.serving_plan import ServingPlan, parse_serving_plan
from regions.errors import ShopNowError, TemporaryError
from replication.artifact_store import ArtifactStore
from replication.manifest import Manifest
from replication.verifying import verify_bundle
from serving.bundle import LoadedBundle
from serving.bundle_checks import SEMANTIC_CHECKS
from serving.features import SCHEMA_VERSION

log = logging.getLogger(__name__)

LAST_GOOD = "last_good"


@dataclass(frozen=True)
class Refusal:
    version: str
    file: str
    check: str
    message: str
    at: float

    def to_dict(self) -> dict[str, object]:
        return {"version": self.version, "file": self.file, "check": self.check, "message": self.message, "at": self.at}


class BundleHolder:
    """Holds the serving bundle; `load_version` verifies, loads and swaps."""

    def __init__(self, *, store: ArtifactStore, cache_dir: Path, clock: Callable[[], float] = time.time,
                 on_swap: Callable[[LoadedBundle], None] = lambda _b: None,
                 on_refuse: Callable[[Refusal], None] = lambda _r: None,
                 on_plan: Callable[[ServingPlan, dict[str, LoadedBundle]], None] = lambda _p, _s: None,
                 extra_checks: tuple[Callable[[Path, Manifest], None], ...] = ()) -> None:
        self.store = store
        self.extra_checks = extra_checks
        """Checks beyond SEMANTIC_CHECKS (the cell's: serving.bundle_residency for its geography)."""
        self.cache_dir = cache_dir
        self.clock = clock
        self.bundle: LoadedBundle | None = None
        self.loaded_at: float | None = None
        self.refused: Refusal | None = None
        self.frozen = False
        """Chaos fault `freeze_index`: keep serving the loaded bundle, ignore newer ones (a stale index)."""
        self.store_error: str | None = None
        self.wanted: str | None = None
        """The store's current pointer at the last poll (what this cell should serve)."""
        self.plan = ServingPlan()
        """The geography's serving plan at the last poll (contracts.serving_plan)."""
        self.plan_error: str | None = None
        self.side: dict[str, LoadedBundle] = {}
        """Bundles held beside the serving one (the plan's candidate, experiment arms), each verified."""
        self._on_plan = on_plan
        self._on_swap = on_swap
        self._on_refuse = on_refuse
        self._refused_versions: set[str] = set()
        self._lock = threading.Lock()
        cache_dir.mkdir(parents=True, exist_ok=True)

    @property
    def version(self) -> str | None:
        bundle = self.bundle
        return bundle.version if bundle is not None else None

    def _verify_and_load(self, bundle_dir: Path, version: str) -> LoadedBundle:
        verify_bundle(bundle_dir, supported_schema_versions={SCHEMA_VERSION},
                      semantic_checks=(*SEMANTIC_CHECKS, *self.extra_checks))
        return LoadedBundle.load(bundle_dir, version=version)

    def _refuse(self, version: str, exc: BaseException) -> None:
        refusal = Refusal(
            version=version, file=str(getattr(exc, "file", "") or ""), check=str(getattr(exc, "check", "") or "load"),
            message=str(exc), at=self.clock(),
        )
        self.refused = refusal
        self._refused_versions.add(version)
        shutil.rmtree(self.cache_dir / version, ignore_errors=True)
        log.error("bundle %s refused: %s (file %s, check %s); keeping %s", version, exc, refusal.file, refusal.check, self.version)
        self._on_refuse(refusal)

    def _swap(self, bundle: LoadedBundle) -> None:
        self.bundle = bundle
        self.loaded_at = self.clock()
        (self.cache_dir / LAST_GOOD).write_text(bundle.version)
        log.info("serving bundle %s", bundle.version)
        self._on_swap(bundle)

    def load_version(self, version: str) -> bool:
        """Fetch, verify, load and swap `version`. False (and a recorded refusal) when refused.
        A version already held beside the serving one (a candidate) is switched to without reloading."""
        with self._lock:
            if version == self.version or version in self._refused_versions:
                return False
            held = self.side.get(version)
            if held is not None:
                self._swap(held)
                return True
            try:
                bundle_dir = self.store.fetch(version, self.cache_dir)
                bundle = self._verify_and_load(bundle_dir, version)
            except TemporaryError:
                raise
            except (ShopNowError, OSError, ValueError) as exc:
                self._refuse(version, exc)
                return False
            self._swap(bundle)
            return True

    def load_last_good(self) -> bool:
        """At start: the last bundle this cell verified, from its local cache (verified again)."""
        marker = self.cache_dir / LAST_GOOD
        if not marker.exists() or self.bundle is not None:
            return False
        version = marker.read_text().strip()
        try:
            bundle = self._verify_and_load(self.cache_dir / version, version)
        except (ShopNowError, OSError, ValueError) as exc:
            self._refuse(version, exc)
            return False
        self._swap(bundle)
        return True

    def _load_side(self, version: str) -> LoadedBundle | None:
        """Fetch and verify a bundle to hold beside the serving one; None (and a refusal) when refused."""
        if version in self._refused_versions:
            return None
        try:
            bundle_dir = self.store.fetch(version, self.cache_dir)
            return self._verify_and_load(bundle_dir, version)
        except TemporaryError:
            return None  # tried again at the next poll
        except (ShopNowError, OSError, ValueError) as exc:
            self._refuse(version, exc)
            return None

    def poll_plan(self) -> None:
        """Read the serving plan; load (verified) every bundle it names and drop those it no longer does."""
        try:
            plan = parse_serving_plan(self.store.serving_plan())
            self.plan_error = None
        except ShopNowError as exc:  # unreadable or malformed: keep the last plan
            self.plan_error = str(exc)
            return
        wanted = set(plan.versions())
        side = {v: b for v, b in self.side.items() if v in wanted}
        for version in sorted(wanted - set(side)):
            if self.bundle is not None and version == self.bundle.version:
                side[version] = self.bundle
                continue
            loaded = self._load_side(version)
            if loaded is not None:
                side[version] = loaded
        changed = plan != self.plan or side.keys() != self.side.keys()
        self.plan, self.side = plan, side
        if changed:
            log.info("serving plan r%d: candidate %s at %.2f%%, shadow %.2f%%, experiment %s; holding %s",
                     plan.revision, plan.candidate, plan.canary_percent, plan.shadow_percent,
                     plan.experiment.id if plan.experiment else None, sorted(side))
            self._on_plan(plan, dict(side))

    def poll(self) -> None:
        """One watch step: load the store's current bundle if it is new (unless frozen), then the plan."""
        if self.frozen and self.bundle is not None:
            return
        try:
            self._poll_current()
        finally:
            if self.bundle is not None:
                self.poll_plan()

    def _poll_current(self) -> None:
        try:
            current = self.store.current()
            self.store_error = None
            self.wanted = current
        except ShopNowError as exc:
            self.store_error = str(exc)
            if self.bundle is None:
                self.load_last_good()
            return
        if current is None or current == self.version:
            return
        try:
            loaded = self.load_version(current)
        except TemporaryError as exc:
            self.store_error = str(exc)
            loaded = False
        if not loaded and self.bundle is None:
            self.load_last_good()


class BundleWatcher(threading.Thread):
    """Polls the artifact store every `interval_s` in the background."""

    def __init__(self, holder: BundleHolder, *, interval_s: float = 2.0) -> None:
        super().__init__(name="bundle-watcher", daemon=True)
        self.holder = holder
        self.interval_s = interval_s
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(self.interval_s):
            try:
                self.holder.poll()
            except Exception:  # the watcher must never die; the error is logged and retried
                log.exception("bundle watch step failed")

    def stop(self) -> None:
        self.stopping.set()


__all__ = ["BundleHolder", "BundleWatcher", "Refusal"]
