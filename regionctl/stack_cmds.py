"""`regionctl up | ps | down`: the local three-region stack, on loopback or (`up --netns`, topology
`[network] mode = "netns"`) with each region in its own network namespace (regions.netns)."""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from contracts.environment import topology_path
from regionctl import output
from regions import stack
from regionctl.stack_specs import prometheus_spec, stack_specs
from regions.topology import default_topology_path, load_topology

console = output.console()


def ensure_bundle(artifacts_url: str, *, topology, progress=lambda m: None) -> str:  # type: ignore[no-untyped-def]
    """Every geography's current bundle; for geographies without one, train the demo bundles of
    those geographies (from their own users' events), publish and promote them."""
    from regionctl.geo_bundles import publish_geographies, train_geographies
    from replication.geo_artifacts import open_geo_store
    from replication.manifest import new_bundle_version
    from serving.marketplace import generate_named
    from serving.datasets.synthetic import SyntheticAdapter
    from regions.topology import REPO_ROOT

    current = {g: open_geo_store(artifacts_url, g, topology=topology).current() for g in sorted(topology.geographies)}
    missing = tuple(g for g, v in current.items() if v is None)
    if missing:
        progress(f"no bundle for {', '.join(missing)} in the artifact store: training the demo bundles (about 20 s)")
        dataset = generate_named("demo", seed=7, geographies={g.name: g.peak_share for g in topology.geographies.values()})
        now = time.time()
        version = new_bundle_version(now)
        results = train_geographies(dataset, topology, out_root=REPO_ROOT / "var" / "bundles" / version, now=now,
                                    bundle_version=version, geographies=missing, seen_policy=SyntheticAdapter().seen_policy,
                                    time_constants=SyntheticAdapter().time_constants,
                                    progress=progress)
        current.update(publish_geographies(artifacts_url, topology, {g: r.bundle_dir for g, r in results.items()}))
        progress(f"bundles {', '.join(f'{g}={v}' for g, v in sorted(current.items()))} published and promoted")
    return ", ".join(f"{g}: {v}" for g, v in sorted(current.items()))


def _netns_topology(topo, state: Path):  # type: ignore[no-untyped-def]
    """The topology in netns mode, written to <state>/topology.netns.toml: every process of the stack
    reads it (REGIONCTL_TOPOLOGY), so that each one addresses the regions by their namespaces' addresses."""
    from regions import netns_apply
    from regions.topology import render_topology

    netns_apply.require_root()
    topo = topo.with_network("netns")
    state.mkdir(parents=True, exist_ok=True)
    path = state / "topology.netns.toml"
    path.write_text(render_topology(topo))
    return topo, path


def register(app: typer.Typer) -> None:
    @app.command("up")
    def up(
        topology: Path = typer.Option(None, help="Topology file (default: REGIONCTL_TOPOLOGY or topology.toml)."),
        state_dir: Path = typer.Option(None, help="Where the stack keeps its state (default: var/stack)."),
        observability: bool = typer.Option(False, "--observability", help="Also start a Prometheus scraping "
                                           "every process, with the shipped recording and alerting rules."),
        control_store: Optional[str] = typer.Option(
            None, "--control-store", help="sqlite (the default: one file in the state dir) or etcd (a 3-member "
                                          "etcd cluster on loopback, started with the stack); default: what the "
                                          "state dir already uses."),
        netns: bool = typer.Option(False, "--netns", help="Each region (redis, cell, replicator, feature updater) in "
                                   "its own network namespace, joined to a hub by veth pairs on topology.toml's "
                                   "[network] subnet (needs root); the default is loopback."),
    ) -> None:
        """Start the local stack: [etcd cluster]; per region redis + cell + replicator + feature updater; the retention worker; controllers; edge."""
        from regions.stack_etcd import choose_store

        topo = load_topology(topology_path(os.environ, topology))
        state = (state_dir or stack.default_state_dir()).resolve()
        topo_file = topology_path(os.environ, topology) or default_topology_path()
        if netns or topo.netns:
            topo, topo_file = _netns_topology(topo, state)
        choose_store(state, control_store)
        urls = stack.stack_urls(state)
        started = time.monotonic()
        version = ensure_bundle(urls.artifacts, topology=topo, progress=lambda m: console.print(f"[dim]{m}[/dim]"))
        console.print(f"bundles {version}")
        if topo.netns:
            from regions import netns_apply
            from regions.netns import plan_for

            netns_apply.create(plan_for(topo), state, progress=lambda m: console.print(f"[dim]{m}[/dim]"))
        stack.up(stack_specs(topo, state_dir=state, urls=urls), topology_path=topo_file, state_dir=state, progress=lambda m: console.print(f"[dim]{m}[/dim]"))
        if observability:
            from observability.prometheus_stack import start_prometheus, write_config

            config = write_config(topo, state)
            prom = start_prometheus(prometheus_spec(topo, state_dir=state, config=config), state, topology_path=topo_file)
            console.print(f"prometheus http://{topo.settings.host}:{prom.port} (pid {prom.pid}), config {config}")
        console.print(f"control store {urls.control_store}")
        console.print(f"stack up in {time.monotonic() - started:.1f}s: edge http://{topo.settings.host}:{topo.settings.edge_port}, "
                      f"control API http://{topo.settings.host}:{topo.settings.controller_port}; tokens in {state / stack.TOKENS_FILE}")

    @app.command("ps")
    def ps(state_dir: Path = typer.Option(None, help="The stack's state dir (default: var/stack)."),
           as_json: bool = typer.Option(False, "--json", help="Print the processes as JSON.")) -> None:
        """List the stack's processes and whether each still runs."""
        state = (state_dir or stack.default_state_dir()).resolve()
        if as_json:
            output.print_json({"state_dir": str(state), "processes": [
                {"name": p.name, "kind": p.kind, "region": p.region, "pid": p.pid, "port": p.port, "host": p.host or "127.0.0.1",
                 "netns": p.netns, "running": running,
                 "started_at": p.started_at, "log": p.log} for p, running in stack.ps(state_dir=state)]})
            return
        table = Table(title=f"local stack ({state})")
        for col in ("process", "kind", "region", "pid", "port", "netns", "running", "up for"):
            table.add_column(col)
        rows = stack.ps(state_dir=state)
        for proc, running in rows:
            table.add_row(proc.name, proc.kind, proc.region or "-", str(proc.pid), str(proc.port or "-"), proc.netns or "-",
                          "[green]yes[/green]" if running else "[red]no[/red]",
                          f"{time.time() - proc.started_at:.0f}s" if running else "-")
        console.print(table if rows else "nothing started: run `regionctl up`")

    @app.command("down")
    def down(state_dir: Path = typer.Option(None, help="The stack's state dir (default: var/stack).")) -> None:
        """Stop exactly the processes `regionctl up` started (by PID), and nothing else."""
        state = (state_dir or stack.default_state_dir()).resolve()
        stopped = stack.down(state_dir=state, progress=lambda m: console.print(f"[dim]{m}[/dim]"))
        console.print(f"stopped {len(stopped)} processes" if stopped else "nothing was running")
