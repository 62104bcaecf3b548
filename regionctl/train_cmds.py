"""`regionctl train`: build a model bundle from synthetic or real data and print its evaluation."""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from contracts.environment import topology_path
from regions.errors import InputError
from regions.topology import REPO_ROOT, load_topology

DATA_SOURCES = ("synthetic", "completejourney")


def train(
    size: str = typer.Option("demo", "--size", help="synthetic data size: tiny, demo or bench"),
    seed: int = typer.Option(7, "--seed", help="seed of the synthetic marketplace"),
    data: str = typer.Option("synthetic", "--data", help="synthetic or completejourney"),
    out: Optional[Path] = typer.Option(None, "--out", help="directory of the bundles, one sub-directory per geography (default var/bundles/<version>)"),
    topology: Optional[Path] = typer.Option(None, "--topology", help="topology.toml (default REGIONCTL_TOPOLOGY or the repo's)"),
    geo: Optional[list[str]] = typer.Option(None, "--geo", help="train only this geography (repeatable; default: every geography)"),
    tombstones: bool = typer.Option(True, "--tombstones/--no-tombstones", help="read each geography's deleted users from its regions' Redis and exclude them"),
) -> dict[str, Any]:
    """Train one bundle per geography (ALS + FAISS + LightGBM) from the events of users homed there
    only, write each with its manifest, print each one's evaluation against its own popularity."""
    from regionctl.geo_bundles import train_geographies
    from replication.manifest import new_bundle_version
    from serving.evaluation import metrics_rows

    err = Console(stderr=True)
    if data not in DATA_SOURCES:
        raise InputError("--data", f"unknown data source {data!r}; allowed: {', '.join(DATA_SOURCES)}")
    topo = load_topology(topology_path(os.environ, topology))
    geographies = {g.name: g.peak_share for g in topo.geographies.values()}
    for name in geo or ():
        topo.geography(name)
    started = time.perf_counter()
    with err.status(f"loading {data} data ..."):
        if data == "synthetic":
            from serving.marketplace import generate_named
            dataset = generate_named(size, seed=seed, geographies=geographies)
        else:
            from serving.completejourney import load_completejourney
            dataset = load_completejourney(geographies=geographies)
    err.print(f"data: {dataset.name}, {len(dataset.items)} items, {len(dataset.users)} users, {len(dataset.events)} events "
              f"({time.perf_counter() - started:.1f}s)")
    now = time.time()
    version = new_bundle_version(now)
    target = out or REPO_ROOT / "var" / "bundles" / version
    results = train_geographies(dataset, topo, out_root=target, now=now, bundle_version=version,
                                geographies=tuple(geo or ()), read_tombstones=tombstones,
                                progress=lambda msg: err.print(f"[dim]{msg}[/dim]"))
    console = Console()
    for name, result in results.items():
        metrics = result.manifest.metrics
        table = Table(title=f"geography {name}: offline evaluation on the held-out period ({metrics['dataset']})")
        for column in ("method", "NDCG@10", "HR@10", "recall@100", "coverage", "users"):
            table.add_column(column, justify="left" if column == "method" else "right")
        for row in metrics_rows(result.methods):
            table.add_row(*row)
        console.print(table)
        console.print(f"[{name}] NDCG@10 full pipeline / {name} popularity: [bold]{result.ndcg_ratio:.2f}x[/bold]; "
                      f"candidate recall {metrics['candidate_recall']:.3f}; index {metrics['index_kind']}; "
                      f"{metrics['n_users_of_geography']} users of {name} ({metrics['n_users_with_embedding']} with an embedding), "
                      f"{metrics['train_events']} training events, {metrics['n_items']} items; "
                      f"{metrics['excluded_deleted_users']} deleted users excluded; training {result.seconds:.1f}s")
        console.print(f"[{name}] bundle {result.manifest.bundle_version} written to {result.bundle_dir} "
                      f"({len(result.manifest.files)} files + manifest.json); publish with "
                      f"`regionctl artifacts publish {result.bundle_dir} --geo {name}`")
    return {name: r.bundle_dir for name, r in results.items()}


def register(app: typer.Typer) -> None:
    app.command("train")(train)
