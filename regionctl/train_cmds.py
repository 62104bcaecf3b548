"""`regionctl train`: build a model bundle from a data set adapter (serving.datasets, docs/data.md)
and print its evaluation for all, warm and cold users."""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from contracts.environment import topology_path
from regions.topology import REPO_ROOT, load_topology


def train(
    size: str = typer.Option("demo", "--size", help="synthetic data size: tiny, demo or bench"),
    seed: int = typer.Option(7, "--seed", help="seed of the synthetic marketplace"),
    data: str = typer.Option("synthetic", "--data", help="synthetic, completejourney, movielens, or a directory with items.csv and events.csv (docs/data.md)"),
    max_users: Optional[int] = typer.Option(None, "--max-users", help="train on a stable sample of this many users (quick looks)"),
    out: Optional[Path] = typer.Option(None, "--out", help="bundle directory (default var/bundles/<version>)"),
    topology: Optional[Path] = typer.Option(None, "--topology", help="topology.toml (default REGIONCTL_TOPOLOGY or the repo's)"),
) -> None:
    """Train a bundle (ALS + FAISS + LightGBM), write it with its manifest, print the evaluation."""
    from serving.datasets.base import LoadOptions
    from serving.datasets.registry import adapter_for
    from serving.evaluation import COHORTS, metrics_rows
    from replication.manifest import new_bundle_version
    from serving.training import RECALL_STAGE, train_bundle

    err = Console(stderr=True)
    adapter = adapter_for(data)
    geographies = {g.name: g.peak_share for g in load_topology(topology_path(os.environ, topology)).geographies.values()}
    started = time.perf_counter()
    with err.status(f"loading {adapter.name} data ..."):
        dataset = adapter.load(LoadOptions(geographies=geographies, size=size, seed=seed, max_users=max_users))
    err.print(f"data: {dataset.name}, {len(dataset.items)} items, {len(dataset.users)} users, {len(dataset.events)} events "
              f"({time.perf_counter() - started:.1f}s)")
    odd = {k: v for k, v in dataset.notes.items() if v}
    if odd:
        err.print(f"odd rows repaired or dropped: {odd}")
    now = time.time()
    version = new_bundle_version(now)
    target = out or REPO_ROOT / "var" / "bundles" / version
    result = train_bundle(dataset, out_dir=target, now=now, bundle_version=version, seen_policy=adapter.seen_policy,
                          progress=lambda msg: err.print(f"[dim]{msg}[/dim]"))

    table = Table(title=f"offline evaluation on the held-out period ({dataset.name}; seen-items policy applied to every method)")
    for column in ("method", "users", "NDCG@10", "vs popularity", "HR@10", "recall@100", "coverage", "n"):
        table.add_column(column, justify="left" if column in ("method", "users") else "right")
    for cohort in COHORTS:
        for row in metrics_rows(result.cohorts[cohort], cohort=cohort):
            table.add_row(*row)
        table.add_section()
    console = Console()
    console.print(table)
    metrics = result.manifest.metrics
    console.print("recall@100 is measured on: " + "; ".join(f"{m}: {s}" for m, s in RECALL_STAGE.items()))
    ratios = metrics["ndcg10_full_over_popularity_by_cohort"]
    console.print(f"NDCG@10 full pipeline / popularity: all [bold]{ratios['all']:.2f}x[/bold], warm [bold]{ratios['warm']:.2f}x[/bold], "
                  f"cold [bold]{ratios['cold']:.2f}x[/bold]; candidate recall (all candidates, before ranking) "
                  f"{metrics['candidate_recall']:.3f}; index {metrics['index_kind']}")
    als = metrics["als"]
    console.print(f"ALS chosen on the validation split: factors {als['factors']}, regularization {als['regularization']}, "
                  f"iterations {als['iterations']} (trials: {metrics['als_trials']})")
    if metrics["items_created_after_their_events"]:
        console.print(f"{metrics['items_created_after_their_events']} items had {metrics['events_older_than_their_item']} "
                      "events older than their created_at: kept (created_at moved back to the first event)")
    console.print(f"training time: [bold]{result.seconds:.1f}s[/bold] (plus {time.perf_counter() - started - result.seconds:.1f}s loading data)")
    console.print(f"bundle {result.manifest.bundle_version} written to {result.bundle_dir} "
                  f"({len(result.manifest.files)} files + manifest.json)")


def register(app: typer.Typer) -> None:
    app.command("train")(train)
