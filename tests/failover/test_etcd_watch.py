"""Watch, not poll: the edge's table watcher and the controllers' table follower on a real etcd
cluster follow routing/table by etcd's watch, and poll while the watch is broken. Also: the
propagation measurement (bench/bench_watch.py prints it) shown failing on a broken system."""
from __future__ import annotations

import json
import time
from typing import Iterator

import pytest
from fastapi.testclient import TestClient

from benchmarks.propagation import measure, summarize
from contracts.store_keys import TABLE_KEY
from edge.last_resort import LastResort
from edge.router import create_app
from edge.settings import EdgeSettings
from edge.table_watcher import TableWatcher
from failover.control_store import POLL, WATCH
from failover.etcd_store import EtcdStore
from failover.key_watch import KeyFollower
from regions.errors import InputError, TemporaryError
from regions.etcd_cluster import Cluster
from regions.processes import free_port, wait_until
from tests.edge.edge_fakes import stack_iter
from tests.failover.etcd_harness import etcd_store
from tests.failover.pure_builders import DEFAULT

SLOW_POLL_S = 0.3
"""The polling interval of these tests: long, so that a change seen sooner came by the watch."""


class Breakable(EtcdStore):
    """A real etcd store whose watch can be broken on purpose (every watch then raises)."""

    broken = False

    def watch(self, key: str, *, after_version: int, timeout_s: float) -> bool:
        if self.broken:
            raise TemporaryError("watch broken by the test")
        return super().watch(key, after_version=after_version, timeout_s=timeout_s)


@pytest.fixture
def store(etcd_cluster: Cluster) -> Iterator[Breakable]:
    for plain, _ in etcd_store(etcd_cluster):
        with Breakable(etcd_cluster.endpoints, prefix=plain.prefix) as breakable:
            yield breakable


def write_table(store: EtcdStore, version: int) -> None:
    store.put(TABLE_KEY, json.dumps({"version": version, "updated_at": time.time(), "geos": {}}))


def test_the_edge_follows_the_table_by_watch(store: Breakable) -> None:
    for stack in stack_iter({"us": ["us-east", "us-west"], "eu": ["eu-west"]}):
        app = create_app(topology=stack.topology, store=store, settings=EdgeSettings(poll_interval_s=SLOW_POLL_S),
                         last_resort=LastResort(items=("pop-1",), source="test"))
        with TestClient(app) as client:
            wait_until(lambda: client.get("/readyz").json()["table_follow"] == WATCH, timeout=10, what="watch mode")
            write_table(store, 7)
            wait_until(lambda: client.get("/readyz").json()["table_version"] == 7, timeout=10, what="version 7")
            assert client.get("/readyz").json()["table_follow"] == WATCH


def test_a_broken_watch_falls_back_to_polling_and_comes_back(store: Breakable) -> None:
    watcher = TableWatcher(store, DEFAULT, interval_s=SLOW_POLL_S)
    watcher.start()
    try:
        wait_until(lambda: watcher.state.follow == WATCH, timeout=10, what="watch mode")
        store.broken = True
        write_table(store, 3)  # wakes the open watch; the next one is refused
        wait_until(lambda: watcher.state.follow == POLL, timeout=10, what="poll mode")
        write_table(store, 4)
        wait_until(lambda: watcher.state.table.version == 4, timeout=10, what="version 4 by polling")
        store.broken = False
        wait_until(lambda: watcher.state.follow == WATCH, timeout=10, what="watch mode again")
        write_table(store, 5)
        wait_until(lambda: watcher.state.table.version == 5, timeout=10, what="version 5 by watch")
    finally:
        watcher.stop()


def test_the_controllers_follower_keeps_the_newest_value_and_the_last_one_when_reads_fail(store: Breakable) -> None:
    seen: list[int] = []
    follower = KeyFollower(store, TABLE_KEY, poll_interval_s=SLOW_POLL_S,
                           on_change=lambda f: seen.append(f.value.version if f.value else 0))
    follower.start()
    try:
        wait_until(lambda: follower.state.mode == WATCH, timeout=10, what="watch mode")
        write_table(store, 1)
        write_table(store, 2)
        wait_until(lambda: follower.state.value is not None and json.loads(follower.state.value.value)["version"] == 2,
                   timeout=10, what="version 2")
        assert seen == sorted(seen) and len(seen) >= 1
    finally:
        follower.stop()
    kept = follower.state.value
    with EtcdStore(f"127.0.0.1:{free_port()}") as nowhere:  # every read now fails: no member answers
        follower._store = nowhere
        assert follower.read_once().value == kept and "no etcd member" in follower.state.error


def test_propagation_is_measured_and_a_broken_watch_shows_in_it(store: Breakable) -> None:
    watched = measure(store, DEFAULT, writes=15, poll_interval_s=SLOW_POLL_S)
    assert (watched.writes, watched.missed, watched.follow) == (15, 0, WATCH)
    store.broken = True
    polled = measure(store, DEFAULT, writes=15, poll_interval_s=SLOW_POLL_S)
    assert polled.follow == POLL and polled.missed == 0
    # polling every 0.3 s cannot deliver most writes sooner than a fraction of the interval
    assert polled.p99_s >= SLOW_POLL_S * 0.6 and polled.p50_s > watched.p50_s


def test_summarize() -> None:
    result = summarize([0.01, 0.02, 0.03, 0.04], missed=1, follow=WATCH)
    assert (result.writes, result.missed, result.max_s) == (5, 1, 0.04)
    assert result.p50_s == pytest.approx(0.025) and 0.039 < result.p99_s <= 0.04
    with pytest.raises(InputError):
        summarize([], missed=3, follow=POLL)
