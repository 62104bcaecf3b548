"""Where the local stack lives, as chaos sees it: `StackContext`, resolved from a Chaos Toolkit
configuration (`context_from`), and what every chaos module reads through it (the current bundle's
population, the file:// artifact store). Imports no other chaos module: actions, probes,
expectations, sampling and the game day all build on it.
"""
from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chaoslib.exceptions import ActivityFailed
from chaoslib.types import Configuration

from regions import stack
from regions.errors import InputError, ShopNowError
from regions.topology import Topology, load_topology
from replication.artifact_store import LocalArtifactStore

REGION_KINDS = ("redis", "cell", "replicator", "feature-updater")
"""What a region loss takes down: everything of that region, as a lost data centre would."""
LEADER_LEASE = "controller"
"""The lease the controller leader holds; its holder id is the process name (controller-a/-b)."""
HTTP_TIMEOUT_S = 2.0
"""Loopback calls answer in milliseconds; 2 s means the target is down or stuck."""


def process_stopped(pid: int) -> bool:
    """True while the kernel says the process is stopped (SIGSTOP: state T in /proc/<pid>/stat):
    ground truth for the hung-process faults, not something the process reports."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2:][:1] in ("T", "t")


@dataclass(frozen=True)
class StackContext:
    """Where the stack lives, resolved from a Chaos Toolkit configuration."""

    state_dir: Path
    topology: Topology
    control_store_url: str
    artifacts_url: str

    def cell_url(self, region: str) -> str:
        return f"http://{self.topology.region_host(region)}:{self.topology.region(region).http_port}"

    @property
    def edge_url(self) -> str:
        return f"http://{self.topology.settings.host}:{self.topology.settings.edge_port}"

    @property
    def controller_url(self) -> str:
        return f"http://{self.topology.settings.host}:{self.topology.settings.controller_port}"


def context_from(configuration: Configuration | None) -> StackContext:
    """Resolve the configuration (missing or "" values take the stack's defaults)."""
    conf = configuration or {}
    try:
        state_dir = Path(conf.get("state_dir") or stack.default_state_dir())
        recorded = getattr(stack.StackState.load(state_dir), "topology_path", "")  # what `regionctl up` used
        topology = load_topology(conf.get("topology") or recorded or None)
    except ShopNowError as exc:
        raise ActivityFailed(f"cannot read the stack's configuration: {exc}") from exc
    urls = stack.stack_urls(state_dir)
    return StackContext(
        state_dir=state_dir, topology=topology,
        control_store_url=conf.get("control_store") or urls.control_store,
        artifacts_url=conf.get("artifacts") or urls.artifacts,
    )


def population(ctx: StackContext) -> tuple[list[str], list[str]]:
    """User ids and item ids of every geography's current bundle (users.json, items.json)."""
    users: list[str] = []
    items: dict[str, None] = {}
    versions = []
    for geo in sorted(ctx.topology.geographies):
        found = bundle_files(ctx, geo, ("users.json", "items.json"))
        if found is None:
            continue
        version, (user_rows, item_rows) = found
        versions.append(f"{geo}: {version}")
        users += [u["user_id"] if isinstance(u, dict) else str(u) for u in user_rows]
        items.update((i["item_id"] if isinstance(i, dict) else str(i), None) for i in item_rows)
    if not versions:
        raise InputError("artifacts", f"{ctx.artifacts_url} has no current bundle in any geography; train and promote one first")
    if not users or not items:
        raise InputError("artifacts", f"bundles {', '.join(versions)} have no users or no items; the load needs both")
    return [str(u) for u in users], list(items)


def bundle_files(ctx: StackContext, geography: str, names: tuple[str, ...]) -> tuple[str, list[Any]] | None:
    """(version, the parsed JSON files `names`) of the geography's current bundle; None without one."""
    store = geo_store(ctx, geography)
    version = store.current()
    if version is None:
        return None
    with tempfile.TemporaryDirectory(prefix="gameday-bundle-") as tmp:
        root = store.root / "bundles" / version if isinstance(store, LocalArtifactStore) else store.fetch(version, Path(tmp))
        return version, [json.loads((root / name).read_text()) for name in names]


def default_geography(ctx: StackContext) -> str:
    """The geography of the topology's first region: the one a bundle fault is injected into."""
    return ctx.topology.region(next(iter(ctx.topology.regions))).geography


def geo_store(ctx: StackContext, geography: str) -> Any:
    from replication.geo_artifacts import open_geo_store

    return open_geo_store(ctx.artifacts_url, geography, topology=ctx.topology)


def local_store(ctx: StackContext, what: str, geography: str = "") -> Any:
    """The file:// store of `geography` (default: default_geography) inside the stack's store."""
    store = geo_store(ctx, geography or default_geography(ctx))
    if not isinstance(store, LocalArtifactStore):
        raise ActivityFailed(f"{what} works on file:// artifact stores only, got {ctx.artifacts_url}")
    return store
