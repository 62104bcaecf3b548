"""Contract tests of the control store, the SAME for every backend.

The sqlite param runs everywhere (a real SQLite file, a controlled clock). The etcd param runs
everywhere too, against a real 3-member etcd cluster started once per session (tests/failover/
conftest.py), each test on its own key prefix. The consul param
runs when CONSUL_HTTP_ADDR names a Consul agent and is skipped otherwise: no Consul binary can
be installed on the development machines. The consul-fake param runs the Consul backend and the
real py-consul client against tests/failover/consul_fake.py, an HTTP stand-in for the agent
(see its docstring for what it does not model).
"""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from failover.control_store import ControlStore, Fence, FenceRejected, Versioned
from failover.control_stores import store_from_url
from failover.sqlite_store import SqliteStore, translate_error
from tests.failover.consul_fake import FakeConsul
from regions.errors import InputError, PermanentError, TemporaryError

NO_CONSUL = "CONSUL_HTTP_ADDR not set: no Consul agent on this machine"


class FakeClock:
    """Seconds that move only when the test says so."""

    def __init__(self, start: float = 1_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Harness:
    store: ControlStore
    url: str
    expire: Callable[[str, str], None]
    """Make lease (name, holder) end as if its TTL ran out."""


def _sqlite_harness(tmp_path: Path) -> Iterator[Harness]:
    clock = FakeClock()
    path = tmp_path / "control.db"
    store = SqliteStore(path, clock=clock)
    yield Harness(store=store, url=f"sqlite://{path}", expire=lambda name, holder: clock.advance(3600))
    store.close()


def _consul_harness(addr: str | None) -> Iterator[Harness]:
    if not addr:
        pytest.skip(NO_CONSUL)
    from failover.consul_store import ConsulStore

    host, _, port = addr.split("//")[-1].partition(":")
    prefix = f"shopnow-test-{uuid.uuid4().hex[:8]}/"
    store = ConsulStore(host=host, port=int(port or 8500), prefix=prefix)

    def expire(name: str, holder: str) -> None:  # what a TTL running out does: the session ends
        store._client.session.destroy(store._sessions[(name, holder)])

    yield Harness(store=store, url=f"consul://{host}:{port or 8500}?prefix={prefix}", expire=expire)
    store._client.kv.delete(prefix, recurse=True)
    store.close()


def _etcd_harness(request: pytest.FixtureRequest) -> Iterator[Harness]:
    from tests.failover.etcd_harness import etcd_store, revoke_lease

    for store, url in etcd_store(request.getfixturevalue("etcd_cluster")):
        yield Harness(store=store, url=url, expire=lambda name, holder: revoke_lease(store, name))


@pytest.fixture(params=["sqlite", "etcd", "consul", "consul-fake"])
def harness(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
    if request.param == "sqlite":
        yield from _sqlite_harness(tmp_path)
    elif request.param == "etcd":
        yield from _etcd_harness(request)
    elif request.param == "consul":
        yield from _consul_harness(os.environ.get("CONSUL_HTTP_ADDR"))
    else:  # the HTTP stand-in of tests/failover/consul_fake.py: real py-consul, not a real agent
        fake = FakeConsul()
        try:
            yield from _consul_harness(f"127.0.0.1:{fake.port}")
        finally:
            fake.close()


# -- keys, values, versions ---------------------------------------------------------------------
def test_get_absent_is_none(harness: Harness) -> None:
    assert harness.store.get("nothing/here") is None


def test_put_then_get_returns_bytes_and_a_version(harness: Harness) -> None:
    assert harness.store.put("a/b", b"\x00\xffraw") is True
    assert harness.store.put("a/text", "héllo") is True
    raw, text = harness.store.get("a/b"), harness.store.get("a/text")
    assert raw is not None and raw.value == b"\x00\xffraw" and raw.version > 0
    assert text is not None and text.text == "héllo" and text.value == "héllo".encode()


def test_versions_only_grow_even_across_delete_and_recreate(harness: Harness) -> None:
    store = harness.store
    store.put("k", "1")
    first = store.get("k")
    store.put("other", "x")
    store.put("k", "2")
    second = store.get("k")
    store.delete("k")
    store.put("k", "3")
    third = store.get("k")
    assert first and second and third
    assert first.version < second.version < third.version


def test_cas_zero_writes_only_if_absent(harness: Harness) -> None:
    assert harness.store.put("once", "first", cas=0) is True
    assert harness.store.put("once", "second", cas=0) is False
    assert harness.store.get("once") == Versioned(b"first", harness.store.get("once").version)  # type: ignore[union-attr]


def test_cas_with_version_succeeds_only_at_that_version(harness: Harness) -> None:
    store = harness.store
    store.put("cfg", "v1")
    seen = store.get("cfg")
    assert seen is not None
    assert store.put("cfg", "v2", cas=seen.version) is True
    assert store.put("cfg", "v3", cas=seen.version) is False  # stale version
    now = store.get("cfg")
    assert now is not None and now.text == "v2" and now.version > seen.version


def test_delete(harness: Harness) -> None:
    store = harness.store
    assert store.delete("ghost") is False
    store.put("k", "v")
    seen = store.get("k")
    assert seen is not None
    store.put("k", "v2")
    assert store.delete("k", cas=seen.version) is False  # stale: the key stays
    assert store.get("k") is not None
    assert store.delete("k") is True
    assert store.get("k") is None


def test_list_by_prefix_in_key_order(harness: Harness) -> None:
    store = harness.store
    for key in ("j/2", "j/10", "j/1", "jx", "other/j/1"):
        store.put(key, key)
    listed = harness.store.list("j/")
    assert list(listed) == ["j/1", "j/10", "j/2"]
    assert {k: v.text for k, v in listed.items()} == {"j/1": "j/1", "j/10": "j/10", "j/2": "j/2"}
    assert set(store.list("")) >= {"j/1", "j/10", "j/2", "jx", "other/j/1"}
    assert store.list("none/") == {}


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda s: s.get(""), "key"),
        (lambda s: s.put("/abs", "v"), "key"),
        (lambda s: s.put("k" * 513, "v"), "key"),
        (lambda s: s.put("k", 12), "value"),
        (lambda s: s.put("k", "v", cas=-1), "cas"),
        (lambda s: s.put("k", "v", cas=True), "cas"),
        (lambda s: s.delete("k", cas=0), "cas"),
        (lambda s: s.acquire_lease("lease", "A", 0), "ttl_s"),
        (lambda s: s.acquire_lease("lease", "A", -1.0), "ttl_s"),
        (lambda s: s.acquire_lease("lease", "", 1.0), "holder"),
        (lambda s: s.acquire_lease("", "A", 1.0), "name"),
    ],
)
def test_bad_input_names_the_field(harness: Harness, call: Callable[[ControlStore], object], field: str) -> None:
    with pytest.raises(InputError) as info:
        call(harness.store)
    assert info.value.field == field


