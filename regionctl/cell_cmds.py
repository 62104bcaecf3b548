"""`regionctl cell`: run one region's serving cell."""
from __future__ import annotations

import os
from pathlib import Path

import typer

from contracts.environment import topology_path
from regions.stack import default_state_dir, stack_urls
from regions.topology import load_topology


def register(app: typer.Typer) -> None:
    @app.command("cell")
    def cell(
        region: str = typer.Option(..., help="Region to serve, as named in topology.toml."),
        artifacts: str = typer.Option("", help="Artifact store URL (default: REGIONCTL_ARTIFACTS, else the stack's)."),
        topology: Path = typer.Option(None, help="Topology file (default: REGIONCTL_TOPOLOGY or topology.toml)."),
        state_dir: Path = typer.Option(None, help="Where the cell caches verified bundles (default: the stack's state dir)."),
    ) -> None:
        """Run a cell: FastAPI + gRPC on the region's ports, bundle watched in the artifact store; with a
        Consul control store it registers as service cell-<region> with HTTP and gRPC health checks."""
        from serving.cell_main import run_cell

        topo = load_topology(topology_path(os.environ, topology))
        topo.region(region)
        state = state_dir or default_state_dir()
        url = artifacts or os.environ.get("REGIONCTL_ARTIFACTS") or stack_urls(state).artifacts
        tokens = os.environ.get("REGIONCTL_TOKENS_FILE") or str(state / "tokens.json")
        from failover.cell_registration import registered_cell

        with registered_cell(os.environ.get("REGIONCTL_CONTROL_STORE"), topo, region):  # Consul: a service + checks
            run_cell(topo, region=region, artifacts_url=url, state_dir=state, tokens_file=tokens)
