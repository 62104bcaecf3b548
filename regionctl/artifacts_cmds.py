"""`regionctl artifacts list | verify VERSION|DIR | publish DIR | promote VERSION | rollback`, each with
`--geo G` for that geography's store (its bundles, its current pointer; verify and promote add the
residency check).

Thin: parse, call one library function (replication.artifact_store / replication.verifying),
print with rich. Errors exit 2 with a message that says what to do. The semantic checks come
from serving.bundle_checks (regionctl sits above serving); replication never imports serving.

`promote` and `rollback` journal the change (bundle_promote / bundle_rollback, actor
`regionctl:<user>`) in the decision journal of the control store named by --control-store
(REGIONCTL_CONTROL_STORE), or, for the local stack's own artifact store, of the local stack when
its control store exists. An unreachable control store is reported and the change still stands.
"""
from __future__ import annotations

import getpass
import importlib
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Collection, Optional, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from failover.control_stores import store_from_url as control_store_from_url
from failover.journal import Action, Journal
from regions import stack
from regions.errors import InputError, ShopNowError
from replication.artifact_store import ArtifactStore
from replication.artifact_stores import store_from_url
from replication.manifest import Manifest
from replication.verifying import SemanticCheck, verify_bundle
from replication.promotion import promote_verified

T = TypeVar("T")
_QUALITY = ("ndcg", "recall", "precision", "auc", "hit", "mrr", "map")
REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_STORE = (REPO_ROOT / "var" / "artifacts").as_uri()  # the local stack's store; no cloud needed

artifacts_app = typer.Typer(no_args_is_help=True, help="Model bundles: list, verify, publish, promote, roll back.")
out = Console()
err = Console(stderr=True)

STORE = typer.Option(DEFAULT_STORE, "--store", envvar="REGIONCTL_ARTIFACTS", help="file:///path or s3://bucket/prefix.")
S3_ENDPOINT = typer.Option(None, "--s3-endpoint", envvar="REGIONCTL_S3_ENDPOINT", help="S3-compatible endpoint URL (moto, MinIO).")
SCHEMA = typer.Option(None, "--schema-version", help="Supported schema version(s); default: serving's SCHEMA_VERSION.")
GEO = typer.Option(None, "--geo", help="The geography whose store (own bundles, own current pointer) to use; adds the residency check.")
TOPOLOGY = typer.Option(None, "--topology", help="topology.toml (default REGIONCTL_TOPOLOGY or the repo's).")
CONTROL_STORE = typer.Option(None, "--control-store", envvar="REGIONCTL_CONTROL_STORE",
                             help="Control store whose decision journal records the change (default: the local stack's).")
INTEGRITY_ONLY = typer.Option(False, "--integrity-only", help="Skip serving's semantic checks (checksums and schema only).")


class CheckSet:
    """What to verify a bundle against: schema versions and semantic checks."""

    def __init__(self, schema_versions: Collection[int], checks: tuple[SemanticCheck, ...]) -> None:
        self.schema_versions = frozenset(schema_versions)
        self.checks = checks

    def names(self) -> str:
        return ", ".join(getattr(c, "__name__", "?") for c in self.checks) or "none (integrity only)"


def load_checks(schema_versions: Optional[list[int]], integrity_only: bool) -> CheckSet:
    """Serving's SEMANTIC_CHECKS and SCHEMA_VERSION, guarded: a missing serving says what to do."""
    if integrity_only:
        if not schema_versions:
            raise InputError("--schema-version", "with --integrity-only, name the supported schema version(s), e.g. --schema-version 1")
        return CheckSet(schema_versions, ())
    try:
        checks_module = importlib.import_module("serving.bundle_checks")
        features = importlib.import_module("serving.features")
        checks = tuple(checks_module.SEMANTIC_CHECKS)
        default_schema = int(features.SCHEMA_VERSION)
    except (ImportError, AttributeError) as exc:
        raise InputError(
            "serving.bundle_checks",
            f"the semantic checks cannot be loaded ({type(exc).__name__}: {exc}); run regionctl from a checkout with "
            "serving installed, or pass --integrity-only --schema-version N to check checksums and schema only",
        ) from exc
    return CheckSet(schema_versions or [default_schema], checks)


def _run(action: Callable[[], T]) -> T:
    """Call the library; a ShopNowError becomes a red message and exit status 2."""
    try:
        return action()
    except ShopNowError as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False)
        raise typer.Exit(2) from exc


