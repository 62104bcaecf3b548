"""Cells register as Consul services with their health checks (against the HTTP stand-in of
tests/failover/consul_fake.py and the real py-consul client: no Consul binary can run here)."""
from __future__ import annotations

from typing import Iterator

import pytest

from failover.cell_registration import cell_service, registered_cell
from regions.processes import free_port
from tests.failover.consul_fake import FakeConsul
from tests.failover.pure_builders import DEFAULT


@pytest.fixture
def fake() -> Iterator[FakeConsul]:
    server = FakeConsul()
    yield server
    server.close()


def test_a_cell_registers_with_http_and_grpc_checks_and_leaves_on_exit(fake: FakeConsul) -> None:
    lines: list[str] = []
    service = cell_service(DEFAULT, "us-east")
    with registered_cell(f"consul://127.0.0.1:{fake.port}", DEFAULT, "us-east", log=lines.append) as registered:
        assert registered is True
        entry = fake.state.services[service.service_id]
        assert (entry["name"], entry["port"]) == ("cell-us-east", DEFAULT.region("us-east").http_port)
        assert [c.get("http") or c.get("grpc") for c in entry["checks"]] == [
            f"http://127.0.0.1:{DEFAULT.region('us-east').http_port}/readyz",
            f"127.0.0.1:{DEFAULT.region('us-east').grpc_port}"]
    assert fake.state.services == {}
    assert lines[0].startswith("REGISTERED service=cell-us-east-")


def test_no_catalog_no_registration() -> None:
    for url in (None, "sqlite:///tmp/x.db", "etcd://127.0.0.1:2379"):
        with registered_cell(url, DEFAULT, "us-east", log=lambda _l: None) as registered:
            assert registered is False


def test_an_unreachable_consul_does_not_stop_the_cell() -> None:
    lines: list[str] = []
    with registered_cell(f"consul://127.0.0.1:{free_port()}", DEFAULT, "eu-west", log=lines.append) as registered:
        assert registered is False
    assert lines and lines[0].startswith("REGISTER-FAILED service=cell-eu-west-")
