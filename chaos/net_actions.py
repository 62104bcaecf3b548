"""Chaos Toolkit actions that cut real packets on the netns stack (`regionctl up --netns`): nftables
tables inside the region namespaces (chaos.net_faults says which), each fault recorded in the fault
registry before it is injected, so that `regionctl gameday abort` removes it (chaos.fault_registry).

    cut_region(region) / heal_region(region)                     the region cut off from the hub
    partition_regions(a, b) / heal_partition(a, b)               two regions of a geography cut off from each other
    block_controller_path(region) / unblock_controller_path(region)   the controller cannot reach it, the edge can
    block_edge_path(region) / unblock_edge_path(region)          the edge cannot reach it, the controller can
    drop_packets(region, percent) / stop_packet_loss(region)     random loss on the region's link

An injecting action checks that every rule it asked for is in the namespace's ruleset afterwards
(`nft -j list table`); a removing action reads the rules' drop counters before deleting the tables and
reports them ("dropped_packets"): a fault that dropped nothing was not observed (chaos.verdicts makes
such a game day invalid). Removing is idempotent: a table already gone counts 0 and is no error.
Needs root (nft inside a namespace); the stack's netns record (<state_dir>/netns.json) says where.
"""
from __future__ import annotations

import json
import subprocess
import time
from typing import Any, Callable

from chaoslib.exceptions import ActivityFailed
from chaoslib.types import Configuration, Secrets

from chaos import net_faults
from chaos.actions import _failing_as_activity, _forget, _register
from chaos.context import StackContext, context_from
from chaos.net_faults import NetFault, NsTable
from regions import netns_apply
from regions.netns import exec_prefix

__all__ = ["cut_region", "heal_region", "partition_regions", "heal_partition", "block_controller_path",
           "unblock_controller_path", "block_edge_path", "unblock_edge_path", "drop_packets", "stop_packet_loss"]

NFT_TIMEOUT_S = 10.0


def _nft(table: NsTable, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*exec_prefix(table.namespace), "nft", *args], input=stdin, capture_output=True, text=True,
                          timeout=NFT_TIMEOUT_S, check=False)


def _listing(table: NsTable) -> dict[str, Any] | None:
    done = _nft(table, "-j", "list", "table", "inet", table.name)
    if done.returncode != 0:
        return None
    return dict(json.loads(done.stdout))


def _fault(ctx: StackContext, build: Callable[..., NetFault], *args: Any) -> NetFault:
    netns_apply.require_root("network faults need root (nft inside the stack's namespaces)")
    return build(netns_apply.recorded(ctx.state_dir), ctx.topology, *args)


def _inject(what: str, build: Callable[..., NetFault], args: tuple[Any, ...], *, undo: str,
            configuration: Configuration, **arguments: Any) -> dict[str, Any]:
    ctx = context_from(configuration)
    with _failing_as_activity(what):
        fault = _fault(ctx, build, *args)
        _register(ctx, fault.key, undo=undo, what=fault.what, **arguments)
        at = time.time()  # stamped immediately before the first rule goes in
        for table in fault.tables:
            done = _nft(table, "-f", "-", stdin=table.script)
            if done.returncode != 0:
                raise ActivityFailed(f"{what}: nft in {table.namespace} refused table {table.name}: {done.stderr.strip()}; "
                                     f"`regionctl gameday abort` removes what went in")
        for table in fault.tables:
            listing = _listing(table)
            if listing is None or net_faults.rule_count(listing) == 0:
                raise ActivityFailed(f"{what}: table {table.name} is not in {table.namespace}'s ruleset after it was added")
    return {"at": at, "action": what, "fault": fault.key, "what": fault.what,
            "tables": [f"{t.namespace}:inet {t.name}" for t in fault.tables]}


