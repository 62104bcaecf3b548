"""Per-geography training data: a geography's bundle is trained from the events of users homed
there, and nothing else.

Decision (item-side artifacts): everything in a geography's bundle, user-side AND item-side, is
computed from that geography's events only: item embeddings (ALS is fit on that geography's
interaction matrix), the FAISS index of them, popularity, segment lists and co-purchase. The
catalog (items.json: ids, categories, brands, prices, stock) is not personal data and is the
same in every bundle; the behavioural columns of items.json (popularity, views, carts, purchases,
buyers) are counted from the geography's events. The alternative, anonymous cross-geography
aggregates for item-side artifacts, would need a k-anonymity threshold per item to be anonymous
in fact (an item bought by one EU user says something about that user), so it is not done: no
number derived from one geography's events enters another geography's bundle.

Tombstoned users (deleted, `users:deleted` of the geography's regions) are dropped with all their
events before training, so the next bundle excludes them.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import AbstractSet, Callable

from regions.geo import home_geography_of
from regions.topology import Topology
from replication.erasure_deadline import TOMBSTONES_READ_AT
from replication.manifest import build_manifest, write_manifest
from serving.bundle_residency import GEOGRAPHY_METRIC
from serving.marketplace import Dataset
from serving.seen_items import SeenPolicies
from serving.time_constants import TimeConstants
from serving.training import TrainResult, TrainSettings, train_bundle


def dataset_of_geography(dataset: Dataset, geography: str, *, topology: Topology,
                         exclude_users: AbstractSet[str] = frozenset()) -> Dataset:
    """Pure. The users homed in `geography` (minus `exclude_users`), their events only (user
    indices renumbered), every item of the catalog. The name gains `@<geography>`."""
    keep = [n for n, u in enumerate(dataset.users)
            if home_geography_of(u.user_id, topology) == geography and u.user_id not in exclude_users]
    return dataset.only_users(keep, name=f"{dataset.name}@{geography}")

def train_geography_bundle(
    dataset: Dataset, geography: str, *, topology: Topology, out_dir: Path, now: float, bundle_version: str,
    exclude_users: AbstractSet[str] = frozenset(), tombstones_read_at: float = 0.0,
    seen_policy: SeenPolicies = SeenPolicies(), progress: Callable[[str], None] = lambda _m: None,
    time_constants: TimeConstants = TimeConstants(),
) -> TrainResult:
    """Train `geography`'s bundle (serving.training.train_bundle on dataset_of_geography) and record
    in its manifest metrics the geography, how many deleted users were excluded and up to when the
    tombstones were read (`tombstones_read_at`; 0 when some region's could not be read).
    `seen_policy` and `time_constants` are the data set adapter's (serving.seen_items,
    serving.time_constants)."""
    subset = dataset_of_geography(dataset, geography, topology=topology, exclude_users=exclude_users)
    result = train_bundle(subset, out_dir=out_dir, now=now, bundle_version=bundle_version, seen_policy=seen_policy,
                          settings=TrainSettings(time_constants=time_constants), progress=progress)
    m = result.manifest
    excluded = sum(1 for u in dataset.users if u.user_id in exclude_users and home_geography_of(u.user_id, topology) == geography)
    metrics = {**m.metrics, GEOGRAPHY_METRIC: geography, TOMBSTONES_READ_AT: tombstones_read_at,
               "excluded_deleted_users": excluded, "n_users_of_geography": len(subset.users)}
    manifest = build_manifest(out_dir, bundle_version=m.bundle_version, created_at=m.created_at,
                              schema_version=m.schema_version, data_watermark=m.data_watermark, metrics=metrics)
    write_manifest(out_dir, manifest)
    return replace(result, manifest=manifest)


__all__ = ["dataset_of_geography", "train_geography_bundle"]
