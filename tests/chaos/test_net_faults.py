"""The network faults' rules (chaos.net_faults), their refusals, the drop counters read back, and
the partition's replication measurement (chaos.partition_rpo), including the broken cases it must
catch: an event missing from the peer, one held twice, a live RPO that never rose. Pure; the rules
are applied to real namespaces in tests/chaos/test_netns_stack.py."""
from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from chaos import net_faults, partition_rpo
from chaos.measurement import AckedEvent
from chaos.net_gameday import partition_of, unobserved_faults
from regions.errors import InputError
from regions.netns import plan_for
from regions.topology import load_topology


@pytest.fixture
def topo() -> Any:
    t = load_topology().with_network("netns")
    return dataclasses.replace(t, network=dataclasses.replace(t.network, subnet="10.213.50.0/24"))


def test_isolate_drops_everything_on_the_regions_link(topo: Any) -> None:
    fault = net_faults.isolate(plan_for(topo), topo, "us-east")
    (table,) = fault.tables
    assert fault.key == "net:isolate:us-east" and table.namespace == "shopnow50-us-east"
    assert 'iifname "eth0" counter drop' in table.script and 'oifname "eth0" counter drop' in table.script


def test_partition_cuts_both_directions_in_both_namespaces_and_nothing_else(topo: Any) -> None:
    fault = net_faults.partition(plan_for(topo), topo, "us-west", "us-east")
    assert fault.key == "net:partition:us-east+us-west", "one key whatever the order"
    by_ns = {t.namespace: t.script for t in fault.tables}
    assert set(by_ns) == {"shopnow50-us-east", "shopnow50-us-west"}
    assert "ip saddr 10.213.50.12 counter drop" in by_ns["shopnow50-us-east"]
    assert "ip daddr 10.213.50.12 counter drop" in by_ns["shopnow50-us-east"]
    assert "ip saddr 10.213.50.11 counter drop" in by_ns["shopnow50-us-west"]
    assert "10.213.50.1 " not in " ".join(by_ns.values()), "the hub (controllers, edge) still reaches both"


def test_asymmetric_paths_drop_only_the_host_to_one_port(topo: Any) -> None:
    plan = plan_for(topo)
    region = topo.region("us-east")
    ctl = net_faults.controller_path(plan, topo, "us-east").tables[0].script
    edge = net_faults.edge_path(plan, topo, "us-east").tables[0].script
    assert f"ip saddr 10.213.50.1 tcp dport {region.http_port} counter drop" in ctl and str(region.grpc_port) not in ctl
    assert f"ip saddr 10.213.50.1 tcp dport {region.grpc_port} counter drop" in edge and str(region.http_port) not in edge


def test_loss_uses_numgen_random_each_direction(topo: Any) -> None:
    script = net_faults.loss(plan_for(topo), topo, "eu-west", 20).tables[0].script
    assert script.count("numgen random mod 100 < 20 counter drop") == 2


@pytest.mark.parametrize(("call", "field"), [
    (lambda p, t: net_faults.partition(p, t, "us-east", "eu-west"), "b"),
    (lambda p, t: net_faults.partition(p, t, "us-east", "us-east"), "b"),
    (lambda p, t: net_faults.loss(p, t, "us-east", 0), "percent"),
    (lambda p, t: net_faults.loss(p, t, "us-east", 100), "percent"),
    (lambda p, t: net_faults.loss(p, t, "us-east", True), "percent"),
    (lambda p, t: net_faults.isolate(p, t, "mars-1"), "region"),
])
def test_bad_fault_arguments_name_the_field(topo: Any, call: Any, field: str) -> None:
    with pytest.raises(InputError) as err:
        call(plan_for(topo), topo)
    assert err.value.field == field


def test_a_loopback_stack_has_no_packets_to_cut() -> None:
    with pytest.raises(InputError, match="netns stack"):
        net_faults.isolate(None, load_topology(), "us-east")


LISTING = {"nftables": [{"metainfo": {}}, {"table": {"name": "t"}}, {"chain": {"name": "input"}},
                        {"rule": {"expr": [{"match": {}}, {"counter": {"packets": 7, "bytes": 420}}, {"drop": None}]}},
                        {"rule": {"expr": [{"counter": {"packets": 5, "bytes": 300}}, {"drop": None}]}}]}


def test_drop_counters_and_rules_are_read_from_nft_json() -> None:
    assert net_faults.rule_count(LISTING) == 2 and net_faults.dropped(LISTING) == 12
    assert net_faults.rule_count({"nftables": []}) == 0 and net_faults.dropped({"nftables": []}) == 0