def _remove(what: str, build: Callable[..., NetFault], args: tuple[Any, ...], *, configuration: Configuration) -> dict[str, Any]:
    ctx = context_from(configuration)
    with _failing_as_activity(what):
        fault = _fault(ctx, build, *args)
        dropped: dict[str, int] = {}
        for table in fault.tables:
            listing = _listing(table)
            if listing is None:
                continue  # already gone (idempotent)
            dropped[f"{table.namespace}:{table.name}"] = net_faults.dropped(listing)
            done = _nft(table, "delete", "table", "inet", table.name)
            if done.returncode != 0 and _listing(table) is not None:
                raise ActivityFailed(f"{what}: could not delete table {table.name} in {table.namespace}: {done.stderr.strip()}")
        at = time.time()
        _forget(ctx, fault.key)
    total = sum(dropped.values())
    return {"at": at, "action": what, "fault": fault.key, "dropped_packets": total, "dropped_by_table": dropped,
            "observed": total > 0 if dropped else None}


def cut_region(region: str, configuration: Configuration = None, secrets: Secrets = None) -> dict[str, Any]:
    """Drop everything in and out of the region's link: the controllers, the edge and its peers lose it."""
    return _inject("cut_region", net_faults.isolate, (region,), undo="heal_region", configuration=configuration,
                   region=region)


def heal_region(region: str, configuration: Configuration = None, secrets: Secrets = None) -> dict[str, Any]:
    """Remove cut_region's tables; reports the packets they dropped."""
    return _remove("heal_region", net_faults.isolate, (region,), configuration=configuration)


def partition_regions(a: str, b: str, configuration: Configuration = None, secrets: Secrets = None) -> dict[str, Any]:
    """a and b (two regions of one geography) stop reaching each other; both still reach the hub."""
    return _inject("partition_regions", net_faults.partition, (a, b), undo="heal_partition",
                   configuration=configuration, a=a, b=b)


def heal_partition(a: str, b: str, configuration: Configuration = None, secrets: Secrets = None) -> dict[str, Any]:
    """Remove partition_regions' tables in both namespaces; reports the packets they dropped."""
    return _remove("heal_partition", net_faults.partition, (a, b), configuration=configuration)


def block_controller_path(region: str, configuration: Configuration = None, secrets: Secrets = None) -> dict[str, Any]:
    """The controller cannot reach the region's cell (its HTTP port); the edge still can (gRPC)."""
    return _inject("block_controller_path", net_faults.controller_path, (region,), undo="unblock_controller_path",
                   configuration=configuration, region=region)


def unblock_controller_path(region: str, configuration: Configuration = None, secrets: Secrets = None) -> dict[str, Any]:
    """Remove block_controller_path's table; reports the packets it dropped."""
    return _remove("unblock_controller_path", net_faults.controller_path, (region,), configuration=configuration)


def block_edge_path(region: str, configuration: Configuration = None, secrets: Secrets = None) -> dict[str, Any]:
    """The edge cannot reach the region's cell (its gRPC port); the controller still can (HTTP)."""
    return _inject("block_edge_path", net_faults.edge_path, (region,), undo="unblock_edge_path",
                   configuration=configuration, region=region)


def unblock_edge_path(region: str, configuration: Configuration = None, secrets: Secrets = None) -> dict[str, Any]:
    """Remove block_edge_path's table; reports the packets it dropped."""
    return _remove("unblock_edge_path", net_faults.edge_path, (region,), configuration=configuration)


def drop_packets(region: str, percent: int = 20, configuration: Configuration = None, secrets: Secrets = None) -> dict[str, Any]:
    """Drop `percent` % of the packets on the region's link, each direction (nftables numgen random)."""
    return _inject("drop_packets", net_faults.loss, (region, percent), undo="stop_packet_loss",
                   configuration=configuration, region=region, percent=percent)


def stop_packet_loss(region: str, percent: int = 20, configuration: Configuration = None, secrets: Secrets = None) -> dict[str, Any]:
    """Remove drop_packets' table; reports the packets it dropped."""
    return _remove("stop_packet_loss", net_faults.loss, (region, percent), configuration=configuration)
