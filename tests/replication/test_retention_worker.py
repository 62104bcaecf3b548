"""The retention worker runs by itself: old identifiable events go without anyone typing a command,
its last run time is exported, and so is the erasure deadline of every geography."""
from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Callable

import pytest
from prometheus_client import generate_latest

from regions import redis_keys
from regions.errors import InputError
from regions.processes import wait_until
from replication.artifact_store import LocalArtifactStore
from replication.erasure_deadline import TOMBSTONES_READ_AT
from replication.manifest import build_manifest, write_manifest
from replication.retention_worker import RetentionWorker, RetentionWorkerSettings
from tests.replication.helpers import Stack, stack_factory  # noqa: F401

DAY = 86400.0


def _bundle(root: Path, *, version: str, tombstones_read_at: float) -> Path:
    root.mkdir(parents=True)
    (root / "popularity.json").write_text('["sku-1"]')
    write_manifest(root, build_manifest(root, bundle_version=version, created_at=time.time(), schema_version=1,
                                        data_watermark=0.0, metrics={TOMBSTONES_READ_AT: tombstones_read_at}))
    return root


def test_interval_must_be_positive() -> None:
    with pytest.raises(InputError) as bad:
        RetentionWorkerSettings(interval_s=0)
    assert bad.value.field == "interval_s"


def test_old_events_go_by_themselves_and_the_run_and_deadline_are_exported(stack_factory: Callable[..., Stack], tmp_path: Path) -> None:
    stack = stack_factory()
    c = stack.clients
    now = time.time()
    old_ms = int((now - 31 * DAY) * 1000)
    c["us-east"].xadd(redis_keys.EVENT_LOG, {"user_id": "us-1", "item_id": "sku-1"}, id=f"{old_ms}-0")
    c["us-east"].xadd(redis_keys.EVENT_LOG, {"user_id": "us-1", "item_id": "sku-2"})
    c["eu-west"].xadd(redis_keys.EVENT_LOG, {"user_id": "eu-1", "item_id": "sku-1"}, id=f"{old_ms}-0")
    # eu: one deletion 40 days ago that the current eu bundle (tombstones read 50 days ago) does not honour
    c["eu-west"].hset(redis_keys.TOMBSTONES, "eu-9", repr(now - 40 * DAY))
    store_root = tmp_path / "artifacts"
    eu = LocalArtifactStore(store_root / "geo" / "eu")
    eu.promote(eu.publish(_bundle(tmp_path / "b", version="20260101T000000Z-abcdef12", tombstones_read_at=now - 50 * DAY)))

    worker = RetentionWorker(topology=stack.topology, clients=c, artifacts_url=store_root.as_uri(),
                             settings=RetentionWorkerSettings(interval_s=0.2))
    stopped = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stopped.is_set,), kwargs={"tick_s": 0.05}, daemon=True)
    thread.start()
    try:
        wait_until(lambda: c["us-east"].xlen(redis_keys.EVENT_LOG) == 1 and c["eu-west"].xlen(redis_keys.EVENT_LOG) == 0,
                   timeout=10, what="retention to trim the 31-day-old events")
        wait_until(lambda: worker.last_run._value.get() > 0, timeout=10, what="the first run to finish")
        first = worker.last_run._value.get()
        wait_until(lambda: worker.last_run._value.get() > first, timeout=10, what="a second scheduled run")
    finally:
        stopped.set()
        thread.join(timeout=5)
    text = generate_latest(worker.registry).decode()
    assert worker.last_success._value.get() >= first > now - 60
    assert 'shopnow_erasure_overdue_users{geography="eu"} 1.0' in text
    assert 'shopnow_erasure_pending_users{geography="us"} 0.0' in text
    assert 'shopnow_retention_removed_total{region="us-east"} 1.0' in text
