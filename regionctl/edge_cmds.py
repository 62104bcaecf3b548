"""`regionctl edge`: run the edge router (the front door of the local stack) on loopback."""
from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from failover.control_store import ENV_VAR
from failover.control_stores import store_from_url
from regionctl.stack_context import store_url


def register(app: typer.Typer) -> None:
    @app.command("edge")
    def edge(
        store: Optional[str] = typer.Option(None, "--store", envvar=ENV_VAR,
                                            help="Control store URL holding routing/table: sqlite:///path.db or "
                                                 "consul://127.0.0.1:8500 (default: the stack's, <state dir>/control.db)."),
        port: Optional[int] = typer.Option(None, "--port", min=1, max=65535,
                                           help="HTTP port (default: the topology's edge_port, 8080)."),
        topology: Optional[Path] = typer.Option(None, "--topology", help="topology.toml (default: REGIONCTL_TOPOLOGY or the repo's)."),
        artifacts: Optional[str] = typer.Option(None, "--artifacts", envvar="REGIONCTL_ARTIFACTS",
                                                help="Artifact store (file:///path or s3://bucket/prefix) whose newest "
                                                     "bundle's popularity.json is the last-resort list."),
        s3_endpoint: Optional[str] = typer.Option(None, "--s3-endpoint", envvar="REGIONCTL_S3_ENDPOINT",
                                                  help="S3 endpoint URL for an s3:// artifact store (loopback)."),
        last_resort: Optional[Path] = typer.Option(None, "--last-resort",
                                                   help="A JSON list of item ids to use when no bundle can be read."),
        transport: Optional[str] = typer.Option(None, "--transport",
                                                help="How the edge calls cells: grpc or http (default: "
                                                     "REGIONCTL_EDGE_TRANSPORT, else grpc)."),
    ) -> None:
        """Serve the cell API on 127.0.0.1, routing by geography and the controller's weights."""
        import uvicorn

        from contracts.environment import topology_path
        from edge.last_resort import load_last_resort
        from edge.router import create_app
        from edge.settings import settings_from_env
        from regions.topology import load_topology

        topo = load_topology(topology_path(os.environ, topology))
        settings = settings_from_env(os.environ)
        if transport is not None:
            settings = replace(settings, transport=transport)
        fallback = load_last_resort(artifacts_url=artifacts, path=last_resort, s3_endpoint=s3_endpoint)
        console = Console(stderr=True)
        console.print(f"edge: last-resort list of {len(fallback.items)} items from {fallback.source}"
                      + (f" [yellow]({fallback.note})[/yellow]" if fallback.note else ""))
        store = store_url(store)
        control = store_from_url(store)
        app = create_app(topology=topo, store=control, last_resort=fallback, settings=settings)
        listen = port or topo.settings.edge_port
        console.print(f"edge: listening on http://{topo.settings.host}:{listen}, routing table from {store}")
        try:
            uvicorn.run(app, host=topo.settings.host, port=listen, log_level="warning", access_log=False)
        finally:
            control.close()
