"""`regionctl train`: build a model bundle from synthetic or real data and print its evaluation."""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Optional

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
    out: Optional[Path] = typer.Option(None, "--out", help="bundle directory (default var/bundles/<version>)"),
    topology: Optional[Path] = typer.Option(None, "--topology", help="topology.toml (default REGIONCTL_TOPOLOGY or the repo's)"),
) -> None:
    """Train a bundle (ALS + FAISS + LightGBM), write it with its manifest, print the evaluation."""
    from serving.evaluation import metrics_rows
    from replication.manifest import new_bundle_version
    from serving.training import train_bundle

    err = Console(stderr=True)
    if data not in DATA_SOURCES:
        raise InputError("--data", f"unknown data source {data!r}; allowed: {', '.join(DATA_SOURCES)}")
    geographies = {g.name: g.peak_share for g in load_topology(topology_path(os.environ, topology)).geographies.values()}
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
    result = train_bundle(dataset, out_dir=target, now=now, bundle_version=version,
                          progress=lambda msg: err.print(f"[dim]{msg}[/dim]"))

    table = Table(title=f"offline evaluation on the held-out period ({dataset.name})")
    for column in ("method", "NDCG@10", "HR@10", "recall@100", "coverage", "users"):
        table.add_column(column, justify="left" if column == "method" else "right")
    for row in metrics_rows(result.methods):
        table.add_row(*row)
    console = Console()
    console.print(table)
    metrics = result.manifest.metrics
    console.print(f"NDCG@10 full pipeline / popularity: [bold]{result.ndcg_ratio:.2f}x[/bold]; "
                  f"candidate recall {metrics['candidate_recall']:.3f}; index {metrics['index_kind']}")
    console.print(f"training time: [bold]{result.seconds:.1f}s[/bold] (plus {time.perf_counter() - started - result.seconds:.1f}s loading data)")
    console.print(f"bundle {result.manifest.bundle_version} written to {result.bundle_dir} "
                  f"({len(result.manifest.files)} files + manifest.json)")


def register(app: typer.Typer) -> None:
    app.command("train")(train)
