"""`regionctl train`: one model bundle per geography from a data set adapter (serving.datasets,
docs/data.md), each trained on its own users' events, and each one's evaluation for all, warm and
cold users."""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Optional

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
    out: Optional[Path] = typer.Option(None, "--out", help="directory of the bundles, one sub-directory per geography (default var/bundles/<version>)"),
    topology: Optional[Path] = typer.Option(None, "--topology", help="topology.toml (default REGIONCTL_TOPOLOGY or the repo's)"),
    geo: Optional[list[str]] = typer.Option(None, "--geo", help="train only this geography (repeatable; default: every geography)"),
    tombstones: bool = typer.Option(True, "--tombstones/--no-tombstones", help="read each geography's deleted users from its regions' Redis and exclude them"),
) -> dict[str, Any]:
    """Train one bundle per geography (ALS + FAISS + LightGBM) from the events of users homed there
    only, write each with its manifest, print each one's evaluation (all, warm and cold users)
    against its own popularity."""
    from regionctl.geo_bundles import train_geographies
    from replication.manifest import new_bundle_version
    from serving.datasets.base import LoadOptions
    from serving.datasets.registry import adapter_for
    from serving.evaluation import COHORTS, metrics_rows
    from serving.training import RECALL_STAGE

    err = Console(stderr=True)
    adapter = adapter_for(data)
    topo = load_topology(topology_path(os.environ, topology))
    geographies = {g.name: g.peak_share for g in topo.geographies.values()}
    for name in geo or ():
        topo.geography(name)
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
    results = train_geographies(dataset, topo, out_root=target, now=now, bundle_version=version,
                                geographies=tuple(geo or ()), read_tombstones=tombstones, seen_policy=adapter.seen_policy,
                                time_constants=adapter.time_constants,
                                progress=lambda msg: err.print(f"[dim]{msg}[/dim]"))
    console = Console()
    console.print("recall@100 is measured on: " + "; ".join(f"{m}: {s}" for m, s in RECALL_STAGE.items()))
    for name, result in results.items():
        metrics = result.manifest.metrics
        table = Table(title=f"geography {name}: offline evaluation on the held-out period ({metrics['dataset']}; "
                            "seen-items policy applied to every method)")
        for column in ("method", "users", "NDCG@10", f"vs {name} popularity", "HR@10", "recall@100", "coverage", "n"):
            table.add_column(column, justify="left" if column in ("method", "users") else "right")
        for cohort in COHORTS:
            for row in metrics_rows(result.cohorts[cohort], cohort=cohort):
                table.add_row(*row)
            table.add_section()
        console.print(table)
        ratios = metrics["ndcg10_full_over_popularity_by_cohort"]
        console.print(f"\\[{name}] NDCG@10 full pipeline / {name} popularity: all [bold]{ratios['all']:.2f}x[/bold], "
                      f"warm [bold]{ratios['warm']:.2f}x[/bold], cold [bold]{ratios['cold']:.2f}x[/bold]; "
                      f"candidate recall (all candidates, before ranking) {metrics['candidate_recall']:.3f}; index {metrics['index_kind']}")
        als = metrics["als"]
        console.print(f"\\[{name}] ALS chosen on the validation split: factors {als['factors']}, regularization {als['regularization']}, "
                      f"iterations {als['iterations']} (validation recall@100 of each trial: "
                      + ", ".join(f"{t['factors']}f/{t['regularization']}r/{t['iterations']}i {t['recall_at_100']:.3f}"
                                  for t in metrics["als_trials"]) + ")")
        if metrics["items_created_after_their_events"]:
            console.print(f"\\[{name}] {metrics['items_created_after_their_events']} items had {metrics['events_older_than_their_item']} "
                          "events older than their created_at: kept (created_at moved back to the first event)")
        console.print(f"\\[{name}] {metrics['n_users_of_geography']} users of {name} ({metrics['n_users_with_embedding']} with an embedding), "
                      f"{metrics['train_events']} training events, {metrics['n_items']} items; "
                      f"{metrics['excluded_deleted_users']} deleted users excluded; training [bold]{result.seconds:.1f}s[/bold]")
        console.print(f"\\[{name}] bundle {result.manifest.bundle_version} written to {result.bundle_dir} "
                      f"({len(result.manifest.files)} files + manifest.json); publish with "
                      f"`regionctl artifacts publish {result.bundle_dir} --geo {name}`")
    console.print(f"total: {time.perf_counter() - started:.1f}s (loading data included)")
    return {name: r.bundle_dir for name, r in results.items()}


def register(app: typer.Typer) -> None:
    app.command("train")(train)
