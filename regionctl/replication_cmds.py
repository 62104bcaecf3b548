"""`regionctl replicate | feature-updater | replication status | users delete | retention run`.

Thin: parse, call one library function, print with rich.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from contracts.environment import retention_key, topology_path
from regions.errors import InputError, ShopNowError
from regions.topology import REPO_ROOT, load_topology

replication_app = typer.Typer(no_args_is_help=True, help="Interaction-log replication: status and lag (live RPO).")
users_app = typer.Typer(no_args_is_help=True, help="User data: deletion across the user's geography.")
retention_app = typer.Typer(no_args_is_help=True, help="Retention of identifiable interaction events.")

TOPOLOGY = typer.Option(None, "--topology", help="topology.toml (default: REGIONCTL_TOPOLOGY or the repo's).")
ARTIFACTS = typer.Option((REPO_ROOT / "var" / "artifacts").as_uri(), "--store", envvar="REGIONCTL_ARTIFACTS",
                         help="Artifact store (file:///path or s3://bucket/prefix): whose bundles may still hold the user.")
S3_ENDPOINT = typer.Option(None, "--s3-endpoint", envvar="REGIONCTL_S3_ENDPOINT", help="S3-compatible endpoint URL.")


def _topology_arg(path: Optional[Path]) -> Optional[str]:
    return str(path) if path is not None else None


def replicate_cmd(
    region: str = typer.Option(..., "--region", help="Source region whose log is replicated to its geography's peers."),
    topology: Optional[Path] = TOPOLOGY,
    metrics_port: Optional[int] = typer.Option(None, "--metrics-port", help="Serve Prometheus metrics on 127.0.0.1:PORT."),
) -> None:
    """Run the replicator of one source region in the foreground (Ctrl-C stops it)."""
    from regionctl import worker_main

    args = ["replicate", "--region", region]
    args += ["--topology", str(topology)] if topology else []
    args += ["--metrics-port", str(metrics_port)] if metrics_port else []
    raise typer.Exit(worker_main.main(args))


def feature_updater_cmd(
    region: str = typer.Option(..., "--region", help="Region whose log streams update its users' features."),
    topology: Optional[Path] = TOPOLOGY,
    metrics_port: Optional[int] = typer.Option(None, "--metrics-port", help="Serve Prometheus metrics on 127.0.0.1:PORT."),
) -> None:
    """Run the nearline feature updater of one region in the foreground (Ctrl-C stops it)."""
    from regionctl import worker_main

    args = ["feature-updater", "--region", region]
    args += ["--topology", str(topology)] if topology else []
    args += ["--metrics-port", str(metrics_port)] if metrics_port else []
    raise typer.Exit(worker_main.main(args))


@replication_app.command("status")
def status_cmd(
    topology: Optional[Path] = TOPOLOGY,
    as_json: bool = typer.Option(False, "--json", help="Print the pairs as JSON."),
) -> None:
    """Lag (events) and live RPO (seconds) of every replication pair; geographies without a copy."""
    from replication.redis_io import connect_all
    from replication.metrics import replication_status, unreplicated_geographies

    topo = load_topology(topology_path(os.environ, _topology_arg(topology)))
    pairs = replication_status(topo, connect_all(topo), time.time())
    lonely = unreplicated_geographies(topo)
    if as_json:
        typer.echo(json.dumps({
            "pairs": [{"source": p.source, "destination": p.destination, "geography": p.geography,
                       "lag_seconds": p.lag_seconds, "lag_events": p.lag_events, "events_capped": p.events_capped,
                       "source_last_id": p.source_last_id, "destination_last_id": p.destination_last_id,
                       "error": p.error} for p in pairs],
            "unreplicated_geographies": list(lonely)}, indent=2))
        return
    console = Console()
    table = Table(title="Interaction-log replication")
    for col in ("geo", "source", "destination", "lag (events)", "live RPO (s)", "state"):
        table.add_column(col, justify="right" if col.startswith(("lag", "live")) else "left")
    for p in pairs:
        events = "-" if p.lag_events is None else f"{'>=' if p.events_capped else ''}{p.lag_events}"
        rpo = "-" if p.lag_seconds is None else f"{p.lag_seconds:.3f}"
        state = f"[red]{p.error}[/]" if p.error else ("[green]caught up[/]" if p.caught_up else "[yellow]behind[/]")
        budget = topo.settings.rpo_budget_s
        if p.lag_seconds is not None and p.lag_seconds > budget:
            state = f"[red]over the {budget:g} s RPO budget[/]"
        table.add_row(p.geography, p.source, p.destination, events, rpo, state)
    console.print(table)
    for geo in lonely:
        regions = ", ".join(r.name for r in topo.regions_in(geo))
        console.print(f"[bold yellow]Geography {geo!r} has a single region ({regions}): its interaction logs have no "
                      f"copy in another region. If {regions} is lost, its events are lost too (RPO unbounded).[/]")


@users_app.command("delete")
def delete_cmd(
    user_id: str = typer.Argument(..., help="Id of the user to delete, e.g. eu-123."),
    topology: Optional[Path] = TOPOLOGY,
    artifacts: str = ARTIFACTS, s3_endpoint: Optional[str] = S3_ENDPOINT,
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Delete a user's features, cached results and log entries (archive too) in every region of their
    geography; say per region what was removed and what remains, with the deadline."""
    from replication.deletion import delete_user
    from replication.erasure_deadline import bundle_remains
    from replication.geo_artifacts import current_bundle, open_geo_store
    from replication.redis_io import connect_all

    topo = load_topology(topology_path(os.environ, _topology_arg(topology)))
    report = delete_user(topo, connect_all(topo), user_id, time.time(), pseudonym_key=retention_key(os.environ))
    try:
        version, metrics = current_bundle(open_geo_store(artifacts, report.geography, topology=topo, endpoint_url=s3_endpoint))
        bundle_note = bundle_remains(report.geography, version=version, bundle_metrics=metrics, deleted_at=report.deleted_at)
    except ShopNowError as exc:
        bundle_note = f"the {report.geography} bundle could not be checked ({exc}): treat it as holding the user until the next bundle"
    if as_json:
        from replication.user_erasure import region_rows

        rows = region_rows(report)
        for row in rows:
            row["remains"] += [bundle_note] if bundle_note else []
        typer.echo(json.dumps({"user_id": report.user_id, "geography": report.geography, "complete": report.complete,
                               "deleted_at": report.deleted_at, "regions": rows}, indent=2))
        raise typer.Exit(0 if report.complete else 1)
    table = Table(title=f"Deletion of {report.user_id} (geography {report.geography})")
    for col in ("region", "tombstone", "features", "cached results", "log entries", "remains", "error"):
        table.add_column(col)
    for r in report.regions:
        logs = ", ".join(f"{s}: {n}" for s, n in sorted(r.log_entries_removed.items())) or "0"
        remains = list(r.remains) + ([bundle_note] if bundle_note else [])
        table.add_row(r.region, "yes" if r.tombstoned else "no", str(r.features_removed), str(r.cached_results_removed),
                      logs, "; ".join(remains) or "nothing", r.error or "")
    Console(width=200).print(table)
    if not report.complete:
        typer.secho("Deletion incomplete: run the same command again once every region is reachable.", fg="red", err=True)
        raise typer.Exit(1)