def _removal(func: str, key: str, dropped: int) -> dict[str, Any]:
    return {"activity": {"provider": {"func": func}}, "status": "succeeded",
            "output": {"fault": key, "dropped_packets": dropped, "observed": dropped > 0}}


def test_a_fault_whose_rules_dropped_nothing_was_not_observed() -> None:
    runs = [_removal("heal_partition", "net:partition:us-east+us-west", 0), _removal("stop_packet_loss", "net:loss:us-east", 31),
            {"activity": {"provider": {"func": "restore_region"}}, "output": {"at": 1.0}}]
    assert net_faults.fault_dropped(runs) == {"net:partition:us-east+us-west": 0, "net:loss:us-east": 31}
    (reason,) = unobserved_faults(runs)
    assert "net:partition:us-east+us-west was not observed" in reason
    assert unobserved_faults([_removal("heal_region", "net:isolate:us-east", 3)]) == []


def test_the_partition_pair_is_read_from_the_experiment() -> None:
    exp = {"method": [{"type": "action", "provider": {"func": "partition_regions", "arguments": {"a": "us-east", "b": "us-west"}}}]}
    assert partition_of(exp) == ("us-east", "us-west") and partition_of({"method": []}) is None


# -- the partition's replication measurement -----------------------------------------------------
def _samples(peak: float) -> list[dict[str, Any]]:
    """Live RPO: 0 before t=10, rising to `peak` until healing at t=30, 0 from t=32."""
    out = []
    for i in range(0, 80):
        t = i * 0.5
        lag = 0.0 if t < 10 or t >= 32 else (min(peak, t - 10) if t < 30 else peak)
        out.append({"t": t, "rpo": {"us-east->us-west": lag, "us-west->us-east": lag / 2}})
    return out


ACKED = [AckedEvent(event_id=f"e{i}", acked_at=float(i), region="us-east" if i % 2 else "us-west") for i in range(40)]
ALL_THERE = {"us-east": {e.event_id: 1 for e in ACKED if e.region == "us-east"},
             "us-west": {e.event_id: 1 for e in ACKED if e.region == "us-west"}}


def _measure(samples: list[dict[str, Any]], counts: dict[str, dict[str, int]]) -> partition_rpo.PartitionReplication:
    return partition_rpo.measure(pair=("us-east", "us-west"), samples=samples, acked=ACKED, replica_counts=counts,
                                 fault_at=10.0, healed_at=30.0, drained_after_s=None, load_started=0.0)


def test_a_real_partition_rises_then_drains_with_nothing_lost() -> None:
    found = _measure(_samples(20.0), ALL_THERE)
    assert found.live_rpo_before_s == 0.0 and found.live_rpo_peak_s == 19.5 and found.drained_after_s == 2.0
    assert (found.acknowledged, found.lost, found.duplicated) == (40, 0, 0) and found.observed
    assert partition_rpo.not_observed(found) == []
    assert {v.status for v in partition_rpo.verdicts(found)} == {"pass"}


def test_an_event_missing_from_its_peer_is_lost_and_fails() -> None:
    counts = {**ALL_THERE, "us-east": {k: v for k, v in ALL_THERE["us-east"].items() if k != "e7"}}
    found = _measure(_samples(20.0), counts)
    assert found.lost == 1 and found.lost_ids == ("e7",)
    lost = next(v for v in partition_rpo.verdicts(found) if v.name == "events lost after healing")
    assert lost.status == "fail" and "e7" in lost.note


def test_an_event_held_twice_is_duplicated_and_fails() -> None:
    counts = {**ALL_THERE, "us-west": {**ALL_THERE["us-west"], "e4": 2}}
    found = _measure(_samples(20.0), counts)
    assert found.duplicated == 1 and found.duplicated_ids == ("e4",)
    assert next(v for v in partition_rpo.verdicts(found) if v.name == "events duplicated after healing").status == "fail"


def test_a_live_rpo_that_never_rose_means_the_partition_was_not_observed() -> None:
    found = _measure(_samples(1.0), ALL_THERE)
    assert not found.observed
    (reason,) = partition_rpo.not_observed(found)
    assert "not observed" in reason and "peaked at 1.0 s" in reason
    report = {"verdicts": [], "invalid_reasons": [reason]}
    assert partition_rpo.with_replication(report, found)["verdict"] == "invalid"


def test_a_backlog_that_never_drained_fails_its_target() -> None:
    samples = [{**s, "rpo": {"us-east->us-west": 5.0, "us-west->us-east": 0.0}} if s["t"] >= 30 else s for s in _samples(20.0)]
    found = _measure(samples, ALL_THERE)
    assert found.drained_after_s is None
    assert next(v for v in partition_rpo.verdicts(found) if v.name == "backlog drained after healing").status == "fail"
