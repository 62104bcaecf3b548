"""`regionctl up | ps | down`: the local three-region stack on loopback."""
from __future__ import annotations

import os
import time
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from contracts.environment import topology_path
from regions import stack
from regionctl.stack_specs import stack_specs
from regions.topology import default_topology_path, load_topology

console = Console()


def ensure_bundle(artifacts_url: str, *, geographies: dict[str, float], progress=lambda m: None) -> str:  # type: ignore[no-untyped-def]
    """The store's current bundle; when there is none, train the demo bundle, publish and promote it."""
    from replication.artifact_stores import store_from_url
    from replication.manifest import new_bundle_version
    from replication.promotion import promote_verified
    from serving.bundle_checks import SEMANTIC_CHECKS
    from serving.features import SCHEMA_VERSION
    from serving.marketplace import generate_named
    from serving.datasets.synthetic import SyntheticAdapter
    from serving.training import train_bundle
    from regions.topology import REPO_ROOT

    store = store_from_url(artifacts_url)
    current = store.current()
    if current is not None:
        return current
    progress("no bundle in the artifact store: training the demo bundle (about 20 s)")
    dataset = generate_named("demo", seed=7, geographies=geographies)
    now = time.time()
    version = new_bundle_version(now)
    result = train_bundle(dataset, out_dir=REPO_ROOT / "var" / "bundles" / version, now=now, bundle_version=version,
                          progress=progress, seen_policy=SyntheticAdapter().seen_policy)
    published = store.publish(result.bundle_dir)
    promote_verified(store, published, supported_schema_versions={SCHEMA_VERSION}, semantic_checks=SEMANTIC_CHECKS)
    progress(f"bundle {published} published and promoted")
    return published


def register(app: typer.Typer) -> None:
    @app.command("up")
    def up(
        topology: Path = typer.Option(None, help="Topology file (default: REGIONCTL_TOPOLOGY or topology.toml)."),
        state_dir: Path = typer.Option(None, help="Where the stack keeps its state (default: var/stack)."),
    ) -> None:
        """Start the local stack: per region redis + cell + replicator + feature updater; controllers; edge."""
        topo = load_topology(topology_path(os.environ, topology))
        state = (state_dir or stack.default_state_dir()).resolve()
        urls = stack.stack_urls(state)
        started = time.monotonic()
        version = ensure_bundle(urls.artifacts, geographies={g.name: g.peak_share for g in topo.geographies.values()}, progress=lambda m: console.print(f"[dim]{m}[/dim]"))
        console.print(f"bundle {version}")
        stack.up(stack_specs(topo, state_dir=state, urls=urls), topology_path=topology_path(os.environ, topology) or default_topology_path(), state_dir=state, progress=lambda m: console.print(f"[dim]{m}[/dim]"))
        console.print(f"stack up in {time.monotonic() - started:.1f}s: edge http://{topo.settings.host}:{topo.settings.edge_port}, "
                      f"control API http://{topo.settings.host}:{topo.settings.controller_port}; tokens in {state / stack.TOKENS_FILE}")

    @app.command("ps")
    def ps(state_dir: Path = typer.Option(None, help="The stack's state dir (default: var/stack).")) -> None:
        """List the stack's processes and whether each still runs."""
        state = (state_dir or stack.default_state_dir()).resolve()
        table = Table(title=f"local stack ({state})")
        for col in ("process", "kind", "region", "pid", "port", "running", "up for"):
            table.add_column(col)
        rows = stack.ps(state_dir=state)
        for proc, running in rows:
            table.add_row(proc.name, proc.kind, proc.region or "-", str(proc.pid), str(proc.port or "-"),
                          "[green]yes[/green]" if running else "[red]no[/red]",
                          f"{time.time() - proc.started_at:.0f}s" if running else "-")
        console.print(table if rows else "nothing started: run `regionctl up`")

    @app.command("down")
    def down(state_dir: Path = typer.Option(None, help="The stack's state dir (default: var/stack).")) -> None:
        """Stop exactly the processes `regionctl up` started (by PID), and nothing else."""
        state = (state_dir or stack.default_state_dir()).resolve()
        stopped = stack.down(state_dir=state, progress=lambda m: console.print(f"[dim]{m}[/dim]"))
        console.print(f"stopped {len(stopped)} processes" if stopped else "nothing was running")