def _store(url: str, endpoint: Optional[str], geo: Optional[str] = None, topology: Optional[Path] = None) -> ArtifactStore:
    """The store at `url`, or with `geo` that geography's store inside it (replication.geo_artifacts)."""
    if geo is None:
        return _run(lambda: store_from_url(url, endpoint_url=endpoint))
    from replication.geo_artifacts import open_geo_store

    return _run(lambda: open_geo_store(url, geo, topology=_topology(topology), endpoint_url=endpoint))


def _topology(path: Optional[Path]) -> Any:
    import os

    from contracts.environment import topology_path
    from regions.topology import load_topology

    return load_topology(topology_path(os.environ, path))


def _with_residency(checks: CheckSet, geo: Optional[str], topology: Optional[Path], integrity_only: bool) -> CheckSet:
    """With --geo (and semantic checks on), add the residency check of that geography."""
    if geo is None or integrity_only:
        return checks
    from serving.bundle_residency import residency_check

    return CheckSet(checks.schema_versions, (*checks.checks, _run(lambda: residency_check(_topology(topology), geo))))


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(ts))


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def _metrics(metrics: Any) -> str:
    """Up to four numeric offline metrics, quality ones (ndcg, recall, ...) first."""
    numeric = [(k, v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    numeric.sort(key=lambda kv: (not any(q in kv[0].lower() for q in _QUALITY), kv[0]))
    return " ".join(f"{k}={v:.3f}" for k, v in numeric[:4])


@artifacts_app.command("list")
def list_cmd(store: str = STORE, s3_endpoint: Optional[str] = S3_ENDPOINT, geo: Optional[str] = GEO,
             topology: Optional[Path] = TOPOLOGY) -> None:
    """Published bundles, oldest first; the current one is marked."""
    s = _store(store, s3_endpoint, geo, topology)
    infos = _run(s.list)
    current = _run(s.current)
    table = Table(title=f"bundles in {getattr(s, 'url', store)}")
    for col in ("", "version", "created", "schema", "data watermark", "files", "size", "metrics"):
        table.add_column(col)
    for i in infos:
        mark = "[green]current[/green]" if i.version == current else ""
        table.add_row(mark, i.version, _when(i.created_at), str(i.schema_version), _when(i.data_watermark),
                      str(i.file_count), _size(i.total_bytes), _metrics(i.metrics))
    out.print(table)
    if not infos:
        out.print("no bundles yet: `regionctl artifacts publish DIR` adds one")


def _print_verified(manifest: Manifest, where: str, checks: CheckSet) -> None:
    table = Table(title=f"{manifest.bundle_version} ({where})")
    for col in ("file", "size", "sha256"):
        table.add_column(col)
    for name, entry in sorted(manifest.files.items()):
        table.add_row(name, _size(entry.size), entry.sha256[:16] + "...")
    out.print(table)
    out.print(f"[green]verified[/green]: every size and SHA-256, no missing or extra file, schema version "
              f"{manifest.schema_version}; semantic checks: {checks.names()}")


@artifacts_app.command("verify")
def verify_cmd(
    target: str = typer.Argument(..., help="A bundle directory, or a version in the store."),
    store: str = STORE, s3_endpoint: Optional[str] = S3_ENDPOINT,
    schema_version: Optional[list[int]] = SCHEMA, integrity_only: bool = INTEGRITY_ONLY,
    geo: Optional[str] = GEO, topology: Optional[Path] = TOPOLOGY,
) -> None:
    """Verify a bundle directory, or fetch a stored version to a scratch directory and verify it."""
    checks = _with_residency(_run(lambda: load_checks(schema_version, integrity_only)), geo, topology, integrity_only)
    if Path(target).is_dir():
        manifest = _run(lambda: verify_bundle(Path(target), supported_schema_versions=checks.schema_versions, semantic_checks=checks.checks))
        _print_verified(manifest, target, checks)
        return
    s = _store(store, s3_endpoint, geo, topology)
    with tempfile.TemporaryDirectory(prefix="regionctl-verify-") as tmp:
        local = _run(lambda: s.fetch(target, Path(tmp)))
        manifest = _run(lambda: verify_bundle(local, supported_schema_versions=checks.schema_versions, semantic_checks=checks.checks))
    _print_verified(manifest, getattr(s, "url", store), checks)


@artifacts_app.command("publish")
def publish_cmd(
    bundle_dir: Path = typer.Argument(..., help="A bundle directory with its manifest.json (from `regionctl train`)."),
    store: str = STORE, s3_endpoint: Optional[str] = S3_ENDPOINT, geo: Optional[str] = GEO,
    topology: Optional[Path] = TOPOLOGY,
) -> None:
    """Publish a bundle atomically (checksums are verified first). It does not become current."""
    s = _store(store, s3_endpoint, geo, topology)
    version = _run(lambda: s.publish(bundle_dir))
    out.print(f"published [bold]{version}[/bold] to {getattr(s, 'url', store)}; "
              f"make it current with `regionctl artifacts promote {version}{' --geo ' + geo if geo else ''}`")


@artifacts_app.command("promote")
def promote_cmd(
    version: str = typer.Argument(..., help="A published version (see `regionctl artifacts list`)."),
    store: str = STORE, s3_endpoint: Optional[str] = S3_ENDPOINT,
    schema_version: Optional[list[int]] = SCHEMA, integrity_only: bool = INTEGRITY_ONLY,
    geo: Optional[str] = GEO, topology: Optional[Path] = TOPOLOGY, control_store: Optional[str] = CONTROL_STORE,
) -> None:
    """Verify a stored bundle fully, then make it current. A bundle that fails is refused."""
    checks = _with_residency(_run(lambda: load_checks(schema_version, integrity_only)), geo, topology, integrity_only)
    s = _store(store, s3_endpoint, geo, topology)
    before = _run(s.current)
    _run(lambda: promote_verified(s, version, supported_schema_versions=checks.schema_versions, semantic_checks=checks.checks))
    out.print(f"[green]{version} is current[/green] (was {before or 'none'}); semantic checks: {checks.names()}")
    if geo is None:
        out.print("[yellow]note[/yellow]: cells load their geography's store only; promote there with --geo G")
    _journal(control_store, store, Action.BUNDLE_PROMOTE, f"promoted {version} (verified: {checks.names()})",
             {"store": getattr(s, "url", store), "geography": geo, "version": version, "previous": before})


@artifacts_app.command("rollback")
def rollback_cmd(store: str = STORE, s3_endpoint: Optional[str] = S3_ENDPOINT, geo: Optional[str] = GEO,
                 topology: Optional[Path] = TOPOLOGY, control_store: Optional[str] = CONTROL_STORE) -> None:
    """Make the previously current bundle current again."""
    s = _store(store, s3_endpoint, geo, topology)
    before = _run(s.current)
    now = _run(s.rollback)
    out.print(f"[yellow]rolled back[/yellow]: {now} is current (was {before})")
    _journal(control_store, store, Action.BUNDLE_ROLLBACK, f"rolled back from {before} to {now}",
             {"store": getattr(s, "url", store), "geography": geo, "version": now, "previous": before})


def journal_store_url(control_store: Optional[str], artifacts_url: str) -> Optional[str]:
    """Which control store journals a bundle change: the one named, else the local stack's when the
    change was made to the local stack's artifact store and that stack has a control store."""
    if control_store:
        return control_store
    urls = stack.stack_urls(stack.default_state_dir())
    local_db = Path(urls.control_store.removeprefix("sqlite://"))
    return urls.control_store if artifacts_url.rstrip("/") == urls.artifacts.rstrip("/") and local_db.exists() else None


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (some containers)
        return "unknown"


def _journal(control_store: Optional[str], artifacts_url: str, action: Action, reason: str, inputs: dict[str, Any]) -> None:
    url = journal_store_url(control_store, artifacts_url)
    if url is None:
        out.print("[dim]not journaled: no control store (pass --control-store to record the change)[/dim]")
        return
    try:
        with control_store_from_url(url) as cs:
            entry = Journal(cs).append(actor=f"regionctl:{_user()}", action=action, reason=reason, inputs=inputs)
    except ShopNowError as exc:
        err.print(f"[yellow]warning:[/yellow] the change stands but was not journaled in {escape(url)}: {escape(str(exc))}")
        return
    out.print(f"journaled as entry {entry.index} ({action.value}) in {url}")


def register(app: typer.Typer) -> None:
    app.add_typer(artifacts_app, name="artifacts")
