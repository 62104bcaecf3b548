"""The netns stack's plan (regions.netns), its applier's refusals (regions.netns_apply, with a
recording runner: no root needed), the topology's [network] table, and where stack_specs puts each
process. The real namespaces are made and removed in tests/chaos/test_netns_stack.py (as root)."""
from __future__ import annotations

import dataclasses
import ipaddress
import json
import subprocess
import tomllib
from pathlib import Path
from typing import Any, Sequence

import pytest

from regionctl.stack_specs import stack_specs
from regions import netns_apply, stack
from regions.errors import InputError, TemporaryError, TopologyError
from regions.netns import exec_prefix, parse_netns_list, plan_for, routed_conflicts
from regions.topology import load_topology, parse_topology, render_topology


def _netns(subnet: str = "10.213.7.0/24") -> Any:
    topo = load_topology().with_network("netns")
    return dataclasses.replace(topo, network=dataclasses.replace(topo.network, subnet=subnet))


def test_the_default_topology_stays_on_loopback() -> None:
    topo = load_topology()
    assert not topo.netns and topo.network.mode == "loopback"
    assert {topo.region_host(r) for r in topo.regions} == {"127.0.0.1"}


def test_netns_addresses_names_and_links_come_from_the_subnet() -> None:
    topo = _netns("10.213.42.0/24")
    plan = plan_for(topo)
    assert plan.host_address == "10.213.42.1" and plan.host_link == "shn42-host"
    assert plan.namespaces() == ["shopnow42-us-east", "shopnow42-us-west", "shopnow42-eu-west", "shopnow42-hub"]
    assert [(r.region, r.address, r.hub_port) for r in plan.regions] == [
        ("us-east", "10.213.42.11", "r0"), ("us-west", "10.213.42.12", "r1"), ("eu-west", "10.213.42.13", "r2")]
    assert [topo.region_host(r) for r in topo.regions] == [r.address for r in plan.regions]
    assert all(len(name) <= 15 for name in (plan.host_link, *(r.hub_port for r in plan.regions)))  # IFNAMSIZ
    net = ipaddress.IPv4Network(plan.subnet)
    assert all(ipaddress.IPv4Address(r.address) in net for r in plan.regions)


def test_setup_joins_every_region_to_the_hub_bridge_and_nothing_routes_out() -> None:
    plan = plan_for(_netns())
    cmds = [" ".join(c) for c in plan.setup_commands()]
    for link in plan.regions:
        assert f"ip netns add {link.namespace}" in cmds
        assert f"ip -n {plan.hub_namespace} link set {link.hub_port} master br0" in cmds
        assert f"ip -n {link.namespace} addr add {link.address}/24 dev eth0" in cmds
    assert not any("route" in c or "forward" in c or "default" in c for c in cmds), "no namespace gets a way out"
    assert cmds.index(f"ip netns add {plan.hub_namespace}") == 0
    teardown = [" ".join(c) for c in plan.teardown_commands()]
    assert teardown[0] == f"ip link del {plan.host_link}"
    assert sorted(t.split()[-1] for t in teardown[1:]) == sorted(plan.namespaces())


def test_the_plan_round_trips_through_its_record() -> None:
    plan = plan_for(_netns())
    assert type(plan).from_json(json.loads(json.dumps(plan.to_json()))) == plan


ROUTES = [{"dst": "default", "gateway": "192.0.2.1", "dev": "eth0"}, {"dst": "192.0.2.0/24", "dev": "eth0"},
          {"type": "local", "dst": "192.0.2.2", "dev": "eth0", "table": "local"}]
ADDRS = [{"ifname": "eth0", "addr_info": [{"family": "inet", "local": "192.0.2.2", "prefixlen": 24}]}]


@pytest.mark.parametrize(("routes", "addrs", "found"), [
    (ROUTES, ADDRS, []),
    (ROUTES + [{"dst": "10.213.0.0/16", "dev": "wg0"}], ADDRS, ["route 10.213.0.0/16 dev wg0 (table main)"]),
    (ROUTES + [{"dst": "10.213.7.128/25", "dev": "tun0"}], ADDRS, ["route 10.213.7.128/25 dev tun0 (table main)"]),
    (ROUTES + [{"dst": "10.213.8.0/24", "dev": "br9"}], ADDRS, []),
    (ROUTES, ADDRS + [{"ifname": "dummy0", "addr_info": [{"family": "inet", "local": "10.213.7.99"}]}],
     ["address 10.213.7.99 on dummy0"]),
])
def test_a_subnet_already_routed_or_addressed_on_the_host_is_named(routes: list[Any], addrs: list[Any], found: list[str]) -> None:
    assert routed_conflicts("10.213.7.0/24", routes, addrs) == found


def test_netns_list_is_parsed_with_and_without_ids() -> None:
    assert parse_netns_list("shopnow7-hub (id: 0)\nshopnow7-us-east\n\n") == ["shopnow7-hub", "shopnow7-us-east"]


