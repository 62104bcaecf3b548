"""Helpers for tests that start real processes: topologies on free ports, a tiny trained bundle,
an artifact store with it promoted, and real cell processes (`python -m regionctl.main cell`)."""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

import httpx

from regions.processes import ManagedProcess, free_port, port_open, spawn, wait_until
from regions.topology import REPO_ROOT

if TYPE_CHECKING:
    from regions.stack import StackUrls
    from serving.feature_store import FeatureStore
    from regions.topology import Topology

DEFAULT_REGIONS = (("us-east", "us"), ("us-west", "us"), ("eu-west", "eu"))


def write_topology(path: Path, *, regions: Iterable[tuple[str, str]] = DEFAULT_REGIONS, capacity_qps: int = 400) -> Path:
    regions = list(regions)
    geos = sorted({g for _, g in regions})
    share = {g: round(1.0 / len(geos), 6) for g in geos}
    share[geos[-1]] = round(1.0 - sum(share[g] for g in geos[:-1]), 6)
    lines = ["[settings]", f"controller_port = {free_port()}", f"edge_port = {free_port()}", ""]
    for g in geos:
        lines += [f"[geographies.{g}]", f"peak_share = {share[g]}", ""]
    for name, geo in regions:
        lines += [f"[regions.{name}]", f'geography = "{geo}"', f"capacity_qps = {capacity_qps}",
                  f"http_port = {free_port()}", f"grpc_port = {free_port()}", f"redis_port = {free_port()}", ""]
    path.write_text("\n".join(lines))
    return path


def train_tiny_bundle(out_dir: Path, *, seed: int = 1) -> Path:
    from serving import marketplace, training

    dataset = marketplace.generate_named("tiny", seed=seed, geographies={"us": 0.6, "eu": 0.4})
    training.train_bundle(dataset, out_dir=out_dir, now=dataset.end)
    return out_dir


def train_tiny_geo_bundles(out_root: Path, *, seed: int = 1) -> dict[str, Path]:
    """One tiny bundle per geography (us, eu), each from its own users' events (regionctl.geo_bundles)."""
    from regionctl.geo_bundles import train_geographies
    from regions.topology import load_topology
    from serving import marketplace

    dataset = marketplace.generate_named("tiny", seed=seed, geographies={"us": 0.6, "eu": 0.4})
    results = train_geographies(dataset, load_topology(), out_root=out_root, now=dataset.end,
                                bundle_version=f"tiny-{seed}", read_tombstones=False)
    return {geo: r.bundle_dir for geo, r in results.items()}


def publish_geo_bundles(bundles: dict[str, Path], store_root: Path) -> dict[str, str]:
    """Publish and promote each geography's bundle into its own store under `store_root`."""
    from regionctl.geo_bundles import publish_geographies
    from regions.topology import load_topology

    return publish_geographies(store_root.resolve().as_uri(), load_topology(), bundles)


def prepared_stack_dir(root: Path, bundles: dict[str, Path]) -> tuple[Path, "Topology", Path, "StackUrls"]:
    """A topology on free ports in `root` and the stack's artifact stores with each geography's
    bundle promoted: (topology file, topology, state dir, the stack's urls), ready for `up`."""
    from regions import stack
    from regions.topology import load_topology

    topo_file = write_topology(root / "topology.toml")
    state = root / "stack"
    urls = stack.stack_urls(state)
    publish_geo_bundles(bundles, Path(urls.artifacts.removeprefix("file://")))
    return topo_file, load_topology(topo_file), state, urls


def publish_and_promote(bundle_dir: Path, store_root: Path) -> str:
    from replication.artifact_store import LocalArtifactStore
    from replication.promotion import promote_verified
    from serving.bundle_checks import SEMANTIC_CHECKS
    from serving.features import SCHEMA_VERSION

    store = LocalArtifactStore(store_root)
    version = store.publish(bundle_dir)
    promote_verified(store, version, supported_schema_versions={SCHEMA_VERSION}, semantic_checks=SEMANTIC_CHECKS)
    return version


def start_cell(*, region: str, topology_file: Path, artifacts_root: Path, state_dir: Path, http_port: int,
               env: dict[str, str] | None = None, timeout: float = 60.0) -> ManagedProcess:
    argv = [sys.executable, "-m", "regionctl.main", "cell", "--region", region,
            "--artifacts", f"file://{artifacts_root}", "--state-dir", str(state_dir)]
    proc = spawn(f"cell-{region}", argv, log_dir=state_dir / "logs", cwd=REPO_ROOT,
                 env={"REGIONCTL_TOPOLOGY": str(topology_file), **(env or {})})

    def ready() -> bool:
        if not proc.alive():
            return True
        if not port_open(http_port):
            return False
        try:
            return httpx.get(f"http://127.0.0.1:{http_port}/readyz", timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(ready, timeout=timeout, what=f"cell {region} on port {http_port}")
    if not proc.alive():
        raise RuntimeError(f"cell {region} exited at start:\n{proc.log_tail()}")
    return proc


def stop_all(procs: Iterable[ManagedProcess]) -> None:
    for proc in procs:
        proc.kill()


__all__ = ["write_topology", "train_tiny_bundle", "train_tiny_geo_bundles", "publish_geo_bundles", "publish_and_promote", "start_cell", "stop_all", "os"]


def seeding_store(port: int, *, region: str, topology: "Topology") -> "FeatureStore":
    """A feature store for a test's own setup writes (item features from a bundle) into a fresh
    redis-server, with 2 s socket timeouts: the product's 50 ms ones are for a request's deadline,
    and the cell's catalog sync retries a write that times out; a first pipelined write of the whole
    catalog to a new server, fsynced on the shared disk, took longer than 50 ms in CI. What the
    test reads back goes through the product's store."""
    from serving.feature_store import FeatureStore, FeatureStoreSettings

    return FeatureStore.from_url(f"redis://127.0.0.1:{port}/0", region=region, topology=topology,
                                 settings=FeatureStoreSettings(connect_timeout_s=2.0, read_timeout_s=2.0))