# -- leases -------------------------------------------------------------------------------------
def test_lease_is_exclusive_and_term_grows_with_each_new_holder(harness: Harness) -> None:
    store = harness.store
    assert store.lease_holder("ctl") is None
    assert store.acquire_lease("ctl", "A", 10) is True
    first = store.lease_holder("ctl")
    assert first is not None and first.holder == "A"
    assert store.acquire_lease("ctl", "B", 10) is False
    assert store.acquire_lease("ctl", "A", 10) is True  # its own lease: kept, same term
    assert store.lease_holder("ctl").term == first.term  # type: ignore[union-attr]
    assert store.renew_lease("ctl", "A", 10) is True
    assert store.renew_lease("ctl", "B", 10) is False
    assert store.release_lease("ctl", "B") is False
    assert store.release_lease("ctl", "A") is True
    assert store.lease_holder("ctl") is None
    assert store.acquire_lease("ctl", "B", 10) is True
    second = store.lease_holder("ctl")
    assert second is not None and second.holder == "B" and second.term > first.term


def test_expired_lease_goes_to_the_next_holder(harness: Harness) -> None:
    store = harness.store
    assert store.acquire_lease("ctl", "A", 10)
    term_a = store.lease_holder("ctl").term  # type: ignore[union-attr]
    harness.expire("ctl", "A")
    assert store.lease_holder("ctl") is None
    assert store.renew_lease("ctl", "A", 10) is False
    assert store.acquire_lease("ctl", "B", 10) is True
    lease = store.lease_holder("ctl")
    assert lease is not None and lease.holder == "B" and lease.term > term_a


def test_fenced_put_refuses_a_deposed_holder(harness: Harness) -> None:
    store = harness.store
    store.acquire_lease("ctl", "A", 10)
    fence_a = Fence(lease="ctl", holder="A", term=store.lease_holder("ctl").term)  # type: ignore[union-attr]
    assert store.fenced_put("weights", "A-1", fence=fence_a) is True
    harness.expire("ctl", "A")
    store.acquire_lease("ctl", "B", 10)
    fence_b = Fence(lease="ctl", holder="B", term=store.lease_holder("ctl").term)  # type: ignore[union-attr]
    with pytest.raises(FenceRejected) as info:
        store.fenced_put("weights", "A-2", fence=fence_a)
    assert info.value.current is not None and info.value.current.holder == "B"
    assert store.get("weights").text == "A-1"  # type: ignore[union-attr]
    assert store.fenced_put("weights", "B-1", fence=fence_b) is True
    assert store.fenced_put("weights", "B-2", fence=fence_b, cas=0) is False  # CAS fails, fence holds
    assert store.get("weights").text == "B-1"  # type: ignore[union-attr]


def test_fenced_put_with_a_wrong_term_is_refused(harness: Harness) -> None:
    store = harness.store
    store.acquire_lease("ctl", "A", 10)
    term = store.lease_holder("ctl").term  # type: ignore[union-attr]
    with pytest.raises(FenceRejected):
        store.fenced_put("k", "v", fence=Fence(lease="ctl", holder="A", term=term + 1))
    assert store.get("k") is None


