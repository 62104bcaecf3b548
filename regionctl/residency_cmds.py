"""`regionctl residency audit [--json]`: personal data of users homed elsewhere, in any region's Redis
or any cell's bundle cache (replication.residency_audit). Exit 0 clean, 1 with findings or errors."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from contracts.environment import topology_path
from regions import stack
from regions.topology import load_topology

residency_app = typer.Typer(no_args_is_help=True, help="Data residency: where personal data sits.")


@residency_app.command("audit")
def audit_cmd(
    topology: Optional[Path] = typer.Option(None, "--topology", help="topology.toml (default: REGIONCTL_TOPOLOGY or the repo's)."),
    state_dir: Optional[Path] = typer.Option(None, "--state-dir", help="The stack's state dir, whose cells' bundle caches are scanned (default: var/stack)."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Scan every region's Redis (keys, hash fields, stream entries, values) and every cell's bundle
    cache for personal data of users not homed in that region's geography; exit 1 with the findings."""
    from replication.redis_io import connect_all
    from replication.residency_audit import audit

    topo = load_topology(topology_path(os.environ, str(topology) if topology else None))
    state = (state_dir or stack.default_state_dir()).resolve()
    clients = connect_all(topo)
    try:
        report = audit(topo, clients, state_dir=state)
    finally:
        for client in clients.values():
            client.close()
    if as_json:
        typer.echo(json.dumps(report.to_json(), indent=2))
    else:
        console = Console(width=200)
        scanned = ", ".join(f"{r}: {c['keys']} keys, {c['stream_entries']} stream entries, {c['bundle_files']} bundle files"
                            for r, c in sorted(report.scanned.items()))
        console.print(f"scanned {scanned}")
        if report.findings:
            table = Table(title=f"{report.total} residency violations (first {len(report.findings)})")
            for col in ("region", "kind", "where", "user", "home geography"):
                table.add_column(col)
            for f in report.findings:
                table.add_row(f.region, f.kind, f.where, f.user_id, f.home_geography)
            console.print(table)
        for error in report.errors:
            console.print(f"[red]{error}[/]")
        if report.clean:
            console.print("[green]clean[/]: no region holds personal data of a user homed in another geography")
    if not report.clean:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.add_typer(residency_app, name="residency")
