"""Per-geography bundles end to end, as `regionctl train`, `up` and `demo` use them: read each
geography's tombstones, train one bundle per geography (serving.geo_training), publish and
promote each into its geography's store (replication.geo_artifacts) through full verification,
the residency check included (serving.bundle_residency)."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Mapping

from regions.topology import Topology
from serving.marketplace import Dataset
from serving.seen_items import SeenPolicies
from serving.time_constants import TimeConstants
from serving.training import TrainResult


def geography_checks(topology: Topology, geography: str) -> tuple:  # type: ignore[type-arg]
    """Serving's semantic checks plus the residency check of `geography`."""
    from serving.bundle_checks import SEMANTIC_CHECKS
    from serving.bundle_residency import residency_check

    return (*SEMANTIC_CHECKS, residency_check(topology, geography))


def train_geographies(
    dataset: Dataset, topology: Topology, *, out_root: Path, now: float, bundle_version: str,
    geographies: tuple[str, ...] = (), read_tombstones: bool = True, seen_policy: SeenPolicies = SeenPolicies(),
    progress: Callable[[str], None] = lambda _m: None, time_constants: TimeConstants = TimeConstants(),
) -> dict[str, TrainResult]:
    """One bundle per geography under `out_root/<geo>`, each from its own users' events, deleted
    users (as the geography's regions' Redis say, when reachable) excluded, `seen_policy` (the data
    set adapter's) applied offline and shipped in each bundle, like its `time_constants`."""
    from replication.redis_io import ClientSettings, connect_all
    from replication.tombstones import read_geography_tombstones
    from serving.geo_training import train_geography_bundle

    results: dict[str, TrainResult] = {}
    clients = connect_all(topology, settings=ClientSettings(connect_timeout_s=0.3, socket_timeout_s=2.0, retries=0)) if read_tombstones else {}
    try:
        for geo in geographies or tuple(sorted(topology.geographies)):
            topology.geography(geo)
            excluded: frozenset[str] = frozenset()
            read_at = 0.0
            if read_tombstones:
                excluded, read_at, errors = read_geography_tombstones(topology, geo, clients, now=now)
                for error in errors:
                    progress(error)
            progress(f"geography {geo}: training on its own users' events ({len(excluded)} deleted users excluded)")
            results[geo] = train_geography_bundle(dataset, geo, topology=topology, out_dir=out_root / geo, now=now,
                                                  bundle_version=bundle_version, exclude_users=excluded,
                                                  tombstones_read_at=read_at, seen_policy=seen_policy, progress=progress,
                                                  time_constants=time_constants)
    finally:
        for client in clients.values():
            client.close()
    return results


def publish_geographies(store_url: str, topology: Topology, bundles: Mapping[str, Path], *,
                        endpoint_url: str | None = None) -> dict[str, str]:
    """Publish each geography's bundle to its own store and promote it after full verification."""
    from replication.geo_artifacts import open_geo_store
    from replication.promotion import promote_verified
    from serving.features import SCHEMA_VERSION

    versions: dict[str, str] = {}
    for geo, bundle_dir in sorted(bundles.items()):
        store = open_geo_store(store_url, geo, topology=topology, endpoint_url=endpoint_url)
        version = store.publish(bundle_dir)
        promote_verified(store, version, supported_schema_versions={SCHEMA_VERSION}, semantic_checks=geography_checks(topology, geo))
        versions[geo] = version
    return versions


__all__ = ["geography_checks", "publish_geographies", "train_geographies"]
