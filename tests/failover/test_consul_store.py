"""What only the Consul backend has: session TTLs, service registration, error mapping, URLs.

The key/value and lease contract is in test_control_store.py (same tests for every backend).
Tests marked "agent" need a real Consul agent (CONSUL_HTTP_ADDR) and are skipped without one;
the others run against nothing (an unreachable port) or the HTTP stand-in of consul_fake.py.
"""
from __future__ import annotations

import os
from typing import Iterator

import pytest

from failover.consul_store import ConsulStore, _txn_failed_ops, session_ttl_s
from failover.control_store import Fence, FenceRejected
from failover.control_stores import store_from_url
from regions.errors import InputError, TemporaryError
from regions.processes import free_port
from tests.failover.consul_fake import FakeConsul

NO_CONSUL = "CONSUL_HTTP_ADDR not set: no Consul agent on this machine"


@pytest.fixture
def fake() -> Iterator[FakeConsul]:
    server = FakeConsul()
    yield server
    server.close()


@pytest.fixture
def agent_store() -> Iterator[ConsulStore]:
    addr = os.environ.get("CONSUL_HTTP_ADDR")
    if not addr:
        pytest.skip(NO_CONSUL)
    host, _, port = addr.split("//")[-1].partition(":")
    store = ConsulStore(host=host, port=int(port or 8500), prefix="shopnow-test-agent/")
    yield store
    store._client.kv.delete("shopnow-test-agent/", recurse=True)
    store.close()


@pytest.mark.parametrize(("ttl", "expected"), [(0.5, 10), (3.0, 10), (10, 10), (10.2, 11), (60, 60), (86400, 86400)])
def test_session_ttl_is_whole_seconds_within_consuls_bounds(ttl: float, expected: int) -> None:
    assert session_ttl_s(ttl) == expected


@pytest.mark.parametrize("ttl", [0, -3, 86401])
def test_session_ttl_out_of_range_is_an_input_error(ttl: float) -> None:
    with pytest.raises(InputError):
        session_ttl_s(ttl)


@pytest.mark.parametrize(
    ("message", "expected"),
    [('409 {"Results":null,"Errors":[{"OpIndex":0,"What":"lock not held"}]}', {0}),
     ('409 {"Errors":[{"OpIndex":1,"What":"cas failed"}]}', {1}),
     ("409 not json", None), ('500 {"Errors":[]}', None)],
)
def test_failed_transaction_operations_are_read_from_the_409_body(message: str, expected: set[int] | None) -> None:
    assert _txn_failed_ops(message) == expected


def test_url_gives_a_loopback_store_with_its_prefix() -> None:
    store = store_from_url("consul://127.0.0.1:18500?prefix=team/")
    assert isinstance(store, ConsulStore)
    assert (store.address, store.prefix) == ("127.0.0.1:18500", "team/")


@pytest.mark.parametrize(("kwargs", "field"), [({"host": "10.0.0.8"}, "host"), ({"prefix": "/abs/"}, "prefix")])
def test_bad_settings_name_the_field(kwargs: dict[str, str], field: str) -> None:
    with pytest.raises(InputError) as info:
        ConsulStore(**kwargs)  # type: ignore[arg-type]
    assert info.value.field == field


@pytest.mark.parametrize("call", [lambda s: s.get("k"), lambda s: s.put("k", "v"), lambda s: s.list(""),
                                  lambda s: s.acquire_lease("controller", "A", 3.0)])
def test_unreachable_agent_is_a_temporary_error(call) -> None:  # type: ignore[no-untyped-def]
    port = free_port()  # nothing listens here
    store = ConsulStore(port=port)
    with pytest.raises(TemporaryError) as info:
        call(store)
    assert f"127.0.0.1:{port}" in str(info.value) and info.value.__cause__ is not None


@pytest.mark.parametrize(("kwargs", "field"), [({"http_check_url": "http://10.0.0.1:8101/health"}, "http_check_url"),
                                               ({"grpc_check": "192.168.1.2:9101"}, "grpc_check")])
def test_service_checks_must_be_on_loopback(kwargs: dict[str, str], field: str) -> None:
    store = ConsulStore(port=free_port())  # validation happens before any request
    with pytest.raises(InputError) as info:
        store.register_service("cell-us-east", port=8101, **kwargs)
    assert info.value.field == field


def test_lease_uses_a_short_ttl_session_with_no_lock_delay(fake: FakeConsul) -> None:
    store = ConsulStore(port=fake.port, prefix="t/")
    assert store.acquire_lease("controller", "A", 3.0)
    (session,) = fake.state.sessions.values()
    assert (session["ttl"], session["lockdelay"], session.get("behavior", "release")) == ("10s", "0s", "release")
    assert fake.state.kv["t/leases/controller"]["Session"] == session["ID"]
    store.close()  # releases: the standby need not wait for the TTL
    assert fake.state.sessions == {} and "Session" not in fake.state.kv["t/leases/controller"]


def test_another_process_cannot_write_with_a_copied_fence(fake: FakeConsul) -> None:
    leader, other = ConsulStore(port=fake.port, prefix="t/"), ConsulStore(port=fake.port, prefix="t/")
    leader.acquire_lease("controller", "A", 3.0)
    fence = Fence(lease="controller", holder="A", term=leader.lease_holder("controller").term)  # type: ignore[union-attr]
    with pytest.raises(FenceRejected):  # the session lives in the leader's process only
        other.fenced_put("weights", "forged", fence=fence)
    assert leader.fenced_put("weights", "real", fence=fence) is True
    assert other.get("weights").text == "real"  # type: ignore[union-attr]


def test_register_service_with_http_and_grpc_checks(fake: FakeConsul) -> None:
    store = ConsulStore(port=fake.port)
    assert store.register_service("cell-us-east", port=8101, http_check_url="http://127.0.0.1:8101/health",
                                  grpc_check="127.0.0.1:9101", interval_s=2.0) is True
    service = fake.state.services["cell-us-east-8101"]
    assert (service["name"], service["address"], service["port"]) == ("cell-us-east", "127.0.0.1", 8101)
    assert [c.get("http") or c.get("grpc") for c in service["checks"]] == ["http://127.0.0.1:8101/health",
                                                                          "127.0.0.1:9101"]
    assert {c["interval"] for c in service["checks"]} == {"2s"}
    assert store.deregister_service("cell-us-east-8101") is True
    assert fake.state.services == {}


# -- against a real agent (skipped without CONSUL_HTTP_ADDR) --------------------------------------
def test_agent_registers_a_service_with_checks(agent_store: ConsulStore) -> None:
    assert agent_store.register_service("shopnow-test-cell", port=18101,
                                        http_check_url="http://127.0.0.1:18101/health", grpc_check="127.0.0.1:19101")
    services = agent_store._client.agent.services()
    assert services["shopnow-test-cell-18101"]["Port"] == 18101
    checks = agent_store._client.agent.checks()
    assert sum(1 for c in checks.values() if c.get("ServiceID") == "shopnow-test-cell-18101") == 2
    assert agent_store.deregister_service("shopnow-test-cell-18101")


def test_agent_session_ttl_is_raised_to_consuls_minimum(agent_store: ConsulStore) -> None:
    assert agent_store.acquire_lease("controller", "A", 3.0)
    sid = agent_store._sessions[("controller", "A")]
    _, info = agent_store._client.session.info(sid)
    assert info["TTL"] == "10s" and info["Behavior"] == "release"
    assert agent_store.release_lease("controller", "A")