@retention_app.command("run")
def retention_cmd(
    topology: Optional[Path] = TOPOLOGY,
    mode: str = typer.Option("trim", "--mode", help="trim (remove) or pseudonymise (move to log:archive with keyed pseudonyms)."),
    max_age_days: float = typer.Option(30.0, "--max-age-days", help="Events older than this are no longer identifiable."),
) -> None:
    """Trim or pseudonymise identifiable events older than the retention period, in every region."""
    from replication.redis_io import connect_all
    from replication.retention import RetentionSettings, run_retention

    key = retention_key(os.environ)
    settings = RetentionSettings(max_age_days=max_age_days, mode=mode)
    if mode == "pseudonymise" and not key:
        raise InputError("REGIONCTL_RETENTION_KEY", "pseudonymise mode needs a secret key in this environment variable")
    topo = load_topology(topology_path(os.environ, _topology_arg(topology)))
    report = run_retention(topo, connect_all(topo), time.time(), settings=settings, key=key)
    table = Table(title=f"Retention ({report.mode}, entries before {report.cutoff_id})")
    for col in ("region", "stream", "removed", "archived"):
        table.add_column(col)
    for s in report.streams:
        table.add_row(s.region, s.stream, str(s.removed), str(s.archived))
    console = Console()
    console.print(table)
    for error in report.errors:
        console.print(f"[red]{error}[/]")
    if report.errors:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add the replication commands to `regionctl`."""
    app.command("replicate")(replicate_cmd)
    app.command("feature-updater")(feature_updater_cmd)
    app.add_typer(replication_app, name="replication")
    app.add_typer(users_app, name="users")
    app.add_typer(retention_app, name="retention")
