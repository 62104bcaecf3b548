"""`regionctl up --control-store etcd`: the stack's etcd members are recorded in stack.json like every
other process, the stack's processes are pointed at them, and `down` stops exactly them. Only the
etcd part of the stack is started here (the whole stack runs in tests/test_stack_e2e.py)."""
from __future__ import annotations

from pathlib import Path

import pytest

from failover.control_stores import store_from_url
from failover.etcd_store import EtcdStore
from regionctl.stack_specs import stack_specs
from regions import stack
from regions.errors import InputError
from regions.stack_etcd import ETCD_FILE, choose_store
from regions.topology import load_topology
from tests.stack_helpers import write_topology


def test_up_starts_three_recorded_etcd_members_and_down_stops_them(tmp_path: Path) -> None:
    state_dir = tmp_path / "stack"
    topo_path = write_topology(tmp_path / "topology.toml")
    members = choose_store(state_dir, "etcd")
    assert members is not None and len(members) == 3
    urls = stack.stack_urls(state_dir)
    assert urls.control_store.startswith("etcd://") and all(str(m.client_port) in urls.control_store for m in members)
    specs = stack_specs(load_topology(topo_path), state_dir=state_dir, urls=urls)
    assert [s.kind for s in specs[:3]] == ["etcd"] * 3
    assert all(urls.control_store in s.argv for s in specs if s.kind in ("controller", "edge"))
    state = stack.up(specs, topology_path=topo_path, state_dir=state_dir, kinds=["etcd"])
    try:
        recorded = stack.StackState.load(state_dir).processes
        assert sorted(p.kind for p in recorded.values()) == ["etcd"] * 3
        assert all(stack.is_running(p) for p in recorded.values())
        assert stack._env(state.topology_path, state_dir)["REGIONCTL_CONTROL_STORE"] == urls.control_store
        with store_from_url(urls.control_store) as store:
            assert isinstance(store, EtcdStore)
            assert store.put("routing/table", "{}") is True
        procs = list(recorded.values())
    finally:
        stopped = stack.down(state_dir=state_dir)
    assert sorted(stopped) == sorted(m.name for m in members)
    assert not any(stack.is_running(p) for p in procs)
    assert (state_dir / ETCD_FILE).exists()  # a later `up` finds the same members and their data
    assert choose_store(state_dir, None) == members
    assert choose_store(state_dir, "sqlite") is None
    assert stack.stack_urls(state_dir).control_store.startswith("sqlite:///")


def test_an_unknown_store_kind_names_the_option(tmp_path: Path) -> None:
    with pytest.raises(InputError) as info:
        choose_store(tmp_path, "zookeeper")
    assert info.value.field == "--control-store"
    assert not (tmp_path / ETCD_FILE).exists()
