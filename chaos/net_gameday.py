"""The I/O a game day does for the network faults of a netns stack (chaos.net_actions):

    net_targets(func, arguments, ctx)   what a dry run says the action would change (tables, namespaces)
    unobserved_faults(rollback_runs)    why a network fault counts as not observed: its rules dropped no packet
    partition_of(experiment)            the (a, b) pair a partition experiment cuts, or None
    pair_lags(ctx, pair)                live RPO of both directions ({"a->b": seconds | None}), read from the host
    wait_drained(ctx, pair, timeout_s)  after healing: seconds until both directions caught up (None: not in time)
    replica_counts(ctx, pair, since)    {source: {event_id: times held in the peer's log:replica:<source>}}
"""
from __future__ import annotations

import time
from typing import Any, Mapping

from chaos import net_faults
from chaos.context import StackContext
from chaos.redis_io import region_client, stream_event_counts
from regions.errors import ShopNowError
from regions.redis_keys import replica_log

NET_FAULTS = {
    "cut_region": (net_faults.isolate, ("region",)), "heal_region": (net_faults.isolate, ("region",)),
    "partition_regions": (net_faults.partition, ("a", "b")), "heal_partition": (net_faults.partition, ("a", "b")),
    "block_controller_path": (net_faults.controller_path, ("region",)),
    "unblock_controller_path": (net_faults.controller_path, ("region",)),
    "block_edge_path": (net_faults.edge_path, ("region",)), "unblock_edge_path": (net_faults.edge_path, ("region",)),
    "drop_packets": (net_faults.loss, ("region", "percent")), "stop_packet_loss": (net_faults.loss, ("region", "percent")),
}
DRAIN_WAIT_S = 30.0
"""After healing a partition, how long a game day waits for the backlog to drain (a 30 s partition at
game-day rates is a few hundred events: a second or two)."""


def net_targets(func: str, arguments: Mapping[str, Any], ctx: StackContext) -> list[str]:
    from regions import netns_apply

    build, names = NET_FAULTS[func]
    args = [arguments.get(n, 20) if n == "percent" else str(arguments.get(n, "")) for n in names]
    try:
        fault = build(netns_apply.recorded(ctx.state_dir), ctx.topology, *args)
    except ShopNowError as exc:
        return [f"nothing: {exc}"]
    return [f"nft table inet {t.name} in namespace {t.namespace}: {' '.join(t.script.split())}" for t in fault.tables]


def unobserved_faults(rollback_runs: Any) -> list[str]:
    return [f"the fault {key} was not observed: its nftables rules dropped no packet while it was in place"
            for key, dropped in sorted(net_faults.fault_dropped(rollback_runs or []).items()) if dropped == 0]


def partition_of(experiment: Mapping[str, Any]) -> tuple[str, str] | None:
    for activity in experiment.get("method", []):
        provider = activity.get("provider", {})
        if activity.get("type") == "action" and provider.get("func") == "partition_regions":
            args = provider.get("arguments", {})
            return str(args.get("a")), str(args.get("b"))
    return None


def pair_lags(ctx: StackContext, pair: tuple[str, str]) -> dict[str, float | None]:
    """Live RPO of a->b and b->a now (replication.metrics.collect_pairs); None where a side is unreadable."""
    from replication.metrics import collect_pairs
    from replication.redis_io import ClientSettings, connect

    settings = ClientSettings(connect_timeout_s=0.3, socket_timeout_s=0.5, retries=0)
    clients = {r: connect(ctx.topology, r, settings=settings) for r in pair}
    try:
        found = collect_pairs(ctx.topology, clients, sources=pair, now=time.time())
    finally:
        for client in clients.values():
            client.close()
    return {f"{p.source}->{p.destination}": p.lag_seconds for p in found if p.destination in pair}


def wait_drained(ctx: StackContext, pair: tuple[str, str], *, healed_at: float, timeout_s: float = DRAIN_WAIT_S) -> float | None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        lags = pair_lags(ctx, pair)
        if lags and all(v == 0.0 for v in lags.values()):
            return max(0.0, time.time() - healed_at)
        time.sleep(0.25)
    return None


def replica_counts(ctx: StackContext, pair: tuple[str, str], *, since: float) -> dict[str, dict[str, int]]:
    """How often each event id of `source` sits in its peer's log:replica:<source>, since `since`."""
    out: dict[str, dict[str, int]] = {}
    for source, peer in (pair, pair[::-1]):
        client = region_client(ctx, peer)
        try:
            out[source] = stream_event_counts(client, replica_log(source), since=since)
        finally:
            client.close()
    return out


__all__ = ["DRAIN_WAIT_S", "NET_FAULTS", "net_targets", "pair_lags", "partition_of", "replica_counts",
           "unobserved_faults", "wait_drained"]
