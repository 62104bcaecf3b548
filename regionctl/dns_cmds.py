"""`regionctl dns show | publish`: the routing table's weighted records in Route 53.

Configured like the controller (failover.dns_publish): REGIONCTL_DNS_ZONE, REGIONCTL_DNS_RECORD,
REGIONCTL_DNS_TARGETS and, for a local server, REGIONCTL_DNS_ENDPOINT. The leading controller
publishes every table by itself; these commands are for looking and for a manual push.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from contracts.store_keys import TABLE_KEY
from failover.control_store import DEFAULT_STORE_URL, ENV_VAR
from failover.control_stores import store_from_url
from regions.errors import InputError

console = Console()


def _publisher(topology: Optional[Path]) -> Any:
    from failover.dns_publish import ENV_ZONE, DnsPublisher, dns_settings_from_env
    from regions.topology import load_topology

    topo = load_topology(topology)
    settings = dns_settings_from_env(os.environ, topo)
    if settings is None:
        raise InputError(ENV_ZONE, "is not set: name the hosted zone (and REGIONCTL_DNS_RECORD, REGIONCTL_DNS_TARGETS)")
    return DnsPublisher(settings, topo)


def _stored_table(store: str) -> dict[str, Any] | None:
    with store_from_url(store) as control:
        found = control.get(TABLE_KEY)
    return json.loads(found.value) if found else None


def comparison(route53: dict[str, dict[str, int]], table: dict[str, Any] | None) -> list[tuple[str, str, str, str, bool]]:
    """(geography, region, weight in Route 53, weight in the table, equal) for every pair in either."""
    geos = (table or {}).get("geos") or {}
    rows = []
    for geo in sorted(set(route53) | set(geos)):
        wanted = (geos.get(geo) or {}).get("regions") or {}
        for region in sorted(set(route53.get(geo, {})) | set(wanted)):
            have, want = route53.get(geo, {}).get(region), wanted.get(region, 0 if region in route53.get(geo, {}) else None)
            rows.append((geo, region, "-" if have is None else str(have), "-" if want is None else str(want), have == want))
    return rows


def register(app: typer.Typer) -> None:
    dns = typer.Typer(no_args_is_help=True, help="Route 53 weighted records of the routing table.")
    app.add_typer(dns, name="dns")
    store_opt = typer.Option(DEFAULT_STORE_URL, "--store", envvar=ENV_VAR, help="Control store URL.")
    topo_opt = typer.Option(None, "--topology", help="Topology file (default: REGIONCTL_TOPOLOGY or topology.toml).")

    @dns.command("show")
    def show(store: str = store_opt, topology: Optional[Path] = topo_opt) -> None:
        """Weights in Route 53 next to the routing table's; exit 1 when they differ."""
        publisher = _publisher(topology)
        table = _stored_table(store)
        rows = comparison(publisher.read(), table)
        out = Table(title=f"Route 53 {publisher.settings.hosted_zone_id} {publisher.settings.record_name} "
                          f"vs routing table v{(table or {}).get('version', '-')}")
        for column in ("geography", "region", "Route 53", "table", "same"):
            out.add_column(column)
        for geo, region, have, want, same in rows:
            out.add_row(geo, region, have, want, "yes" if same else "[red]no[/red]")
        console.print(out)
        if not all(r[4] for r in rows):
            raise typer.Exit(1)

    @dns.command("publish")
    def publish(store: str = store_opt, topology: Optional[Path] = topo_opt) -> None:
        """Publish the control store's routing table now (even if unchanged)."""
        publisher = _publisher(topology)
        table = _stored_table(store)
        if table is None:
            raise InputError("routing table", f"{TABLE_KEY} is not in {store}: no controller has written one yet")
        outcome = publisher.publish(table, force=True)
        if outcome != "published":
            console.print(f"[red]not published[/red]: {publisher.state.last_error}")
            raise typer.Exit(1)
        console.print(f"published routing table v{table.get('version')} to {publisher.settings.hosted_zone_id}")