@pytest.mark.parametrize(("network", "field"), [
    ({"mode": "bridge"}, "network.mode"), ({"subnet": "10.213.7.0/16"}, "network.subnet"),
    ({"subnet": "8.8.8.0/24"}, "network.subnet"), ({"subnet": "127.0.0.0/24"}, "network.subnet"),
    ({"subnet": "not-a-net"}, "network.subnet"), ({"vlan": 3}, "network.vlan"),
])
def test_a_bad_network_table_names_the_field(network: dict[str, Any], field: str) -> None:
    raw = tomllib.loads((Path(__file__).resolve().parents[2] / "topology.toml").read_text())
    with pytest.raises(TopologyError) as err:
        parse_topology({**raw, "network": network})
    assert err.value.field == field


def test_render_topology_reads_back_equal() -> None:
    topo = _netns("10.213.9.0/24")
    assert parse_topology(tomllib.loads(render_topology(topo))) == topo


def test_stack_specs_put_each_region_in_its_namespace_and_the_rest_on_the_host(tmp_path: Path) -> None:
    topo = _netns()
    plan = plan_for(topo)
    specs = stack_specs(topo, state_dir=tmp_path, urls=stack.stack_urls(tmp_path))
    for spec in specs:
        if spec.region:
            ns = plan.namespace_of(spec.region)
            assert spec.argv[:4] == exec_prefix(ns) and spec.netns == ns and spec.host == topo.region_host(spec.region)
        else:
            assert spec.netns == "" and spec.argv[0] != "ip", spec.name
    redis = next(s for s in specs if s.name == "redis-us-west")
    assert redis.argv[redis.argv.index("--bind") + 1] == "10.213.7.12"
    loopback = stack_specs(load_topology(), state_dir=tmp_path, urls=stack.stack_urls(tmp_path))
    assert all(s.netns == "" and s.argv[0] != "ip" for s in loopback)


class Recorder:
    """Stands in for `ip`: records each command; fails the ones whose text contains `fail_on`."""

    def __init__(self, *, fail_on: str = "", routes: Sequence[Any] = ROUTES, listed: str = "") -> None:
        self.calls: list[str] = []
        self.fail_on, self.routes, self.listed = fail_on, routes, listed

    def __call__(self, argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
        text = " ".join(argv)
        self.calls.append(text)
        out = {"ip -j -4 route show table all": json.dumps(list(self.routes)), "ip -j -4 addr": json.dumps(ADDRS),
               "ip netns list": self.listed}.get(text, "")
        code = 2 if self.fail_on and self.fail_on in text else 0
        return subprocess.CompletedProcess(list(argv), code, out, "RTNETLINK answers: File exists" if code else "")


def test_without_root_the_netns_stack_is_refused_plainly(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(netns_apply.os, "geteuid", lambda: 1000)
    runner = Recorder()
    with pytest.raises(InputError, match="needs root"):
        netns_apply.create(plan_for(_netns()), tmp_path, run=runner)
    assert runner.calls == [] and not (tmp_path / netns_apply.NETNS_FILE).exists()


def test_a_routed_subnet_is_refused_before_anything_is_made(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(netns_apply.os, "geteuid", lambda: 0)
    runner = Recorder(routes=ROUTES + [{"dst": "10.213.7.0/24", "dev": "other0"}])
    with pytest.raises(InputError, match="already routed on this host"):
        netns_apply.create(plan_for(_netns()), tmp_path, run=runner)
    assert not any(c.startswith("ip netns add") for c in runner.calls)
    assert not (tmp_path / netns_apply.NETNS_FILE).exists()


def test_a_failed_step_removes_what_was_made_and_says_which(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(netns_apply.os, "geteuid", lambda: 0)
    plan = plan_for(_netns())
    runner = Recorder(fail_on="ip netns add shopnow7-us-west")
    with pytest.raises(TemporaryError, match="shopnow7-us-west.*removed what was made"):
        netns_apply.create(plan, tmp_path, run=runner)
    made = runner.calls.index("ip netns add shopnow7-us-west")
    assert "ip netns del shopnow7-us-east" in runner.calls[made:] and f"ip link del {plan.host_link}" in runner.calls[made:]
    assert not (tmp_path / netns_apply.NETNS_FILE).exists()


def test_the_record_is_written_before_the_first_command(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A crashed `up` leaves netns.json behind: `down` then knows what to remove."""
    monkeypatch.setattr(netns_apply.os, "geteuid", lambda: 0)
    plan = plan_for(_netns())
    seen: list[bool] = []
    runner = Recorder()

    def spy(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
        if list(argv[:3]) == ["ip", "netns", "add"]:
            seen.append((tmp_path / netns_apply.NETNS_FILE).exists())
        return runner(argv)

    assert netns_apply.create(plan, tmp_path, run=spy)
    assert seen and all(seen)
    assert netns_apply.recorded(tmp_path) == plan
