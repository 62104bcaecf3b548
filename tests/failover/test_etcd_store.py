"""What only the etcd backend has: URLs, lease TTLs, endpoint failover, unknown write outcomes,
watch. The key/value and lease contract is in test_control_store.py (the same tests for every
backend, etcd included). Everything here runs against real etcd members (tests/failover/conftest.py)."""
from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest

from failover.control_store import FenceRejected
from failover.control_stores import store_from_url
from failover.etcd_gateway import prefix_end
from failover.etcd_store import EtcdStore, lease_ttl_s
from failover.leadership import Leadership
from regions.errors import InputError, TemporaryError
from regions.etcd_cluster import Cluster, plan_members, start_cluster
from regions.processes import free_port


@pytest.fixture
def store(etcd_cluster: Cluster) -> Iterator[EtcdStore]:
    from tests.failover.etcd_harness import etcd_store

    yield from (s for s, _ in etcd_store(etcd_cluster))


@pytest.fixture
def own_cluster(tmp_path: Path) -> Iterator[Cluster]:
    """A cluster of this test alone (members get killed)."""
    cluster = start_cluster(tmp_path / "etcd")
    yield cluster
    cluster.stop()


class BlackHole:
    """A loopback port that accepts connections and never answers (a hung member)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]

    def close(self) -> None:
        self.sock.close()


@pytest.mark.parametrize(("ttl", "expected"), [(0.5, 2), (2, 2), (3.0, 3), (3.2, 4), (60, 60)])
def test_lease_ttl_is_whole_seconds_of_at_least_etcds_minimum(ttl: float, expected: int) -> None:
    assert lease_ttl_s(ttl) == expected


@pytest.mark.parametrize(("prefix", "end"), [(b"a", b"b"), (b"a/\xff", b"a0"), (b"\xff\xff", b"\x00"), (b"", b"\x00")])
def test_prefix_end(prefix: bytes, end: bytes) -> None:
    assert prefix_end(prefix) == end


def test_url_names_every_member_and_a_prefix() -> None:
    store = store_from_url("etcd://127.0.0.1:2379,localhost:22379,127.0.0.1:2379?prefix=team/")
    assert isinstance(store, EtcdStore)
    assert store.endpoints == ("http://127.0.0.1:2379", "http://127.0.0.1:22379") and store.prefix == "team/"
    store.close()


@pytest.mark.parametrize("url", ["etcd://", "etcd://10.0.0.1:2379", "etcd://127.0.0.1:notaport", "etcd://127.0.0.1",
                                 "etcd://127.0.0.1:2379,", "etcd://127.0.0.1:70000", "etcd://example.com:2379"])
def test_bad_etcd_urls_are_input_errors_naming_the_store(url: str) -> None:
    with pytest.raises(InputError) as info:
        store_from_url(url)
    assert info.value.field == "store"


def test_bad_prefix_names_the_field() -> None:
    with pytest.raises(InputError) as info:
        EtcdStore("127.0.0.1:2379", prefix="/abs/")
    assert info.value.field == "prefix"


def test_no_member_reachable_is_a_temporary_error_naming_each() -> None:
    ports = [free_port(), free_port()]
    with EtcdStore(",".join(f"127.0.0.1:{p}" for p in ports)) as store:
        with pytest.raises(TemporaryError) as info:
            store.get("k")
    assert all(str(p) in str(info.value) for p in ports)


def test_reads_move_on_from_a_hung_member_but_writes_do_not_resend(etcd_cluster: Cluster) -> None:
    hole = BlackHole()
    try:
        endpoints = f"127.0.0.1:{hole.port},{etcd_cluster.endpoints}"
        with EtcdStore(endpoints, prefix=f"hung-{time.monotonic_ns()}/") as store:
            # a write sent to a member that then hangs may have been applied: never re-sent elsewhere,
            # so a compare-and-set cannot report a lost race that it actually won
            with pytest.raises(TemporaryError) as info:
                store.put("once", "v", cas=0)
            assert "may or may not" in str(info.value)
            assert store.get("once") is None  # the read timed out on the hung member, then moved on
            assert store.put("once", "v", cas=0) is True  # the client now prefers the member that answered
    finally:
        hole.close()


def test_a_member_down_is_skipped(own_cluster: Cluster) -> None:
    leader = own_cluster.leader()
    follower = next(m for m in own_cluster.members if m != leader)  # (killing the leader: test_etcd_gamedays)
    others = [m for m in own_cluster.members if m != follower]
    endpoints = ",".join(f"127.0.0.1:{m.client_port}" for m in [follower, *others])
    with EtcdStore(endpoints) as store:
        assert store.put("k", "1") is True
        own_cluster.kill(follower.name)  # the member the client uses first
        assert store.put("k", "2") is True
        assert store.get("k").text == "2"  # type: ignore[union-attr]
        assert store.acquire_lease("ctl", "A", 3) is True


def test_lease_runs_out_by_etcds_clock_and_the_deposed_holder_is_fenced(store: EtcdStore) -> None:
    """Real TTL expiry, no revoke: A stops renewing, B takes over, A's late write is refused."""
    a = Leadership(store, holder="A", ttl_s=2)
    b = Leadership(store, holder="B", ttl_s=2)
    assert a.tick() is True
    fence_a = a.fence()
    assert a.fenced_put("routing/table", "from A") is True
    started = time.monotonic()
    while not b.tick():  # A is paused (no renewals) from here on
        assert time.monotonic() - started < 10, "the lease never ran out"
        time.sleep(0.1)
    assert b.state.term is not None and b.state.term > fence_a.term
    with pytest.raises(FenceRejected):
        store.fenced_put("routing/table", "late write from A", fence=fence_a)
    assert store.get("routing/table").text == "from A"  # type: ignore[union-attr]
    assert b.fenced_put("routing/table", "from B") is True


def test_watch_times_out_without_a_change(store: EtcdStore) -> None:
    store.put("w", "1")
    version = store.get("w").version  # type: ignore[union-attr]
    started = time.monotonic()
    assert store.watch("w", after_version=version, timeout_s=0.3) is False
    assert time.monotonic() - started >= 0.25


def test_watch_wakes_on_a_change_and_misses_none_made_before_it(store: EtcdStore) -> None:
    store.put("w", "1")
    version = store.get("w").version  # type: ignore[union-attr]
    store.put("w", "2")  # changed after the read, before the watch
    assert store.watch("w", after_version=version, timeout_s=5) is True
    now = store.get("w").version  # type: ignore[union-attr]
    writer = threading.Timer(0.2, lambda: store.put("w", "3"))
    writer.start()
    started = time.monotonic()
    assert store.watch("w", after_version=now, timeout_s=5) is True
    writer.join(timeout=10)
    assert time.monotonic() - started < 4  # woke by the write, not by the timeout
    assert store.watch("absent", after_version=0, timeout_s=0.2) is False
    deleter = threading.Timer(0.2, lambda: store.delete("w"))
    deleter.start()
    assert store.watch("w", after_version=store.get("w").version, timeout_s=5) is True  # type: ignore[union-attr]
    deleter.join(timeout=10)  # the watch can wake before the delete's reply is read: the store closes after it


def test_watch_with_no_member_is_a_temporary_error() -> None:
    with EtcdStore(f"127.0.0.1:{free_port()}") as store:
        with pytest.raises(TemporaryError):
            store.watch("w", after_version=0, timeout_s=0.5)


def test_plan_members_wants_an_odd_count() -> None:
    assert len(plan_members(3)) == 3
    with pytest.raises(InputError) as info:
        plan_members(2)
    assert info.value.field == "members"