def test_cas_is_atomic_across_threads_with_separate_connections(harness: Harness) -> None:
    winners: list[int] = []
    barrier = threading.Barrier(6)

    def contender(n: int) -> None:
        with store_from_url(harness.url) as store:
            barrier.wait()
            if store.put("race", str(n), cas=0):
                winners.append(n)

    threads = [threading.Thread(target=contender, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(winners) == 1
    assert harness.store.get("race").text == str(winners[0])  # type: ignore[union-attr]


_INCREMENTER = """
import sys
from failover.control_stores import store_from_url
from regions.errors import TemporaryError
store = store_from_url(sys.argv[1])
done = 0
while done < int(sys.argv[2]):
    try:
        seen = store.get("counter")
        if store.put("counter", str(int(seen.text) + 1), cas=seen.version):
            done += 1
    except TemporaryError:
        pass
"""


def test_cas_increments_from_several_processes_lose_nothing(harness: Harness) -> None:
    harness.store.put("counter", "0")
    procs = [subprocess.Popen([sys.executable, "-c", _INCREMENTER, harness.url, "15"]) for _ in range(3)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0]
    assert harness.store.get("counter").text == "45"  # type: ignore[union-attr]


# -- a model check: the store behaves like a dict with versions (sqlite, in memory) ---------------
_ops = st.lists(st.tuples(st.sampled_from(["put", "put_cas0", "put_cas_seen", "put_cas_stale", "delete"]),
                          st.sampled_from(["a", "b", "a/b"]), st.text(max_size=4)), max_size=30)


@settings(max_examples=60, deadline=None)
@given(ops=_ops)
def test_sqlite_store_matches_a_dict_model(ops: list[tuple[str, str, str]]) -> None:
    store, model = SqliteStore(":memory:"), {}
    for op, key, value in ops:
        seen = store.get(key)
        if op == "put":
            expected = True
            ok = store.put(key, value)
        elif op == "put_cas0":
            expected, ok = key not in model, store.put(key, value, cas=0)
        elif op == "put_cas_seen":
            expected, ok = True, store.put(key, value, cas=seen.version if seen else 0)
        elif op == "put_cas_stale":
            expected, ok = False, store.put(key, value, cas=seen.version + 10_000 if seen else 10_000)
        else:
            expected, ok = key in model, store.delete(key)
            model.pop(key, None)
        if op != "delete" and expected:
            model[key] = value
        assert ok is expected
        assert {k: v.text for k, v in store.list("").items()} == model
    store.close()


# -- URLs and errors ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("url", "path"),
    [("sqlite:///tmp/x/control.db", "/tmp/x/control.db"), ("sqlite://var/c.db", "var/c.db"),
     ("sqlite://:memory:", ":memory:")],
)
def test_sqlite_urls(url: str, path: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    url = url.replace("/tmp/x", str(tmp_path / "x"))
    with store_from_url(url) as store:
        assert isinstance(store, SqliteStore)
        assert store.path == path.replace("/tmp/x", str(tmp_path / "x"))
        store.put("k", "v")
        assert store.get("k").text == "v"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "url",
    ["", "control.db", "http://127.0.0.1:8500", "sqlite://", "consul://10.1.2.3:8500", "consul://example.com",
     "consul://127.0.0.1:notaport"],
)
def test_bad_store_urls_are_input_errors(url: str) -> None:
    with pytest.raises(InputError) as info:
        store_from_url(url)
    assert info.value.field == "store"


def test_sqlite_file_that_is_not_a_database_is_permanent(tmp_path: Path) -> None:
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(PermanentError) as info:
        SqliteStore(bad)
    assert str(bad) in str(info.value) and info.value.__cause__ is not None


def test_sqlite_write_lock_held_elsewhere_is_temporary(tmp_path: Path) -> None:
    from failover.sqlite_store import SqliteSettings

    path = tmp_path / "c.db"
    holder = SqliteStore(path)
    blocked = SqliteStore(path, settings=SqliteSettings(busy_timeout_s=0.05))
    holder._conn.execute("BEGIN IMMEDIATE")  # another process mid-transaction
    try:
        with pytest.raises(TemporaryError) as info:
            blocked.put("k", "v")
        assert info.value.__cause__ is not None
        assert blocked.get("k") is None  # readers are not blocked in WAL mode
    finally:
        holder._conn.execute("ROLLBACK")
    assert blocked.put("k", "v") is True


def test_translate_error_table() -> None:
    import sqlite3

    busy = sqlite3.OperationalError("database is locked")
    assert isinstance(translate_error(busy, op="put", path="p"), TemporaryError)
    other = sqlite3.DatabaseError("file is not a database")
    assert isinstance(translate_error(other, op="open", path="p"), PermanentError)


def test_sqlite_has_no_service_catalog(tmp_path: Path) -> None:
    with SqliteStore(tmp_path / "c.db") as store:
        assert store.register_service("cell", port=8101, http_check_url="http://127.0.0.1:8101/health") is False
